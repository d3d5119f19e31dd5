"""Shared contracts, records, settings and backends of yuqing."""
