"""Schema migrations when several processes start at once against a fresh PostgreSQL database."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect

from core.db.session import make_engine, migrate
from tests.faults.scale import fresh_database


@pytest.mark.postgres
def test_concurrent_start_ups_migrate_once_and_none_fails(pg_url: str) -> None:
    # pg_url skips (or fails under CI=true) when make test has no PostgreSQL, like every other PG test.
    with fresh_database(pg_url, prefix="yq_migrate") as url:
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def start_up() -> None:
            engine = make_engine(url)
            try:
                start.wait()
                migrate(engine)
            except BaseException as exc:  # collected for the assertion
                errors.append(exc)
            finally:
                engine.dispose()

        threads = [threading.Thread(target=start_up) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        engine = make_engine(url)
        try:
            assert {"events", "event_members", "tickets", "alembic_version"} <= set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
