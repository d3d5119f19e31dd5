"""OutboxSender against a real SQLite outbox and the WeChat robot emulator."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from alerts.notifiers.base import Notification
from alerts.notifiers.wecom import WecomRobotNotifier
from alerts.outbox import enqueue
from alerts.ratelimit import RateLimiter
from alerts.sender import OutboxSender
from core.db.models import OutboxRow, TargetStatusRow
from core.db.session import Database
from core.records import utcnow
from tests.alerts.notifiers.wecom_emulator import WecomEmulator

KEY_A3 = "a3-robot-key-5b1e0c9d-do-not-log"
KEY_OFFICE = "office-robot-key-77aa01"
DASH = "https://yq.example.gov.cn"


class FakeTime:
    """One clock for the test, the sender and the emulator's rate window."""

    def __init__(self) -> None:
        self.now = utcnow() + timedelta(seconds=1)
        self._t0 = self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def monotonic(self) -> float:
        return (self.now - self._t0).total_seconds()


@pytest.fixture()
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'outbox.db'}")
    database.migrate()
    yield database
    database.close()


@pytest.fixture()
def emulator(clock: FakeTime) -> Iterator[WecomEmulator]:
    with WecomEmulator({KEY_A3, KEY_OFFICE}, clock=clock.monotonic) as emu:
        yield emu


def notifier(emulator: WecomEmulator) -> WecomRobotNotifier:
    return WecomRobotNotifier(base_url=emulator.base_url, timeout_s=5, dashboard_url=DASH,
                              keys={"gov-a3": SecretStr(KEY_A3), "office": SecretStr(KEY_OFFICE)})


def sender(db: Database, emulator: WecomEmulator, clock: FakeTime, **kw: object) -> OutboxSender:
    return OutboxSender(db, {"wecom": notifier(emulator)}, limiter=RateLimiter(per_minute=20),
                        worker_id=str(kw.pop("worker_id", "w1")), clock=lambda: clock.now, **kw)  # type: ignore[arg-type]


def add(db: Database, n: int, target: str = "gov-a3", start: int = 0) -> list[str]:
    ids = []
    with db.transaction() as s:
        for i in range(start, start + n):
            nid = f"ticket.created:T{i}:{target}"
            enqueue(s, Notification(
                id=nid, channel="wecom", target=target, kind="ticket.created", subject=f"工单{i}",
                payload={"id": f"T{i}", "title": f"事件标题{i}", "level": 2, "state": "new", "lead_unit": target,
                         "deadlines": {"sign": "2026-11-22T02:00:00+00:00"}, "samples": [f"样本{i}"]},
            ))
            ids.append(nid)
    return ids


def rows(db: Database) -> dict[str, OutboxRow]:
    with db.transaction() as s:
        return {r.id: r for r in s.scalars(select(OutboxRow))}


def ticket_ids_delivered(emulator: WecomEmulator, key: str) -> Counter[str]:
    """How many times each ticket link reached the robot (singles and digests alike)."""
    seen: Counter[str] = Counter()
    for body in emulator.delivered(key):
        content = body["markdown"]["content"]
        for part in content.split("/#/tickets/")[1:]:
            seen[part.split(")")[0]] += 1
    return seen


def test_sends_pending_rows_once(db: Database, emulator: WecomEmulator, clock: FakeTime) -> None:
    add(db, 3)
    stats = sender(db, emulator, clock).run_once(clock.now)
    assert (stats.claimed, stats.sent, stats.messages) == (3, 3, 3)
    assert ticket_ids_delivered(emulator, KEY_A3) == Counter({"T0": 1, "T1": 1, "T2": 1})
    assert {r.state for r in rows(db).values()} == {"sent"}
    again = sender(db, emulator, clock).run_once(clock.advance(3600))
    assert again.claimed == 0 and len(emulator.delivered()) == 3


