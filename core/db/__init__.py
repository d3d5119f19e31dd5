"""Relational store (SQLite embedded, PostgreSQL scale) for events, tickets, audit, outbox."""
