"""Deadline watch: 催办 before a deadline, 超时 at it, then 通报 and 督办 after further delays.

``run_due_jobs`` looks at every open ticket's unmet stages (sign, first response, authoritative
information, press conference, close) and takes each due step in its own transaction. It is safe
with several workers: each (ticket, stage, step, deadline) is first claimed by inserting a
``job_runs`` row (primary key (job, slot)) with ``ON CONFLICT DO NOTHING``, so exactly one worker
wins the slot; a worker that crashes before committing releases it (its insert rolls back). The
same guard is offered to other periodic jobs as ``run_once`` (e.g. the weekly report).

Steps per stage: 1 催办 (remind) at ``deadline - remind_before`` (never before half-way), 2 超时
(overdue) at the deadline, 3 通报 (notice) ``notice_after`` later, 4 督办 (supervise)
``supervise_after`` after that. When a worker was down and several steps are due, only the
highest is taken. An approved extension changes the deadline, which opens fresh slots.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from alerts.deadlines import STAGE_ZH, DeadlinePolicy
from alerts.tickets import service as svc
from alerts.tickets import workflow as wf
from core.db.models import JobRunRow, TicketRow, UnitRow
from core.errors import ConflictError, YuqingError
from core.records import utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")
ESCALATION_JOB = "ticket.escalation"
EVALUATION_JOB = "ticket.evaluation"
REMIND, OVERDUE, NOTICE, SUPERVISE = 1, 2, 3, 4
STEP_NAMES = {REMIND: "remind", OVERDUE: "overdue", NOTICE: "notice", SUPERVISE: "supervise"}
STEP_ZH = {REMIND: "催办", OVERDUE: "超时", NOTICE: "通报", SUPERVISE: "督办"}


def claim(session: Session, *, job: str, slot: str, worker_id: str, now: datetime) -> bool:
    """Insert the (job, slot) row in ``session``'s transaction; False when another worker holds it."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    result = session.execute(
        insert(JobRunRow.__table__)
        .values(job=job[:64], slot=slot[:64], worker=worker_id[:64], at=now)
        .on_conflict_do_nothing(index_elements=["job", "slot"])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def run_once(
    session_factory: Callable[[], Session],
    *,
    job: str,
    slot: str,
    worker_id: str,
    now: datetime,
    fn: Callable[[Session], T],
) -> tuple[bool, T | None]:
    """Run ``fn(session)`` for this (job, slot) exactly once across workers; (ran, result).

    ``fn``'s changes commit together with the claim, so a failure leaves the slot free to retry.
    """
    session = session_factory()
    try:
        if not claim(session, job=job, slot=slot, worker_id=worker_id, now=now):
            session.rollback()
            return False, None
        result = fn(session)
        session.commit()
        return True, result
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@dataclass
class DueStep:
    """One escalation step that is due for one ticket stage."""

    ticket_id: str
    stage: str
    step: int
    deadline: str

    @property
    def slot(self) -> str:
        """The run-once key: ticket, stage, step and a digest of the deadline (an extension opens new slots)."""
        digest = hashlib.sha1(self.deadline.encode()).hexdigest()[:8]  # noqa: S324 - an id, not security
        return f"{self.ticket_id}:{self.stage}:{self.step}:{digest}"


@dataclass
class RunReport:
    """What one ``run_due_jobs`` pass did."""

    taken: list[DueStep] = field(default_factory=list)
    skipped: int = 0  # claimed by another worker, or no longer due
    failed: int = 0
    evaluated: int = 0


def step_times(ticket: TicketRow, stage: str, policy: DeadlinePolicy) -> dict[int, datetime]:
    """When each escalation step of ``stage`` falls due for this ticket."""
    deadline = svc.parse_iso(ticket.deadlines[stage])
    start_text = (ticket.extra or {}).get("deadline_base")
    start = svc.parse_iso(start_text) if start_text else ticket.created_at
    start = min(start, deadline)
    remind = max(policy.remind_before.before(deadline), start + (deadline - start) / 2)
    notice = policy.after(deadline, policy.notice_after)
    return {REMIND: remind, OVERDUE: deadline, NOTICE: notice, SUPERVISE: policy.after(notice, policy.supervise_after)}


def due_steps(ticket: TicketRow, *, now: datetime, policy: DeadlinePolicy) -> list[DueStep]:
    """The highest due, not yet taken step of each unmet stage of an open ticket."""
    if not wf.is_open(ticket.state) or ticket.state == wf.RETURNED:
        return []  # a returned ticket waits for the office to reassign it; the unit is not chased
    done = (ticket.extra or {}).get("escalation") or {}
    out = []
    for stage in ticket.deadlines or {}:
        if svc.stage_met(ticket, stage):
            continue
        times = step_times(ticket, stage, policy)
        due = [s for s, at in times.items() if at <= now]
        if due and max(due) > int(done.get(stage, 0)):
            out.append(DueStep(ticket.id, stage, max(due), ticket.deadlines[stage]))
    return out


