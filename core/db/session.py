"""Engine and session factory for the relational store, and schema migration at start-up."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import BackendUnavailable

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine tuned for the backend: WAL and a busy timeout on SQLite, pre-ping on PostgreSQL."""
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            from core.private_files import private_file

            private_file(Path(path))  # 0600 before SQLite creates it (and its -wal/-shm) with the umask
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=30,
                      connect_args={"connect_timeout": 10})
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


MIGRATION_LOCK_KEY = 0x79757169_6E67  # "yuqing": one advisory lock id for schema migrations


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Workers and the API start together against a fresh database: one process migrates, the others
            # wait on this lock (released at commit) and then find the schema at head. Without it they race
            # on CREATE TABLE and all but one crash at start-up.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.info("database schema at head (%s)", engine.url.render_as_string(hide_password=True))


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, future=True)

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite backend."""
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Create or upgrade the schema."""
        migrate(self.engine)

    def session(self) -> Session:
        """A new session; the caller commits or rolls back."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction: commit on success, roll back on error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException as exc:
            with suppress(DBAPIError):  # the connection may be gone already; the pool discards it
                s.rollback()
            if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
                # A dropped or unreachable server is a passing outage: callers retry the whole transaction.
                first_line = str(getattr(exc, "orig", exc)).splitlines()[0][:200] if str(exc) else ""
                url = self.engine.url.render_as_string(hide_password=True)
                raise BackendUnavailable(f"database at {url}: {type(getattr(exc, 'orig', exc)).__name__}: "
                                         f"{first_line}") from exc
            raise
        finally:
            s.close()

    def close(self) -> None:
        """Dispose of the pool."""
        self.engine.dispose()
