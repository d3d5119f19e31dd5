"""Schema migrations when several processes start at once against a fresh PostgreSQL database."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import inspect

from core.db.session import make_engine, migrate
from tests.faults.scale import fresh_database

PG = os.environ.get("YUQING_TEST_DATABASE_URL") or os.environ.get("YUQING_DATABASE_URL")


@pytest.mark.postgres
@pytest.mark.skipif(not (PG and PG.startswith("postgresql")), reason="YUQING_TEST_DATABASE_URL not set: run through"
                    " `make test`, which creates a fresh PostgreSQL database")
def test_concurrent_start_ups_migrate_once_and_none_fails() -> None:
    assert PG is not None
    with fresh_database(PG, prefix="yq_migrate") as url:
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