def run_due_jobs(
    session_factory: Callable[[], Session],
    *,
    now: datetime | None = None,
    policy: DeadlinePolicy,
    worker_id: str,
    evaluate_after_hours: float | None = 24.0,
) -> RunReport:
    """Take every due escalation step (each exactly once across workers) and run due effect evaluations."""
    now = now or utcnow()
    report = RunReport()
    with session_factory() as read:
        open_tickets = read.scalars(select(TicketRow).where(TicketRow.state.in_(wf.OPEN_STATES))).all()
        todo = [step for t in open_tickets for step in due_steps(t, now=now, policy=policy)]
        to_evaluate = []
        if evaluate_after_hours is not None:
            cutoff = now - timedelta(hours=evaluate_after_hours)
            to_evaluate = [(t.id, t.closed_at) for t in read.scalars(select(TicketRow).where(
                TicketRow.state == wf.CLOSED, TicketRow.closed_at <= cutoff))]
        read.rollback()
    for step in todo:
        try:
            if _take(session_factory, step, now=now, policy=policy, worker_id=worker_id):
                report.taken.append(step)
            else:
                report.skipped += 1
        except (ConflictError, OperationalError, YuqingError) as exc:
            report.failed += 1
            log.warning("escalation %s of ticket %s failed, will retry next run: %s", step.slot, step.ticket_id, exc)
    for ticket_id, closed_at in to_evaluate:
        report.evaluated += _evaluate(session_factory, ticket_id, closed_at, now=now, policy=policy,
                                      worker_id=worker_id, window=evaluate_after_hours or 24.0)
    return report


def _take(session_factory: Callable[[], Session], step: DueStep, *, now: datetime, policy: DeadlinePolicy,
          worker_id: str) -> bool:
    session = session_factory()
    try:
        if not claim(session, job=ESCALATION_JOB, slot=step.slot, worker_id=worker_id, now=now):
            session.rollback()
            return False
        t = svc.load_for_update(session, step.ticket_id)
        still_due = [s for s in due_steps(t, now=now, policy=policy) if s.stage == step.stage]
        if not still_due or still_due[0].deadline != step.deadline or still_due[0].step != step.step:
            session.rollback()  # signed, extended or escalated meanwhile; frees the slot too
            return False
        _apply(session, t, step, now=now, worker_id=worker_id)
        svc.flush(session)
        session.commit()
        return True
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _apply(session: Session, t: TicketRow, step: DueStep, *, now: datetime, worker_id: str) -> None:
    escalation = {**((t.extra or {}).get("escalation") or {}), step.stage: step.step}
    svc.set_extra(t, escalation=escalation)
    t.escalation = max(int(v) for v in escalation.values())
    t.updated_at = now
    stage_zh, step_zh = STAGE_ZH.get(step.stage, step.stage), STEP_ZH[step.step]
    svc.audit(session, t, actor=f"scheduler:{worker_id}"[:64], action=STEP_NAMES[step.step], from_state=t.state,
              to_state=t.state, now=now, detail={"stage": step.stage, "deadline": step.deadline, "step": step_zh})
    unit = session.get(UnitRow, t.lead_unit)
    supervisor = (unit.supervisor if unit is not None else None) or "office"
    digest = step.slot.rsplit(":", 1)[-1]
    key = f"{step.stage}.{digest}"
    more: dict[str, Any] = {"stage": step.stage, "stage_zh": stage_zh, "escalation": step_zh,
                            "deadline": step.deadline}
    if step.step == REMIND:
        targets = [t.lead_unit] + ([] if step.stage == "sign" else list(t.cooperating_units or []))
        svc.notify(session, t, kind="ticket.remind", key=key, targets=targets,
                   subject=f"催办：{stage_zh}时限将到（{step.deadline}）：{t.title}", **more)
    elif step.step == OVERDUE:
        svc.notify(session, t, kind="ticket.overdue", key=key, targets=[t.lead_unit, "office"],
                   subject=f"超时：未在时限内{stage_zh}：{t.title}", **more)
    else:
        targets = [t.lead_unit, supervisor, "office"]
        svc.notify(session, t, kind="ticket.escalated", key=f"{step_zh}.{key}", targets=targets,
                   subject=f"{step_zh}：{t.lead_unit} 逾期未{stage_zh}：{t.title}", **more)
        svc.notify(session, t, kind="ticket.escalated", key=f"{step_zh}.{key}", targets=[supervisor],
                   channel="email", subject=f"{step_zh}：{t.lead_unit} 逾期未{stage_zh}：{t.title}", **more)


def _evaluate(session_factory: Callable[[], Session], ticket_id: str, closed_at: datetime | None, *,
              now: datetime, policy: DeadlinePolicy, worker_id: str, window: float) -> int:
    from alerts.tickets.evaluation import evaluate_effect

    slot = f"{ticket_id}:{closed_at.isoformat() if closed_at else ''}"
    try:
        ran, _ = run_once(session_factory, job=EVALUATION_JOB, slot=slot, worker_id=worker_id, now=now,
                          fn=lambda s: evaluate_effect(s, ticket_id=ticket_id, now=now, window_hours=window,
                                                       policy=policy))
    except (YuqingError, OperationalError) as exc:
        log.warning("effect evaluation of ticket %s failed: %s", ticket_id, exc)
        return 0
    return int(ran)


class Scheduler:
    """Runs ``run_due_jobs`` every ``interval_s`` in a daemon thread (embedded mode)."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        policy: DeadlinePolicy,
        interval_s: float = 30.0,
        *,
        worker_id: str = "embedded",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session_factory = session_factory
        self.policy = policy
        self.interval_s = interval_s
        self.worker_id = worker_id
        self.clock = clock
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"scheduler-{self.worker_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                run_due_jobs(self.session_factory, now=self.clock(), policy=self.policy, worker_id=self.worker_id)
            except Exception:
                log.exception("scheduler run failed; retrying in %.0f s", self.interval_s)
            self.runs += 1
            self._stop.wait(self.interval_s)