def test_busy_is_retried_with_backoff_then_delivered(db: Database, emulator: WecomEmulator,
                                                     clock: FakeTime) -> None:
    add(db, 1)
    emulator.inject(KEY_A3, -1)
    s = sender(db, emulator, clock, backoff_base_s=5)
    first = s.run_once(clock.now)
    assert (first.retried, first.sent) == (1, 0)
    row = next(iter(rows(db).values()))
    assert row.state == "pending" and row.attempts == 1 and "errcode -1" in (row.last_error or "")
    assert clock.now + timedelta(seconds=2.5) <= row.next_attempt_at <= clock.now + timedelta(seconds=5)
    assert s.run_once(clock.now).claimed == 0  # not due yet
    done = s.run_once(clock.advance(6))
    assert done.sent == 1
    row = next(iter(rows(db).values()))
    assert row.state == "sent" and row.attempts == 2
    assert ticket_ids_delivered(emulator, KEY_A3) == Counter({"T0": 1})


def test_dead_after_max_attempts(db: Database, emulator: WecomEmulator, clock: FakeTime) -> None:
    add(db, 1)
    emulator.inject(KEY_A3, -1, -1, -1)
    s = sender(db, emulator, clock, max_attempts=3, backoff_base_s=1)
    for _ in range(3):
        s.run_once(clock.advance(60))
    row = next(iter(rows(db).values()))
    assert row.state == "dead" and row.attempts == 3
    assert s.run_once(clock.advance(3600)).claimed == 0


