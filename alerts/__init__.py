"""Alert stage: events, rules, warning levels, routing, tickets, deadlines, notifications."""
