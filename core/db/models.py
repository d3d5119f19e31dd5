"""The relational schema (events, tickets, audit, responses, outbox, dead letters, users, units).

One SQLAlchemy metadata serves SQLite (embedded) and PostgreSQL (scale); Alembic migrations in
``core/db/migrations`` create it. Tickets carry a ``version`` column used for optimistic locking
(``version_id_col``): two workers updating one ticket cannot silently overwrite each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from core.records import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite drops tzinfo; we store UTC and restore it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of all tables."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


# Ticket states (the state machine itself lives in alerts.tickets.workflow).
OPEN_TICKET_STATES = ("new", "acknowledged", "assessing", "handling", "responded", "returned")
CLOSED_TICKET_STATES = ("closed", "evaluated", "merged")


class EventRow(Base):
    """One event: a cluster of posts about one matter, with running aggregates."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(Text, default="")
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime] = mapped_column(index=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    unique_authors: Mapped[int] = mapped_column(Integer, default=0)
    engagement: Mapped[int] = mapped_column(Integer, default=0)
    negative_count: Mapped[int] = mapped_column(Integer, default=0)
    heat: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    heat_series: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    topic: Mapped[str | None] = mapped_column(String(64), nullable=True)
    places: Mapped[list[Any]] = mapped_column(JSON, default=list)
    districts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    representative_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    burst: Mapped[bool] = mapped_column(Boolean, default=False)
    level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventMemberRow(Base):
    """Which post belongs to which event. Its primary key is the idempotency guard of event counting."""

    __tablename__ = "event_members"

    post_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), ForeignKey("events.id"), index=True)
    published_at: Mapped[datetime]
    author_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    negative: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_event_members_event_author", "event_id", "author_hash"),)


class TicketRow(Base):
    """An early-warning ticket (预警工单). At most one open ticket per event."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), ForeignKey("events.id"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), index=True, default="new")
    title: Mapped[str] = mapped_column(Text, default="")
    rule: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    lead_unit: Mapped[str] = mapped_column(String(64), index=True)
    cooperating_units: Mapped[list[Any]] = mapped_column(JSON, default=list)
    routing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # why these units
    deadlines: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # stage -> ISO time
    escalation: Mapped[int] = mapped_column(Integer, default=0)  # 0 none 1 催办 2 超时 3 通报 4 督办
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    signed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    responded_at: Mapped[datetime | None] = mapped_column(nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    merged_into: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reopened: Mapped[int] = mapped_column(Integer, default=0)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index(
            "uq_tickets_one_open_per_event",
            "event_id",
            unique=True,
            sqlite_where=text("state NOT IN ('closed','evaluated','merged')"),
            postgresql_where=text("state NOT IN ('closed','evaluated','merged')"),
        ),
    )


class TicketAuditRow(Base):
    """Append-only history of every ticket action."""

    __tablename__ = "ticket_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(40), ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ResponseRow(Base):
    """A response (回应/口径) drafted by a unit, approved, then published (immutable once published)."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(40), ForeignKey("tickets.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="draft")  # draft|approved|published|rejected
    drafted_by: Mapped[str] = mapped_column(String(64))
    drafted_at: Mapped[datetime] = mapped_column(default=utcnow)
    approvals: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{user, at, decision, note}]
    published_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)


class OutboxRow(Base):
    """A notification to send, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # idempotency key
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    notification: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(12), default="pending", index=True)  # pending|sent|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)


class DeadLetterRow(Base):
    """A record that failed a stage, with the reason and the raw bytes, for listing and replay."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(256), default="")
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    replayed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    replay_result: Mapped[str | None] = mapped_column(Text, nullable=True)


class UnitRow(Base):
    """A responsible unit (责任单位), synced from the units file."""

    __tablename__ = "units"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    supervisor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UserRow(Base):
    """A person who logs in. Roles: admin, analyst, handler, leader."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("units.id"), nullable=True)
    mobile: Mapped[str | None] = mapped_column(String(20), nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Signed into every cookie session; bumping it (logout, password change, disable, revoke) ends them all.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiTokenRow(Base):
    """A machine token (only its hash is stored)."""

    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRunRow(Base):
    """One run of a scheduled job in one slot; the unique key makes a slot run once across workers."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[str] = mapped_column(String(64), primary_key=True)
    worker: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class TargetStatusRow(Base):
    """Health of a notification target (a WeChat robot marked broken after errcode 93000, say)."""

    __tablename__ = "target_status"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    broken: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[datetime] = mapped_column(default=utcnow)


class WatchlistRow(Base):
    """A keyword watch-list (关键词方案): 地域词 AND 事件词 NOT 排除词, editable by analysts."""

    __tablename__ = "watchlists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    expression: Mapped[str] = mapped_column(Text)
    level: Mapped[int] = mapped_column(Integer, default=2)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by: Mapped[str] = mapped_column(String(64), default="system")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
