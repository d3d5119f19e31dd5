"""Sentiment models behind one contract."""
