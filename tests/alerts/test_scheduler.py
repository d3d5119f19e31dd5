"""The deadline scheduler: 催办 → 超时 → 通报 → 督办 on the working calendar, exactly once across workers."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from alerts.deadlines import DeadlinePolicy
from alerts.rules.base import Match
from alerts.scheduler import Scheduler, run_due_jobs, run_once
from alerts.tickets import service as svc
from core.auth.service import User
from core.db.models import JobRunRow, OutboxRow, TicketAuditRow, TicketRow, UnitRow
from core.db.session import Database
from core.records import Event, WarningLevel
from tests.alerts.tickets.ticket_helpers import fresh_pg_database

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 9, 30, 10, 0, tzinfo=SH).astimezone(UTC)  # Tue 10:00 Beijing, eve of National Day
ENV = User(id=5, username="env-handler", role="handler", unit_id="env")
ANALYST = User(id=2, username="office", role="analyst")
POLICY = DeadlinePolicy.load()


def _seed_units(db: Database) -> None:
    with db.transaction() as s:
        s.add_all([UnitRow(id="env", name="生态环境局", supervisor="gov-office"),
                   UnitRow(id="gov-office", name="政府办")])


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sched") / "tpl.sqlite"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    _seed_units(db)
    db.close()
    return path


@pytest.fixture()
def db(template, tmp_path):
    path = tmp_path / "s.sqlite"
    shutil.copy(template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.close()


def _open(db: Database, n: int = 1, level: WarningLevel = WarningLevel.yellow) -> list[str]:
    ids = []
    with db.transaction() as s:
        for i in range(n):
            ev = Event(id=f"ev{i}", title=f"事件{i}", first_seen=T0, last_seen=T0)
            m = Match(rule="burst", event_id=ev.id, level=level, reason="激增", at=T0)
            ids.append(svc.open_or_update(s, event=ev, match=m, lead_unit="env", cooperating_units=["housing"],
                                          routing={}, now=T0, policy=POLICY)[0].id)
    return ids


def _actions(db: Database, tid: str, stage: str | None = None) -> list[str]:
    with db.transaction() as s:
        rows = s.scalars(select(TicketAuditRow).where(TicketAuditRow.ticket_id == tid)
                         .order_by(TicketAuditRow.id)).all()
        return [r.action for r in rows if r.actor.startswith("scheduler") and
                (stage is None or r.detail.get("stage") == stage)]


def _run(db: Database, at: datetime, worker: str = "w1"):
    return run_due_jobs(db.session, now=at, policy=POLICY, worker_id=worker, evaluate_after_hours=None)


def bj(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def test_sign_ladder_follows_the_working_calendar(db) -> None:
    (tid,) = _open(db)
    assert _run(db, T0 + timedelta(minutes=10)).taken == []
    # yellow: sign within 1 h; remind half-way (the 2 h lead time would be before the start).
    assert [s.step for s in _run(db, T0 + timedelta(minutes=31)).taken] == [1]
    assert _run(db, T0 + timedelta(minutes=32)).taken == []  # nothing twice
    _run(db, T0 + timedelta(minutes=61))
    assert _actions(db, tid, "sign") == ["remind", "overdue"]
    # 通报 one working day after the deadline: Oct 1-8 are holidays, so not before Thu Oct 9 11:00.
    _run(db, bj(2025, 10, 8, 23, 0))
    assert _actions(db, tid, "sign") == ["remind", "overdue"]
    _run(db, bj(2025, 10, 9, 11, 1))
    assert _actions(db, tid, "sign") == ["remind", "overdue", "notice"]
    # 督办 two working days after the 通报: Fri Oct 10, then the adjusted working Saturday Oct 11.
    _run(db, bj(2025, 10, 11, 10, 59))
    assert _actions(db, tid, "sign")[-1] == "notice"
    _run(db, bj(2025, 10, 11, 11, 1))
    assert _actions(db, tid, "sign") == ["remind", "overdue", "notice", "supervise"]
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert t.escalation == 4 and t.extra["escalation"]["sign"] == 4
        kinds = {(o.kind, o.channel, o.target) for o in s.scalars(select(OutboxRow))}
    assert ("ticket.remind", "wecom", "env") in kinds and ("ticket.overdue", "wecom", "office") in kinds
    assert ("ticket.escalated", "wecom", "gov-office") in kinds and ("ticket.escalated", "email", "gov-office") in kinds


def test_signing_stops_the_sign_ladder_and_catch_up_takes_only_the_highest_step(db) -> None:
    (tid,) = _open(db)
    with db.transaction() as s:
        svc.acknowledge(s, ticket_id=tid, actor=ENV, now=T0 + timedelta(minutes=20))
    # The scheduler was down for days: first_response (48 h, Oct 2 10:00) is long overdue -> one step only.
    report = _run(db, bj(2025, 10, 5, 12))
    assert [(s.stage, s.step) for s in report.taken] == [("first_response", 2)]
    assert _actions(db, tid, "sign") == []


def test_extension_opens_fresh_slots(db) -> None:
    (tid,) = _open(db)
    with db.transaction() as s:
        svc.acknowledge(s, ticket_id=tid, actor=ENV, now=T0)
    _run(db, T0 + timedelta(hours=47))
    assert _actions(db, tid, "first_response") == ["remind"]
    until = T0 + timedelta(hours=96)
    with db.transaction() as s:
        svc.request_extension(s, ticket_id=tid, actor=ENV, stage="first_response", until=until, reason="等待检测",
                              now=T0 + timedelta(hours=47))
        svc.decide_extension(s, ticket_id=tid, actor=ANALYST, approve=True, note="同意", now=T0 + timedelta(hours=47))
    _run(db, T0 + timedelta(hours=49))
    assert _actions(db, tid, "first_response") == ["remind"]  # the old deadline no longer applies
    _run(db, until - timedelta(hours=1))
    assert _actions(db, tid, "first_response") == ["remind", "remind"]


def test_run_once_guard(db) -> None:
    calls = []
    assert run_once(db.session, job="weekly", slot="2025-W40", worker_id="a", now=T0,
                    fn=lambda s: calls.append(1) or "done") == (True, "done")
    assert run_once(db.session, job="weekly", slot="2025-W40", worker_id="b", now=T0,
                    fn=lambda s: calls.append(2)) == (False, None)
    with pytest.raises(RuntimeError):
        run_once(db.session, job="weekly", slot="2025-W41", worker_id="a", now=T0,
                 fn=lambda s: (_ for _ in ()).throw(RuntimeError("boom")))
    # A failed run leaves its slot free.
    assert run_once(db.session, job="weekly", slot="2025-W41", worker_id="b", now=T0, fn=lambda s: 41) == (True, 41)
    assert calls == [1]


def _race(db_a: Database, db_b: Database, tickets: list[str], at: datetime) -> None:
    barrier = threading.Barrier(2)
    reports, errors = {}, []

    def go(name: str, database: Database) -> None:
        try:
            barrier.wait()
            reports[name] = run_due_jobs(database.session, now=at, policy=POLICY, worker_id=name,
                                         evaluate_after_hours=None)
        except Exception as exc:  # pragma: no cover - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=("A", db_a)), threading.Thread(target=go, args=("B", db_b))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    # Per ticket two stages are due: sign (deadline Sep 30 11:00) is at 通报 (one working day later = Oct 9
    # 11:00); first response (deadline Oct 2 10:00, a holiday) is only 超时: its 通报 comes at Oct 10 00:00.
    taken = len(reports["A"].taken) + len(reports["B"].taken)
    assert taken == 2 * len(tickets) and reports["A"].failed + reports["B"].failed == 0
    for tid in tickets:
        assert _actions(db_a, tid, "sign") == ["notice"]
        assert _actions(db_a, tid, "first_response") == ["overdue"]
    with db_a.transaction() as s:
        notes = s.scalars(select(OutboxRow).where(OutboxRow.kind == "ticket.escalated")).all()
        assert len(notes) == len(tickets) * 4  # env + gov-office + office on wecom, gov-office by e-mail
        assert s.query(OutboxRow).filter_by(kind="ticket.overdue").count() == len(tickets) * 2
        assert s.query(JobRunRow).count() == 2 * len(tickets)


def test_two_schedulers_on_one_sqlite_file_escalate_once(db) -> None:
    tickets = _open(db, 12)
    other = Database(db.url)  # a second engine and pool, as a second process would have
    try:
        _race(db, other, tickets, bj(2025, 10, 9, 11, 1))
    finally:
        other.close()


@pytest.fixture()
def pg_db():
    with fresh_pg_database("yq_sched") as database:
        _seed_units(database)
        yield database


@pytest.mark.postgres
def test_two_schedulers_on_postgresql_escalate_once(pg_db) -> None:
    tickets = _open(pg_db, 12)
    other = Database(pg_db.url)
    try:
        _race(pg_db, other, tickets, bj(2025, 10, 9, 11, 1))
    finally:
        other.close()


@pytest.mark.postgres
def test_concurrent_open_on_postgresql_makes_one_ticket(pg_db) -> None:
    barrier = threading.Barrier(2)
    out, errors = [], []

    def go(db: Database, rule: str, level: WarningLevel) -> None:
        try:
            barrier.wait()
            with db.transaction() as s:
                ev = Event(id="evpg", title="事件", first_seen=T0, last_seen=T0)
                m = Match(rule=rule, event_id="evpg", level=level, reason=rule, at=T0)
                out.append(svc.open_or_update(s, event=ev, match=m, lead_unit="env", cooperating_units=[],
                                              routing={}, now=T0, policy=POLICY)[1])
        except Exception as exc:  # pragma: no cover - asserted below
            errors.append(exc)

    other = Database(pg_db.url)
    try:
        threads = [threading.Thread(target=go, args=(pg_db, "A", WarningLevel.blue)),
                   threading.Thread(target=go, args=(other, "B", WarningLevel.orange))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    finally:
        other.close()
    assert not errors, errors
    assert sorted(out) == [False, True]
    with pg_db.transaction() as s:
        (t,) = s.scalars(select(TicketRow)).all()
        assert t.level == 3 and {r["rule"] for r in t.extra["reasons"]} == {"A", "B"}


def test_scheduler_thread_runs_and_stops(db) -> None:
    (tid,) = _open(db)
    sched = Scheduler(db.session, POLICY, interval_s=0.05, worker_id="thread",
                      clock=lambda: T0 + timedelta(minutes=61))
    sched.start()
    deadline = time.monotonic() + 20
    while sched.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sched.stop()
    assert sched.runs >= 2
    assert _actions(db, tid, "sign") == ["overdue"]


def test_closed_ticket_gets_evaluated_once(db) -> None:
    (tid,) = _open(db)
    with db.transaction() as s:
        svc.acknowledge(s, ticket_id=tid, actor=ENV, now=T0)
        svc.assess(s, ticket_id=tid, actor=ENV, level=2, facts="f", risk="r", now=T0)
        svc.start_handling(s, ticket_id=tid, actor=ENV, tasks={}, now=T0)
        svc.close(s, ticket_id=tid, actor=ENV, summary="done", now=T0 + timedelta(hours=2))
    at = T0 + timedelta(hours=30)
    assert run_due_jobs(db.session, now=at, policy=POLICY, worker_id="w").evaluated == 1
    assert run_due_jobs(db.session, now=at, policy=POLICY, worker_id="w").evaluated == 0
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert t.state == "evaluated" and t.evaluation["outcome"] == "平息"
