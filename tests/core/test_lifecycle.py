"""Retention and SQLite backup/restore against real stores (SqlitePostStore + the migrated ticket database)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db.models import EventMemberRow, EventRow, JobRunRow, OutboxRow, TicketAuditRow, TicketRow
from core.db.session import Database
from core.lifecycle import MANIFEST, apply_retention, backup, integrity, restore, verify_backup
from core.records import AnalyzedPost, Sentiment, SentimentLabel, Source, Topic, post_id
from core.store.sqlite_posts import SqlitePostStore

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def tokenize(text: str) -> list[str]:
    return text.split()


def post(i: int, *, days_ago: float = 0.0) -> AnalyzedPost:
    published = NOW - timedelta(days=days_ago, minutes=i % 1000)
    return AnalyzedPost(id=post_id("weibo", f"p{i}"), source=Source.weibo, external_id=f"p{i}",
                        text=f"A{i % 9}区 第{i}条 居民 反映 停水 问题", published_at=published, received_at=published,
                        sentiment=Sentiment(label=SentimentLabel.negative, score=0.1), topic=Topic(l1="住房保障"))


def open_stores(data: Path) -> tuple[SqlitePostStore, Database]:
    store = SqlitePostStore(data / "posts.sqlite", tokenize=tokenize)
    store.ensure_schema()
    db = Database(f"sqlite:///{data / 'yuqing.sqlite'}")
    db.migrate()
    return store, db


def add_ticket(db: Database, n: int, *, days_ago: float, state: str = "new", closed_days_ago: float | None = None,
               post_ids: tuple[str, ...] = ()) -> None:
    at = NOW - timedelta(days=days_ago)
    with db.transaction() as s:
        s.add(EventRow(id=f"ev-{n}", title=f"事件{n}", first_seen=at, last_seen=at, size=len(post_ids)))
        s.flush()
        for pid in post_ids:
            s.add(EventMemberRow(post_id=pid, event_id=f"ev-{n}", published_at=at))
        s.add(TicketRow(id=f"tk-{n}", event_id=f"ev-{n}", level=2, state=state, title=f"工单{n}", lead_unit="env",
                        created_at=at, updated_at=at,
                        closed_at=NOW - timedelta(days=closed_days_ago) if closed_days_ago is not None else None))
        s.flush()
        s.add(TicketAuditRow(ticket_id=f"tk-{n}", at=at, actor="system", action="create", to_state="new"))


def add_event(db: Database, n: int, *, days_ago: float, post_ids: tuple[str, ...] = ()) -> None:
    at = NOW - timedelta(days=days_ago)
    with db.transaction() as s:
        s.add(EventRow(id=f"ev-{n}", title=f"事件{n}", first_seen=at, last_seen=at, size=len(post_ids)))
        s.flush()
        for pid in post_ids:
            s.add(EventMemberRow(post_id=pid, event_id=f"ev-{n}", published_at=at))


def count(db: Database, model: object) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# -- retention ---------------------------------------------------------------------------------------------
@pytest.fixture()
def aged(tmp_path: Path):
    store, db = open_stores(tmp_path)
    old = [post(i, days_ago=200) for i in range(30)]
    new = [post(100 + i, days_ago=10) for i in range(20)]
    store.upsert(old + new)
    add_event(db, 1, days_ago=200, post_ids=tuple(p.id for p in old[:5]))  # old, no ticket: goes
    add_event(db, 2, days_ago=10, post_ids=tuple(p.id for p in new[:5]))  # recent: stays
    add_ticket(db, 3, days_ago=4 * 365, state="closed", closed_days_ago=3 * 365 + 300)  # closed > 3 y ago
    add_ticket(db, 4, days_ago=4 * 365, state="handling")  # old but open: never goes
    add_ticket(db, 5, days_ago=300, state="closed", closed_days_ago=250)  # closed recently
    with db.transaction() as s:
        s.add(OutboxRow(id="o-old-sent", channel="wecom", target="office", kind="k", notification={}, state="sent",
                        created_at=NOW - timedelta(days=200)))
        s.add(OutboxRow(id="o-old-dead", channel="wecom", target="office", kind="k", notification={}, state="dead",
                        created_at=NOW - timedelta(days=200)))
        s.add(OutboxRow(id="o-new", channel="wecom", target="office", kind="k", notification={}, state="sent",
                        created_at=NOW - timedelta(days=1)))
        s.add(JobRunRow(job="j", slot="old", worker="w", at=NOW - timedelta(days=200)))
        s.add(JobRunRow(job="j", slot="new", worker="w", at=NOW - timedelta(days=1)))
    yield store, db, old, new
    store.close()
    db.close()


def test_dry_run_counts_exactly_what_a_real_run_deletes(aged) -> None:
    store, db, _old, _new = aged
    dry = apply_retention(post_store=store, db=db, posts_days=180, tickets_years=3, now=NOW, dry_run=True)
    assert store.count() == 50 and count(db, TicketRow) == 3  # nothing went
    real = apply_retention(post_store=store, db=db, posts_days=180, tickets_years=3, now=NOW)
    for name in ("posts", "events", "event_members", "tickets", "ticket_audit", "outbox", "job_runs"):
        assert getattr(dry, name) == getattr(real, name), name
    assert (real.posts, real.tickets, real.ticket_audit, real.outbox, real.job_runs) == (30, 1, 1, 1, 1)
    assert real.events == 2 and real.event_members == 5  # the old un-ticketed event and the expired ticket's


def test_retention_keeps_recent_posts_open_tickets_and_undelivered_rows(aged) -> None:
    store, db, old, new = aged
    apply_retention(post_store=store, db=db, posts_days=180, tickets_years=3, now=NOW)
    assert store.count() == 20
    assert store.get(old[0].id) is None and store.get(new[0].id) is not None
    with db.session() as s:
        assert set(s.scalars(select(TicketRow.id))) == {"tk-4", "tk-5"}
        assert set(s.scalars(select(EventRow.id))) == {"ev-2", "ev-4", "ev-5"}  # ticketed events stay
        assert set(s.scalars(select(OutboxRow.id))) == {"o-old-dead", "o-new"}  # failures stay for the admin
        assert set(s.scalars(select(TicketAuditRow.ticket_id))) == {"tk-4", "tk-5"}


def test_tickets_and_audit_are_kept_forever_by_default(aged) -> None:
    store, db, _old, _new = aged
    result = apply_retention(post_store=store, db=db, posts_days=180, tickets_years=None, now=NOW)
    assert result.tickets == 0 and result.tickets_cutoff is None
    assert count(db, TicketRow) == 3 and count(db, TicketAuditRow) == 3


def test_nonsense_periods_are_refused(aged) -> None:
    store, db, _old, _new = aged
    with pytest.raises(ValueError, match="posts_days"):
        apply_retention(post_store=store, db=db, posts_days=0, tickets_years=None, now=NOW)
    with pytest.raises(ValueError, match="tickets_years"):
        apply_retention(post_store=store, db=db, posts_days=30, tickets_years=0, now=NOW)


# -- backup / restore --------------------------------------------------------------------------------------
def test_backup_while_writing_restores_a_consistent_snapshot(tmp_path: Path) -> None:
    live = tmp_path / "live"
    store, db = open_stores(live)
    first = [post(i) for i in range(3000)]
    for k in range(0, len(first), 500):
        store.upsert(first[k: k + 500])
    for n in range(20):
        add_ticket(db, n, days_ago=1, post_ids=(first[n].id,))
    stop = threading.Event()
    written = {"posts": 0, "tickets": 0}

    def writer() -> None:
        i = 10_000
        while not stop.is_set():
            store.upsert([post(i + k) for k in range(50)])
            add_ticket(db, i, days_ago=0, post_ids=(post(i).id,))
            written["posts"] += 50
            written["tickets"] += 1
            i += 50

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written["tickets"] < 3:  # the backup starts mid-stream
            stop.wait(0.01)
        folder = backup(files={"posts.sqlite": live / "posts.sqlite", "yuqing.sqlite": live / "yuqing.sqlite"},
                        dest_dir=tmp_path / "backups", now=NOW)
        while written["tickets"] < 10:  # and the writes go on after it
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert written["tickets"] >= 10
    entries = {e["name"]: e for e in verify_backup(folder)}
    snap_posts = entries["posts.sqlite"]["tables"]["posts"]
    snap_tickets = entries["yuqing.sqlite"]["tables"]["tickets"]
    assert 3000 <= snap_posts < store.count()  # a snapshot from the middle of the stream
    assert 20 <= snap_tickets < count(db, TicketRow)
    assert not (folder / "posts.sqlite-wal").exists()  # self-contained files

    fresh = tmp_path / "restored"
    restore(src_dir=folder, targets={"posts.sqlite": fresh / "posts.sqlite", "yuqing.sqlite": fresh / "yuqing.sqlite"})
    store2, db2 = open_stores(fresh)
    try:
        assert store2.count() == snap_posts
        assert count(db2, TicketRow) == snap_tickets
        assert count(db2, TicketAuditRow) == snap_tickets  # each ticket committed with its audit row
        sample = first[1234]
        assert store2.get(sample.id) == store.get(sample.id)
        with db.session() as s, db2.session() as s2:
            a, b = s.get(TicketRow, "tk-7"), s2.get(TicketRow, "tk-7")
            assert b is not None and (a.title, a.event_id, a.created_at, a.level) == (
                b.title, b.event_id, b.created_at, b.level)
    finally:
        store2.close()
        db2.close()
        store.close()
        db.close()


def test_restore_refuses_to_overwrite_and_rejects_a_damaged_backup(tmp_path: Path) -> None:
    live = tmp_path / "live"
    store, db = open_stores(live)
    store.upsert([post(i) for i in range(50)])
    store.close()
    db.close()
    files = {"posts.sqlite": live / "posts.sqlite", "yuqing.sqlite": live / "yuqing.sqlite"}
    folder = backup(files=files, dest_dir=tmp_path / "b", now=NOW)
    with pytest.raises(FileExistsError, match="--force"):
        restore(src_dir=folder, targets=files)
    with pytest.raises(FileExistsError):
        backup(files=files, dest_dir=tmp_path / "b", now=NOW)  # never overwrites an earlier backup

    # New data after the backup, then a forced restore brings back the backed-up state.
    store, db = open_stores(live)
    store.upsert([post(i) for i in range(50, 80)])
    assert store.count() == 80
    store.close()
    db.close()
    restore(src_dir=folder, targets=files, force=True)
    store, db = open_stores(live)
    assert store.count() == 50
    assert integrity(live / "posts.sqlite") == "ok"
    store.close()
    db.close()

    damaged = folder / "posts.sqlite"
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        restore(src_dir=folder, targets={"posts.sqlite": tmp_path / "other" / "posts.sqlite"})
    (folder / MANIFEST).unlink()
    with pytest.raises(FileNotFoundError, match="manifest"):
        restore(src_dir=folder, targets={"posts.sqlite": tmp_path / "other" / "posts.sqlite"})


def test_integrity_check_reports_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    conn.execute("CREATE INDEX ix_b ON t (b)")
    conn.executemany("INSERT INTO t (b) VALUES (?)", [(f"value {i}" * 20,) for i in range(2000)])
    conn.commit()
    conn.close()
    assert integrity(path) == "ok"
    raw = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page + 100, 3 * page + 400):  # scribble inside a b-tree page
        raw[offset] = 0x5A
    path.write_bytes(bytes(raw))
    assert integrity(path) != "ok"


def test_ops_commands_back_up_restore_and_apply_retention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from core import ops_cli

    data = tmp_path / "data"
    store, db = open_stores(data)
    store.upsert([post(i, days_ago=400) for i in range(5)] + [post(10 + i) for i in range(7)])
    store.close()
    db.close()
    monkeypatch.setenv("YUQING_DATA_DIR", str(data))
    monkeypatch.delenv("YUQING_DATABASE_URL", raising=False)
    monkeypatch.setenv("YUQING_MODE", "embedded")
    app = typer.Typer()
    for name in ("backup", "restore", "retention"):
        app.command(name)(getattr(ops_cli, name))
    runner = CliRunner()

    made = runner.invoke(app, ["backup", str(tmp_path / "backups")])
    assert made.exit_code == 0, made.output
    folder = Path(made.stdout.split("backup: ", 1)[1].split()[0])
    assert {e["name"] for e in verify_backup(folder)} == {"posts.sqlite", "yuqing.sqlite"}

    dry = runner.invoke(app, ["retention", "--dry-run", "--posts-days", "180"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["posts"] == 5
    done = runner.invoke(app, ["retention", "--posts-days", "180"])
    assert json.loads(done.stdout)["posts"] == 5

    refused = runner.invoke(app, ["restore", str(folder)])
    assert refused.exit_code == 1 and "--force" in refused.output
    forced = runner.invoke(app, ["restore", str(folder), "--force"])
    assert forced.exit_code == 0, forced.output
    store, db = open_stores(data)
    assert store.count() == 12  # the retention run is undone by the restore
    store.close()
    db.close()


def test_daily_retention_runs_once_per_day_across_workers(aged) -> None:
    from core.lifecycle import retention_if_due

    store, db, _old, _new = aged
    early = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)  # 02:30 in Shanghai: before the 03:00 slot
    kwargs = {"post_store": store, "db": db, "posts_days": 180, "tickets_years": None}
    assert retention_if_due(now=early, worker_id="a", **kwargs) is None
    due = early + timedelta(hours=1)
    first = retention_if_due(now=due, worker_id="a", **kwargs)
    assert first is not None and first.posts == 30
    assert retention_if_due(now=due + timedelta(minutes=5), worker_id="b", **kwargs) is None  # same day
    assert retention_if_due(now=due + timedelta(days=1), worker_id="b", **kwargs) is not None
