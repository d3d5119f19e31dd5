"""Weekly and daily e-mail reports (舆情周报/日报): HTML with inline charts, for the office and each unit."""