def test_robot_removed_marks_target_broken_and_stops(db: Database, emulator: WecomEmulator,
                                                     clock: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    add(db, 3, "gov-a3")
    add(db, 1, "office", start=10)
    emulator.remove_robot(KEY_A3)
    s = sender(db, emulator, clock)
    stats = s.run_once(clock.now)
    assert stats.broken_targets == ["wecom:gov-a3"]
    assert emulator.unknown_key_calls == 1  # stopped after the first 93000
    assert ticket_ids_delivered(emulator, KEY_OFFICE) == Counter({"T10": 1})
    with db.transaction() as session:
        status = session.get(TargetStatusRow, ("wecom", "gov-a3"))
        assert status is not None and status.broken and "93000" in status.reason
    a3 = [r for r in rows(db).values() if r.target == "gov-a3"]
    assert {r.state for r in a3} == {"pending"}  # kept for when the admin repairs the robot
    assert all(r.claimed_by is None for r in a3)
    s.run_once(clock.advance(3600))
    assert emulator.unknown_key_calls == 1
    # secrets never in logs, errors or stored error text
    assert KEY_A3 not in caplog.text
    assert all(KEY_A3 not in (r.last_error or "") for r in rows(db).values())
    assert KEY_A3 not in status.reason


def test_burst_over_rate_limit_becomes_digest(db: Database, emulator: WecomEmulator, clock: FakeTime) -> None:
    add(db, 30)
    stats = sender(db, emulator, clock).run_once(clock.now)
    assert stats.sent == 30 and stats.deferred == 0
    assert stats.messages == 20 and stats.digests == 2
    assert ticket_ids_delivered(emulator, KEY_A3) == Counter({f"T{i}": 1 for i in range(30)})
    bodies = emulator.delivered(KEY_A3)
    assert len(bodies) == 20  # never more than the robot takes: no 45009
    assert all(c.errcode == 0 for c in emulator.calls)
    digests = [b["markdown"]["content"] for b in bodies if b["markdown"]["content"].startswith("### 预警通知汇总")]
    assert [d.splitlines()[0] for d in digests] == ["### 预警通知汇总（8 条）", "### 预警通知汇总（4 条）"]
    assert {r.state for r in rows(db).values()} == {"sent"}


def test_full_window_defers_then_digests(db: Database, emulator: WecomEmulator, clock: FakeTime) -> None:
    s = sender(db, emulator, clock)
    add(db, 20)
    assert s.run_once(clock.now).messages == 20
    add(db, 5, start=100)
    stats = s.run_once(clock.advance(10))
    assert stats.deferred == 5 and stats.messages == 0
    waiting = [r for r in rows(db).values() if r.state == "pending"]
    assert len(waiting) == 5 and all(r.attempts == 0 for r in waiting)
    assert s.run_once(clock.advance(10)).claimed == 0  # waits for the window, no hammering
    add(db, 20, start=200)
    later = s.run_once(clock.advance(45))  # 65 s after the first burst: 20 slots again, 25 rows
    assert later.sent == 25 and later.messages == 20 and later.digests >= 1
    assert all(c.errcode == 0 for c in emulator.calls)
    delivered = ticket_ids_delivered(emulator, KEY_A3)
    assert len(delivered) == 45 and set(delivered.values()) == {1}


def test_crash_after_claim_loses_nothing_and_sends_once(db: Database, emulator: WecomEmulator,
                                                        clock: FakeTime) -> None:
    add(db, 6)
    crashed = sender(db, emulator, clock, worker_id="dies", lease_s=30)
    token, claimed = crashed.claim(clock.now)  # claims, then "crashes" before sending
    assert len(claimed) == 6
    other = sender(db, emulator, clock, worker_id="w2")
    assert other.run_once(clock.advance(5)).claimed == 0  # lease still held
    stats = other.run_once(clock.advance(30))
    sent_at = clock.now
    assert stats.sent == 6
    assert ticket_ids_delivered(emulator, KEY_A3) == Counter({f"T{i}": 1 for i in range(6)})
    # the crashed sender coming back with its stale claim cannot touch the rows
    crashed._mark_sent(token, claimed, clock.advance(1), stats)
    assert all(r.sent_at == sent_at and r.attempts == 1 for r in rows(db).values())
    assert sender(db, emulator, clock, worker_id="w3").run_once(clock.advance(3600)).claimed == 0


def test_two_senders_racing_never_send_one_row_twice(tmp_path: Path, emulator: WecomEmulator,
                                                     clock: FakeTime) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    db_a, db_b = Database(url), Database(url)
    db_a.migrate()
    add(db_a, 16)
    a = sender(db_a, emulator, clock, worker_id="a", batch=10)
    b = sender(db_b, emulator, clock, worker_id="b", batch=10)
    barrier = threading.Barrier(2)

    def run(s: OutboxSender) -> None:
        barrier.wait()
        for _ in range(3):
            s.run_once(clock.now)

    threads = [threading.Thread(target=run, args=(x,)) for x in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    delivered = ticket_ids_delivered(emulator, KEY_A3)
    assert delivered == Counter({f"T{i}": 1 for i in range(16)})
    db_a.close()
    db_b.close()


def test_unknown_target_is_dead_with_reason(db: Database, emulator: WecomEmulator, clock: FakeTime) -> None:
    add(db, 1, "gov-unknown")
    stats = sender(db, emulator, clock).run_once(clock.now)
    assert stats.dead == 1
    row = next(iter(rows(db).values()))
    assert row.state == "dead" and "gov-unknown" in (row.last_error or "")


def test_malformed_row_is_dead_not_lost(db: Database, emulator: WecomEmulator, clock: FakeTime) -> None:
    with db.transaction() as s:
        s.add(OutboxRow(id="bad-1", channel="wecom", target="gov-a3", kind="ticket.created",
                        notification={"id": "bad-1", "channel": "wecom"}))
    stats = sender(db, emulator, clock).run_once(clock.now)
    assert stats.dead == 1
    assert "malformed notification" in (rows(db)["bad-1"].last_error or "")


def test_rows_for_unconfigured_channel_stay_pending(db: Database, emulator: WecomEmulator,
                                                    clock: FakeTime) -> None:
    with db.transaction() as s:
        enqueue(s, Notification(id="mail-1", channel="email", target="office", kind="ticket.created", subject="x"))
    assert sender(db, emulator, clock).run_once(clock.now).claimed == 0
    assert rows(db)["mail-1"].state == "pending"


def test_thread_start_stop(db: Database, emulator: WecomEmulator) -> None:
    add(db, 2)
    s = OutboxSender(db, {"wecom": notifier(emulator)}, limiter=RateLimiter(), worker_id="t",
                     interval_s=0.05, clock=lambda: utcnow() + timedelta(seconds=1))
    s.start()
    deadline = time.monotonic() + 10
    while len(emulator.delivered()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    s.stop()
    assert ticket_ids_delivered(emulator, KEY_A3) == Counter({"T0": 1, "T1": 1})


@pytest.mark.postgres
def test_two_senders_racing_on_postgres(pg_url: str, emulator: WecomEmulator, clock: FakeTime) -> None:
    """The claim UPDATE holds under PostgreSQL's READ COMMITTED too (a private channel keeps others' rows out)."""
    import uuid

    channel = f"wx{uuid.uuid4().hex[:10]}"
    db_a, db_b = Database(pg_url), Database(pg_url)
    db_a.migrate()
    with db_a.transaction() as s:
        for i in range(16):
            enqueue(s, Notification(id=f"{channel}:T{i}", channel=channel, target="gov-a3", kind="ticket.created",
                                    subject="x", payload={"id": f"T{i}", "title": f"事件{i}", "level": 1}))

    def make(db: Database, worker: str) -> OutboxSender:
        return OutboxSender(db, {channel: notifier(emulator)}, limiter=RateLimiter(per_minute=20), worker_id=worker,
                            batch=10, rate_limited_channels=(channel,), clock=lambda: clock.now)

    senders = [make(db_a, "a"), make(db_b, "b")]
    barrier = threading.Barrier(2)

    def run(s: OutboxSender) -> None:
        barrier.wait()
        for _ in range(3):
            s.run_once(clock.now)

    threads = [threading.Thread(target=run, args=(x,)) for x in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # the two senders have separate limiters, so the robot may refuse some calls (45009) — those retry later
    for s in senders:
        s.run_once(clock.advance(120))
    assert ticket_ids_delivered(emulator, KEY_A3) == Counter({f"T{i}": 1 for i in range(16)})
    with db_a.transaction() as s:
        states = [r.state for r in s.scalars(select(OutboxRow).where(OutboxRow.channel == channel))]
        s.query(OutboxRow).filter(OutboxRow.channel == channel).delete()
    assert states == ["sent"] * 16
    db_a.close()
    db_b.close()


def test_email_rows_go_through_smtp(db: Database, clock: FakeTime) -> None:
    from alerts.notifiers.smtp import SmtpNotifier
    from tests.alerts.notifiers.smtp_server import SmtpServer

    with db.transaction() as s:
        enqueue(s, Notification(id="ticket.overdue:T7:email", channel="email", target="gov-a3", kind="ticket.overdue",
                                subject="x", payload={"id": "T7", "title": "路灯不亮", "level": 1,
                                                      "samples": ["<b>路灯</b>坏了 13812345678"]}))
    with SmtpServer() as srv:
        mailer = SmtpNotifier(host="127.0.0.1", port=srv.port, security="none", username=None, password=None,
                              sender="yuqing@gov.example", timeout_s=5, recipients={"gov-a3": ["a3@gov.example"]})
        stats = OutboxSender(db, {"email": mailer}, worker_id="m", clock=lambda: clock.now).run_once(clock.now)
    assert stats.sent == 1
    (msg,) = srv.inbox.messages()
    assert msg["Subject"] == "【蓝色预警·一般】工单已超时：路灯不亮"
    html, text = msg.get_body(("html",)).get_content(), msg.get_body(("plain",)).get_content()
    assert "138****5678" in text and "13812345678" not in html + text
    assert "<b>" not in html and "路灯" in html
    assert rows(db)["ticket.overdue:T7:email"].state == "sent"


class SlowSends:
    """A notifier whose sends take ``seconds`` each on the test clock (a loaded host, a slow network)."""

    def __init__(self, inner: WecomRobotNotifier, clock: FakeTime) -> None:
        self.inner, self.clock, self.seconds = inner, clock, 0.0

    def send(self, note: Notification) -> None:
        self.inner.send(note)
        self.clock.advance(self.seconds)


def test_slow_sends_never_push_the_next_run_over_the_robots_limit(db: Database, emulator: WecomEmulator,
                                                                 clock: FakeTime) -> None:
    slow = SlowSends(notifier(emulator), clock)
    s = OutboxSender(db, {"wecom": slow}, limiter=RateLimiter(per_minute=20), clock=lambda: clock.now)  # type: ignore[dict-item]
    add(db, 200)
    started = clock.now
    slow.seconds = 2.0  # the first run's 20 messages go out over 40 s
    first = s.run_once(clock.now)
    assert first.messages == 20
    slow.seconds = 0.0  # the next run's sends are instant: a burst
    clock.advance((started + timedelta(seconds=60) - clock.now).total_seconds())
    s.run_once(clock.now)
    # A minute after the first run started only its first message has left the robot's window.
    refused = [c.errcode for c in emulator.calls if c.errcode != 0]
    assert refused == []
    assert len(emulator.delivered(KEY_A3)) == 21
    for _ in range(60):  # the rest, a run every 2 s, never refused either
        clock.advance(2)
        s.run_once(clock.now)
    assert [c.errcode for c in emulator.calls if c.errcode != 0] == []
    assert {r.state for r in rows(db).values()} == {"sent"}
