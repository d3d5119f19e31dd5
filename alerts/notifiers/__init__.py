"""Outbound channels, one per file, behind one contract."""
