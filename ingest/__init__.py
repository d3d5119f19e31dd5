"""Ingest stage: source adapters, validation into Post records, dead letters."""
