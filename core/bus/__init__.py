"""Message bus contract and backends."""
