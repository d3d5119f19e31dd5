"""Shared constants and builders for the ticket tests (imported as tests.alerts.tickets.ticket_helpers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.rules.base import Match
from core.auth.service import User
from core.db.models import EventMemberRow, EventRow
from core.records import Event, WarningLevel

T0 = datetime(2025, 9, 30, 2, 0, tzinfo=UTC)  # Tue 10:00 in Beijing, the day before National Day

ADMIN = User(id=1, username="admin", role="admin")
ANALYST = User(id=2, username="office", role="analyst")
LEADER = User(id=3, username="leader", role="leader")
LEADER2 = User(id=4, username="leader2", role="leader")
ENV = User(id=5, username="env-handler", role="handler", unit_id="env")
ENV2 = User(id=6, username="env-handler2", role="handler", unit_id="env")
HOUSING = User(id=7, username="housing-handler", role="handler", unit_id="housing")
POLICE = User(id=8, username="police-handler", role="handler", unit_id="police")


def make_event(event_id: str = "ev1", title: str = "某小区垃圾站臭味扰民") -> Event:
    return Event(id=event_id, title=title, first_seen=T0 - timedelta(hours=3), last_seen=T0, size=30)


def make_match(event_id: str = "ev1", level: WarningLevel = WarningLevel.yellow, rule: str = "burst",
               reason: str = "1小时内相关信息激增", at: datetime = T0) -> Match:
    return Match(rule=rule, event_id=event_id, level=level, reason=reason, at=at)


def add_members(session, event_id: str, times_negative: list[tuple[datetime, bool]], prefix: str = "p") -> None:
    if session.get(EventRow, event_id) is None:
        session.add(EventRow(id=event_id, title="", first_seen=T0, last_seen=T0))
        session.flush()
    for i, (at, neg) in enumerate(times_negative):
        session.add(EventMemberRow(post_id=f"{prefix}{event_id}{i}", event_id=event_id, published_at=at,
                                   author_hash=f"a{i}", negative=neg))


def fresh_pg_database(prefix: str = "yq_sched"):
    """A context manager: a new PostgreSQL database (CREATE DATABASE <prefix>_<random>), dropped afterwards.

    Uses the server of YUQING_TEST_DATABASE_URL, else postgres@127.0.0.1:5432; skips when unreachable
    (fails under CI, where a missing server is an error).
    """
    import os
    import uuid
    from contextlib import contextmanager

    import pytest
    from sqlalchemy import create_engine, text

    from core.db.session import Database

    @contextmanager
    def _cm():
        base = os.environ.get("YUQING_TEST_DATABASE_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        admin_url = base.rsplit("/", 1)[0] + "/postgres"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            admin.dispose()
            message = f"PostgreSQL not reachable at {admin_url}: {type(exc).__name__}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        database = Database(admin_url.rsplit("/", 1)[0] + f"/{name}")
        try:
            database.migrate()
            yield database
        finally:
            database.close()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    return _cm()
