"""Post store contract and backends."""
