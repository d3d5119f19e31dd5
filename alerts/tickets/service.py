"""Ticket services (Dispatch style: keyword-only functions, the caller's session, the caller commits).

Every change goes through the state machine in ``workflow``, checks the actor's permission, writes
one ``TicketAuditRow`` and enqueues its notifications in the same transaction (transactional outbox).

Concurrency: a ticket is changed only after a no-op ``UPDATE`` on its row, which takes the row lock
on PostgreSQL and the write lock on SQLite, and the row is then re-read; so two workers touching
one ticket queue up instead of overwriting each other, and the optimistic ``version`` column is the
last guard (a stale write raises ``ConflictError``). "One open ticket per event" is the partial unique
index; creation is ``INSERT ... ON CONFLICT DO NOTHING`` on it, and losing that race turns the call
into an update of the winner's ticket.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import String, cast, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from alerts.deadlines import STAGE_ZH, DeadlinePolicy
from alerts.notifiers.base import Notification
from alerts.outbox import enqueue
from alerts.rules.base import Match
from alerts.tickets import permissions as perm
from alerts.tickets import workflow as wf
from core.db.models import EventRow, TicketAuditRow, TicketRow, UnitRow
from core.errors import ConflictError, InvalidTransition, NotFound
from core.records import Event, WarningLevel

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
_FINAL = list(wf.FINAL_STATES)
_OPEN_WHERE = "state NOT IN ('closed','evaluated','merged')"  # must match uq_tickets_one_open_per_event


@lru_cache(maxsize=1)
def default_policy() -> DeadlinePolicy:
    """The packaged deadline policy (used when the caller passes none)."""
    return DeadlinePolicy.load()


# ---------------------------------------------------------------- helpers


def iso(dt: datetime) -> str:
    """ISO 8601 text of an aware datetime, as stored in JSON columns."""
    return dt.isoformat()


def parse_iso(text: str) -> datetime:
    """Inverse of ``iso``."""
    return datetime.fromisoformat(text)


def set_extra(ticket: TicketRow, **values: Any) -> None:
    """Merge ``values`` into ``ticket.extra``."""
    # JSON columns are not mutation-tracked: assign a new dict so the change is flushed.
    ticket.extra = {**(ticket.extra or {}), **values}


def _level(value: WarningLevel | int | str) -> int:
    return int(WarningLevel.parse(value) if isinstance(value, str) else WarningLevel(int(value)))


def payload(ticket: TicketRow, **more: Any) -> dict[str, Any]:
    """The ticket fields a notification needs to render."""
    data: dict[str, Any] = {
        "id": ticket.id,
        "title": ticket.title,
        "level": ticket.level,
        "state": ticket.state,
        "lead_unit": ticket.lead_unit,
        "cooperating_units": list(ticket.cooperating_units or []),
        "deadlines": dict(ticket.deadlines or {}),
        "reason": ticket.reason,
        "event_id": ticket.event_id,
    }
    samples = (ticket.extra or {}).get("samples")
    if samples:
        data["samples"] = samples
    data.update(more)
    return data


def unit_names(session: Session, unit_ids: Iterable[str]) -> dict[str, str]:
    """Unit id -> Chinese name for the given ids (unknown ids are left out)."""
    wanted = {u for u in unit_ids if u}
    if not wanted:
        return {}
    return {u.id: u.name for u in session.scalars(select(UnitRow).where(UnitRow.id.in_(wanted))) if u.name}


def notify(
    session: Session,
    ticket: TicketRow,
    *,
    kind: str,
    key: str,
    targets: Iterable[str],
    subject: str,
    channel: str | None = None,
    **more: Any,
) -> int:
    """Enqueue one notification per target and channel (the configured ones unless ``channel`` is given).

    Ids are deterministic so a retry never queues twice.
    """
    from alerts.notifiers.channels import ticket_channels

    count = 0
    wanted = list(dict.fromkeys(t for t in targets if t))
    names = unit_names(session, [ticket.lead_unit, *(ticket.cooperating_units or [])])  # messages show names
    for chosen in ((channel,) if channel else ticket_channels()):
        for target in wanted:
            nid = f"{ticket.id}:{kind}:{key}:{chosen}:{target}"
            if len(nid) > 80:
                nid = f"{ticket.id}:{kind}:" + hashlib.sha1(nid.encode()).hexdigest()[:20]  # noqa: S324 - an id
            note = Notification(id=nid, channel=chosen, target=target, kind=kind, subject=subject,
                                payload=payload(ticket, unit_names=names, **more))
            count += int(enqueue(session, note))
    return count


def audit(
    session: Session,
    ticket: TicketRow,
    *,
    actor: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one history row."""
    session.add(TicketAuditRow(ticket_id=ticket.id, at=now, actor=actor, action=action,
                               from_state=from_state, to_state=to_state, detail=detail or {}))


def flush(session: Session) -> None:
    """Flush, turning a lost optimistic-version race into ConflictError."""
    try:
        session.flush()
    except StaleDataError as exc:
        raise ConflictError("工单已被他人修改，请刷新后重试 / the ticket was changed by someone else; "
                            "re-read and retry") from exc


def _lock_where(session: Session, *conditions: Any) -> None:
    """A no-op UPDATE: row lock on PostgreSQL, write lock on SQLite, held to the end of the transaction."""
    table = TicketRow.__table__
    session.execute(table.update().where(*conditions).values(event_id=table.c.event_id))


def load_for_update(session: Session, ticket_id: str) -> TicketRow:
    """The ticket, locked and freshly read; NotFound when absent."""
    _lock_where(session, TicketRow.__table__.c.id == ticket_id)
    row = session.scalars(
        select(TicketRow).where(TicketRow.id == ticket_id).execution_options(populate_existing=True)
    ).first()
    if row is None:
        raise NotFound(f"工单不存在 / ticket {ticket_id!r} not found")
    return row


def _new_deadlines(policy: DeadlinePolicy, level: int, start: datetime, *, skip: Iterable[str] = ()) -> dict[str, str]:
    return {k: iso(v) for k, v in policy.deadlines(level, start).items() if k not in set(skip)}


def _merge_earlier(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """Per stage the earlier deadline: a raised level tightens limits, it never extends one."""
    out = dict(old)
    for stage, when in new.items():
        if stage not in out or parse_iso(when) < parse_iso(out[stage]):
            out[stage] = when
    return out


def _office_and_units(ticket: TicketRow) -> list[str]:
    return [ticket.lead_unit, *(ticket.cooperating_units or []), "office"]


def transition(
    session: Session,
    ticket: TicketRow,
    *,
    actor: perm.Actor,
    action: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
    permission: str | None = None,
) -> tuple[str, str]:
    """Check permission and the state machine, move the ticket, write the audit row; returns (from, to)."""
    perm.check(actor, permission or action, ticket)
    before = ticket.state
    after = wf.next_state(before, action)
    ticket.state = after
    ticket.updated_at = now
    audit(session, ticket, actor=actor.username, action=action, from_state=before, to_state=after,
          now=now, detail=detail)
    return before, after


# ---------------------------------------------------------------- rule matches


def open_or_update(
    session: Session,
    *,
    event: Event,
    match: Match,
    lead_unit: str,
    cooperating_units: list[str],
    routing: dict[str, Any],
    now: datetime,
    policy: DeadlinePolicy | None = None,
) -> tuple[TicketRow, bool]:
    """The event's one open ticket made or updated from ``match`` (reopened if closed lately); (ticket, created)."""
    policy = policy or default_policy()
    if session.get(EventRow, event.id) is None:
        # Normally the event stage wrote it already; ON CONFLICT keeps two workers from colliding here.
        session.execute(_insert_fn(session)(EventRow.__table__).values(
            id=event.id, title=event.title, first_seen=event.first_seen, last_seen=event.last_seen,
            size=event.size, unique_authors=event.unique_authors, engagement=event.engagement,
            negative_count=event.negative_count, heat=event.heat, heat_series={}, places=[], districts=[],
            sources={}, representative_ids=[], burst=event.burst, level=int(match.level), updated_at=now,
        ).on_conflict_do_nothing(index_elements=["id"]))
    tcol = TicketRow.__table__.c
    for _attempt in range(4):
        _lock_where(session, tcol.event_id == event.id, tcol.state.not_in(_FINAL))
        current = session.scalars(
            select(TicketRow)
            .where(TicketRow.event_id == event.id, TicketRow.state.not_in(_FINAL))
            .execution_options(populate_existing=True)
        ).first()
        if current is not None:
            _apply_match(session, current, match=match, now=now, policy=policy)
            flush(session)
            return current, False
        # The window's length measured forward from now (a working-day window counts calendar days here).
        window = policy.after(now, policy.reopen_window) - now
        recent = _recent_closed(session, event.id, now - window)
        if recent is not None:
            target = recent
            if recent.state == wf.MERGED and recent.merged_into:
                target = load_for_update(session, recent.merged_into)
                if wf.is_open(target.state):
                    _apply_match(session, target, match=match, now=now, policy=policy)
                    flush(session)
                    return target, False
            # A flare of a merged ticket's event reopens the ticket it was merged into: one matter, one ticket.
            if target.state in (wf.CLOSED, wf.EVALUATED):
                reopen_locked(session, target, actor=system_actor(), reason=f"二次舆情：{match.reason}", now=now,
                              policy=policy, match=match)
                flush(session)
                return target, False
        created = _insert(session, event=event, match=match, lead_unit=lead_unit,
                          cooperating_units=cooperating_units, routing=routing, now=now, policy=policy)
        if created is not None:
            return created, True
        log.info("another worker opened the ticket of event %s first; updating it instead", event.id)
    raise ConflictError(f"could not open or update the ticket of event {event.id} after several attempts")


def _insert_fn(session: Session) -> Any:
    """The dialect's INSERT (with ON CONFLICT support): PostgreSQL or SQLite."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def system_actor() -> Any:
    """The actor of automatic changes."""
    from core.auth.service import SYSTEM

    return SYSTEM


def _recent_closed(session: Session, event_id: str, since: datetime) -> TicketRow | None:
    tcol = TicketRow.__table__.c
    row = session.scalars(
        select(TicketRow)
        .where(TicketRow.event_id == event_id, TicketRow.state.in_(_FINAL))
        .order_by(TicketRow.created_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    ended = row.closed_at or row.updated_at
    if ended is None or ended < since:
        return None
    _lock_where(session, tcol.id == row.id)
    return session.scalars(
        select(TicketRow).where(TicketRow.id == row.id).execution_options(populate_existing=True)
    ).first()


def _reason_entry(match: Match) -> dict[str, Any]:
    return {"rule": match.rule, "reason": match.reason, "level": int(match.level), "at": iso(match.at)}


def _insert(
    session: Session,
    *,
    event: Event,
    match: Match,
    lead_unit: str,
    cooperating_units: list[str],
    routing: dict[str, Any],
    now: datetime,
    policy: DeadlinePolicy,
) -> TicketRow | None:
    ticket_id = f"T{now:%Y%m%d}{secrets.token_hex(4)}"
    level = int(match.level)
    extra: dict[str, Any] = {"reasons": [_reason_entry(match)], "deadline_base": iso(now), "escalation": {}}
    samples = match.details.get("samples") if isinstance(match.details, dict) else None
    if isinstance(samples, list):
        extra["samples"] = [str(s)[:200] for s in samples[:3]]
    values = {
        "id": ticket_id,
        "event_id": event.id,
        "level": level,
        "state": wf.NEW,
        "title": (event.title or match.reason)[:500],
        "rule": match.rule[:64],
        "reason": match.reason,
        "lead_unit": lead_unit,
        "cooperating_units": [u for u in dict.fromkeys(cooperating_units) if u != lead_unit],
        "routing": routing,
        "deadlines": _new_deadlines(policy, level, now),
        "escalation": 0,
        "created_at": now,
        "updated_at": now,
        "reopened": 0,
        "evaluation": {},
        "extra": extra,
        "version": 1,
    }
    stmt = _insert_fn(session)(TicketRow.__table__).values(**values).on_conflict_do_nothing(
        index_elements=["event_id"], index_where=text(_OPEN_WHERE)
    )
    result = session.execute(stmt)
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    ticket = session.get(TicketRow, ticket_id)
    assert ticket is not None
    audit(session, ticket, actor=SYSTEM_ACTOR, action="open", from_state=None, to_state=wf.NEW, now=now,
          detail={"rule": match.rule, "reason": match.reason, "level": level, "routing": routing})
    notify(session, ticket, kind="ticket.created", key=str(level), targets=_office_and_units(ticket),
           subject=f"新预警工单：{ticket.title}")
    return ticket


def _apply_match(session: Session, ticket: TicketRow, *, match: Match, now: datetime, policy: DeadlinePolicy) -> bool:
    """Add the match's reason and raise the level if higher; False when it adds nothing new."""
    wf.next_state(ticket.state, "update")
    reasons = list((ticket.extra or {}).get("reasons") or [])
    entry = _reason_entry(match)
    is_new_reason = not any(r.get("rule") == match.rule and r.get("reason") == match.reason for r in reasons)
    raised = int(match.level) > ticket.level
    if not is_new_reason and not raised:
        return False
    if is_new_reason:
        reasons.append(entry)
        set_extra(ticket, reasons=reasons[-50:])
    detail: dict[str, Any] = {"rule": match.rule, "reason": match.reason}
    if raised:
        old = ticket.level
        ticket.level = int(match.level)
        ticket.reason = match.reason
        skip = ["sign"] if ticket.signed_at is not None else []
        ticket.deadlines = _merge_earlier(ticket.deadlines or {}, _new_deadlines(policy, ticket.level, now, skip=skip))
        detail.update(level_from=old, level_to=ticket.level)
    ticket.updated_at = now
    audit(session, ticket, actor=SYSTEM_ACTOR, action="raise_level" if raised else "update",
          from_state=ticket.state, to_state=ticket.state, now=now, detail=detail)
    if raised:
        notify(session, ticket, kind="ticket.level", key=str(ticket.level), targets=_office_and_units(ticket),
               subject=f"预警升级为{WarningLevel(ticket.level).colour_zh}色：{ticket.title}", level_from=old)
    return True


# ---------------------------------------------------------------- actions


def acknowledge(session: Session, *, ticket_id: str, actor: perm.Actor, now: datetime) -> TicketRow:
    """签收: the lead unit confirms it has the ticket."""
    t = load_for_update(session, ticket_id)
    late = bool(t.deadlines.get("sign")) and now > parse_iso(t.deadlines["sign"])
    transition(session, t, actor=actor, action="acknowledge", now=now, detail={"late": late})
    t.signed_at = now
    flush(session)
    return t


def assess(
    session: Session,
    *,
    ticket_id: str,
    actor: perm.Actor,
    level: WarningLevel | int | str,
    facts: str,
    risk: str,
    now: datetime,
    policy: DeadlinePolicy | None = None,
) -> TicketRow:
    """研判: record facts and risk and confirm or change the level (deadlines follow the level)."""
    policy = policy or default_policy()
    t = load_for_update(session, ticket_id)
    new_level = _level(level)
    if not facts.strip():
        raise ValueError("研判需填写事实情况 / assessment needs the facts")
    transition(session, t, actor=actor, action="assess", now=now,
               detail={"level_from": t.level, "level_to": new_level, "facts": facts[:2000], "risk": risk[:2000]})
    if new_level != t.level:
        skip = ["sign"] if t.signed_at is not None else []
        if new_level > t.level:
            t.deadlines = _merge_earlier(t.deadlines or {}, _new_deadlines(policy, new_level, now, skip=skip))
        else:
            # A lowered level uses the lower level's limits from the original start.
            base = parse_iso((t.extra or {}).get("deadline_base") or iso(t.created_at))
            fresh = _new_deadlines(policy, new_level, base)
            if t.signed_at is not None and "sign" in (t.deadlines or {}):
                fresh["sign"] = t.deadlines["sign"]
            t.deadlines = fresh
        old = t.level
        t.level = new_level
        notify(session, t, kind="ticket.level", key=f"assess{new_level}", targets=_office_and_units(t),
               subject=f"研判调整预警等级 {old}→{new_level}：{t.title}", level_from=old)
    set_extra(t, assessment={"level": new_level, "facts": facts[:2000], "risk": risk[:2000],
                              "by": actor.username, "at": iso(now)})
    flush(session)
    return t


def start_handling(
    session: Session, *, ticket_id: str, actor: perm.Actor, tasks: dict[str, str], now: datetime
) -> TicketRow:
    """处置: start handling, giving each cooperating unit its task (交办)."""
    t = load_for_update(session, ticket_id)
    involved = {t.lead_unit, *(t.cooperating_units or [])}
    stray = sorted(set(tasks) - involved)
    if stray:
        raise ValueError(f"任务单位不在本工单的主办/协办单位中 / units {stray} are not lead or cooperating units; "
                         "reassign first")
    transition(session, t, actor=actor, action="start_handling", now=now, detail={"tasks": tasks})
    set_extra(t, tasks=[{"unit": u, "task": task[:2000], "at": iso(now), "by": actor.username}
                         for u, task in tasks.items()])
    notify(session, t, kind="ticket.task", key="handling", targets=list(tasks), subject=f"交办任务：{t.title}",
           tasks=tasks)
    flush(session)
    return t


def reject(session: Session, *, ticket_id: str, actor: perm.Actor, reason: str, now: datetime) -> TicketRow:
    """退回: the lead unit says the ticket is not its own, with a reason; the office reassigns it."""
    if not reason.strip():
        raise ValueError("退回需说明理由 / a rejection needs a reason")
    t = load_for_update(session, ticket_id)
    transition(session, t, actor=actor, action="reject", now=now, detail={"reason": reason[:2000], "unit": t.lead_unit})
    rejections = [*((t.extra or {}).get("rejections") or []),
                  {"unit": t.lead_unit, "reason": reason[:2000], "by": actor.username, "at": iso(now)}]
    set_extra(t, rejections=rejections)
    notify(session, t, kind="ticket.returned", key=str(len(rejections)), targets=["office"],
           subject=f"工单被退回：{t.title}", reject_reason=reason[:500])
    flush(session)
    return t


def reassign(
    session: Session,
    *,
    ticket_id: str,
    actor: perm.Actor,
    lead_unit: str,
    cooperating_units: list[str],
    now: datetime,
    policy: DeadlinePolicy | None = None,
) -> TicketRow:
    """改派: the office gives the ticket to another lead unit; it must be signed again."""
    policy = policy or default_policy()
    _check_units(session, [lead_unit, *cooperating_units])
    t = load_for_update(session, ticket_id)
    before_units = {"lead_unit": t.lead_unit, "cooperating_units": list(t.cooperating_units or [])}
    transition(session, t, actor=actor, action="reassign", now=now,
               detail={"from": before_units, "lead_unit": lead_unit, "cooperating_units": cooperating_units})
    t.lead_unit = lead_unit
    t.cooperating_units = [u for u in dict.fromkeys(cooperating_units) if u != lead_unit]
    t.signed_at = None
    # The new unit gets a fresh signing limit; the public's response limits do not move.
    fresh = policy.deadlines(t.level, now)
    if "sign" in fresh:
        t.deadlines = {**(t.deadlines or {}), "sign": iso(fresh["sign"])}
    esc = dict((t.extra or {}).get("escalation") or {})
    esc.pop("sign", None)
    assignments = int((t.extra or {}).get("assignments", 0)) + 1
    set_extra(t, escalation=esc, assignments=assignments)
    notify(session, t, kind="ticket.created", key=f"assign{assignments}", targets=[t.lead_unit, *t.cooperating_units],
           subject=f"改派工单：{t.title}")
    flush(session)
    return t


def _check_units(session: Session, units: Iterable[str]) -> None:
    known = session.scalar(select(func.count()).select_from(UnitRow)) or 0
    for unit in units:
        if not unit:
            raise ValueError("单位不能为空 / unit id is empty")
        if known and session.get(UnitRow, unit) is None:
            raise NotFound(f"单位不存在 / unit {unit!r} does not exist")


def request_extension(
    session: Session, *, ticket_id: str, actor: perm.Actor, stage: str, until: datetime, reason: str, now: datetime
) -> TicketRow:
    """申请延期 of one stage's deadline, with a reason; the office or a leader decides."""
    t = load_for_update(session, ticket_id)
    if stage not in (t.deadlines or {}):
        raise ValueError(f"该工单没有「{STAGE_ZH.get(stage, stage)}」时限 / ticket has no {stage!r} deadline")
    if until <= parse_iso(t.deadlines[stage]):
        raise ValueError("延期时间须晚于现有时限 / the new deadline must be later than the current one")
    if not reason.strip():
        raise ValueError("延期需说明理由 / an extension needs a reason")
    pending = (t.extra or {}).get("extension")
    if pending and pending.get("state") == "pending":
        raise InvalidTransition("已有待审批的延期申请 / an extension request is already pending")
    transition(session, t, actor=actor, action="request_extension", now=now,
               detail={"stage": stage, "until": iso(until), "reason": reason[:2000]})
    set_extra(t, extension={"stage": stage, "until": iso(until), "reason": reason[:2000], "by": actor.username,
                             "at": iso(now), "state": "pending"})
    notify(session, t, kind="ticket.extension", key=f"req:{stage}:{int(until.timestamp())}", targets=["office"],
           subject=f"延期申请：{t.title}", stage=stage, until=iso(until))
    flush(session)
    return t


def decide_extension(
    session: Session, *, ticket_id: str, actor: perm.Actor, approve: bool, note: str, now: datetime
) -> TicketRow:
    """批准/不批准 the pending extension request."""
    t = load_for_update(session, ticket_id)
    pending = (t.extra or {}).get("extension")
    if not pending or pending.get("state") != "pending":
        raise InvalidTransition("没有待审批的延期申请 / there is no pending extension request")
    transition(session, t, actor=actor, action="decide_extension", now=now,
               detail={"approve": approve, "note": note[:2000], "stage": pending["stage"], "until": pending["until"]})
    decided = {**pending, "state": "approved" if approve else "refused", "decided_by": actor.username,
               "decided_at": iso(now), "note": note[:2000]}
    history = [*((t.extra or {}).get("extensions") or []), decided]
    esc = dict((t.extra or {}).get("escalation") or {})
    if approve:
        t.deadlines = {**(t.deadlines or {}), pending["stage"]: pending["until"]}
        esc.pop(pending["stage"], None)
    set_extra(t, extension=decided, extensions=history, escalation=esc)
    notify(session, t, kind="ticket.extension", key=f"dec:{len(history)}", targets=[t.lead_unit],
           subject=f"延期申请{'已批准' if approve else '未批准'}：{t.title}", stage=pending["stage"],
           until=pending["until"], approved=approve)
    flush(session)
    return t


def merge(session: Session, *, ticket_id: str, into_ticket_id: str, actor: perm.Actor, now: datetime) -> TicketRow:
    """合并 (并单): end this ticket as merged into another open one, carrying its reasons and units over."""
    if ticket_id == into_ticket_id:
        raise InvalidTransition("不能合并到自身 / cannot merge a ticket into itself")
    # Lock in id order so two opposite merges cannot deadlock.
    first, second = sorted([ticket_id, into_ticket_id])
    rows = {first: load_for_update(session, first), second: load_for_update(session, second)}
    t, into = rows[ticket_id], rows[into_ticket_id]
    perm.check(actor, "merge", t)
    perm.check(actor, "merge", into)
    if not wf.is_open(into.state):
        raise InvalidTransition(f"目标工单已{wf.STATE_ZH[into.state]}，不能并入 / target ticket is {into.state!r}")
    transition(session, t, actor=actor, action="merge", now=now, detail={"into": into.id})
    t.merged_into = into.id
    t.closed_at = now
    reasons = list((into.extra or {}).get("reasons") or [])
    for r in (t.extra or {}).get("reasons") or []:
        if r not in reasons:
            reasons.append(r)
    merged_from = [*((into.extra or {}).get("merged_from") or []), t.id]
    set_extra(into, reasons=reasons[-50:], merged_from=merged_from)
    units = [u for u in dict.fromkeys([*(into.cooperating_units or []), t.lead_unit, *(t.cooperating_units or [])])
             if u != into.lead_unit]
    into.cooperating_units = units
    if t.level > into.level:
        into.level = t.level
        into.deadlines = _merge_earlier(into.deadlines or {}, t.deadlines or {})
    into.updated_at = now
    audit(session, into, actor=actor.username, action="merge_in", from_state=into.state, to_state=into.state,
          now=now, detail={"from": t.id})
    flush(session)
    return t


def close(session: Session, *, ticket_id: str, actor: perm.Actor, summary: str, now: datetime) -> TicketRow:
    """办结 with a summary of what was done."""
    if not summary.strip():
        raise ValueError("办结需填写处置情况 / closing needs a summary")
    t = load_for_update(session, ticket_id)
    transition(session, t, actor=actor, action="close", now=now, detail={"summary": summary[:4000]})
    t.closed_at = now
    set_extra(t, summary=summary[:4000])
    notify(session, t, kind="ticket.closed", key=str(t.reopened), targets=[t.lead_unit, "office"],
           subject=f"工单已办结：{t.title}")
    flush(session)
    return t


def reopen(
    session: Session,
    *,
    ticket_id: str,
    actor: perm.Actor,
    reason: str,
    now: datetime,
    policy: DeadlinePolicy | None = None,
) -> TicketRow:
    """重开: the matter flared up again after closing (二次舆情)."""
    if not reason.strip():
        raise ValueError("重开需说明理由 / reopening needs a reason")
    t = load_for_update(session, ticket_id)
    reopen_locked(session, t, actor=actor, reason=reason, now=now, policy=policy or default_policy())
    flush(session)
    return t


def reopen_locked(
    session: Session,
    t: TicketRow,
    *,
    actor: perm.Actor,
    reason: str,
    now: datetime,
    policy: DeadlinePolicy,
    match: Match | None = None,
) -> None:
    """Reopen an already locked closed/evaluated ticket (refused when the event has another open one)."""
    tcol = TicketRow.__table__.c
    other = session.scalar(
        select(TicketRow.id).where(tcol.event_id == t.event_id, tcol.state.not_in(_FINAL), tcol.id != t.id)
    )
    if other is not None:
        raise InvalidTransition(f"该事件已有未办结工单 {other} / event already has open ticket {other}")
    detail: dict[str, Any] = {"reason": reason[:2000]}
    if match is not None and int(match.level) > t.level:
        detail.update(level_from=t.level, level_to=int(match.level))
        t.level = int(match.level)
    transition(session, t, actor=actor, action="reopen", now=now, detail=detail)
    t.reopened = (t.reopened or 0) + 1
    t.closed_at = None
    t.escalation = 0  # responded_at stays: accountability needs it; cycle_start() makes it not count anymore
    t.deadlines = {**(t.deadlines or {}), **_new_deadlines(policy, t.level, now, skip=["sign"])}
    extra_reasons = list((t.extra or {}).get("reasons") or [])
    if match is not None:
        extra_reasons.append(_reason_entry(match))
        t.reason = match.reason
    set_extra(t, escalation={}, reasons=extra_reasons[-50:], deadline_base=iso(now),
               reopen_reasons=[*((t.extra or {}).get("reopen_reasons") or []), reason[:2000]])
    notify(session, t, kind="ticket.reopened", key=str(t.reopened), targets=_office_and_units(t),
           subject=f"工单重开（二次舆情）：{t.title}")


# ---------------------------------------------------------------- queries


def get_ticket(session: Session, *, ticket_id: str, actor: perm.Actor) -> TicketRow:
    """The ticket if the actor may see it; NotFound otherwise (also for other units' tickets)."""
    t = session.get(TicketRow, ticket_id)
    if t is None:
        raise NotFound(f"工单不存在 / ticket {ticket_id!r} not found")
    perm.check_read(actor, t)
    return t


def visibility_clause(actor: perm.Actor) -> Any:
    """SQL condition limiting tickets to what the actor may see (None = everything)."""
    if actor.role in perm.READ_ALL:
        return None
    if actor.role != perm.HANDLER or not actor.unit_id:
        return TicketRow.id.is_(None)  # sees nothing
    unit = actor.unit_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace('"', '\\"')
    return or_(TicketRow.lead_unit == actor.unit_id,
               cast(TicketRow.cooperating_units, String).like(f'%"{unit}"%', escape="\\"))


def list_tickets(
    session: Session,
    *,
    filters: dict[str, Any] | None = None,
    limit: int = 50,
    offset: int = 0,
    visible_to: perm.Actor,
) -> tuple[list[TicketRow], int]:
    """Tickets the actor may see, newest first, with the total count; filters: state, level, lead_unit,
    event_id, open (bool), created_from, created_to, q (title contains)."""
    f = filters or {}
    conds: list[Any] = []
    vis = visibility_clause(visible_to)
    if vis is not None:
        conds.append(vis)
    if f.get("state"):
        states = f["state"] if isinstance(f["state"], list | tuple) else [f["state"]]
        conds.append(TicketRow.state.in_(states))
    if f.get("open") is not None:
        conds.append(TicketRow.state.not_in(_FINAL) if f["open"] else TicketRow.state.in_(_FINAL))
    if f.get("level"):
        conds.append(TicketRow.level == _level(f["level"]))
    if f.get("lead_unit"):
        conds.append(TicketRow.lead_unit == f["lead_unit"])
    if f.get("event_id"):
        conds.append(TicketRow.event_id == f["event_id"])
    if f.get("created_from"):
        conds.append(TicketRow.created_at >= f["created_from"])
    if f.get("created_to"):
        conds.append(TicketRow.created_at < f["created_to"])
    if f.get("q"):
        q = str(f["q"]).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conds.append(TicketRow.title.like(f"%{q}%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(TicketRow).where(*conds)) or 0
    rows = session.scalars(
        select(TicketRow).where(*conds).order_by(TicketRow.created_at.desc(), TicketRow.id)
        .limit(max(1, min(limit, 500))).offset(max(0, offset))
    ).all()
    return list(rows), int(total)


def history(session: Session, *, ticket_id: str, actor: perm.Actor) -> list[TicketAuditRow]:
    """The ticket's audit trail, oldest first."""
    get_ticket(session, ticket_id=ticket_id, actor=actor)
    return list(session.scalars(select(TicketAuditRow).where(TicketAuditRow.ticket_id == ticket_id)
                                .order_by(TicketAuditRow.at, TicketAuditRow.id)))


def overdue_stages(ticket: TicketRow, *, now: datetime) -> list[str]:
    """Stages whose deadline has passed without being met."""
    out = []
    for stage, when in (ticket.deadlines or {}).items():
        if parse_iso(when) <= now and not stage_met(ticket, stage):
            out.append(stage)
    return out


def cycle_start(ticket: TicketRow) -> datetime:
    """When the ticket's current deadline clock started (creation, or the last reopen)."""
    base = (ticket.extra or {}).get("deadline_base")
    return parse_iso(base) if base else ticket.created_at


def stage_met(ticket: TicketRow, stage: str) -> bool:
    """Whether a deadline stage has been fulfilled."""
    if stage == "sign":
        return ticket.signed_at is not None or ticket.state not in (wf.NEW, wf.RETURNED)
    if stage in ("first_response", "authoritative_info"):
        # After a reopen the clock restarts: only a response published since then counts.
        return ticket.responded_at is not None and ticket.responded_at >= cycle_start(ticket)
    if stage == "press_conference":
        return bool((ticket.extra or {}).get("press_conference_at"))
    if stage == "close":
        return ticket.closed_at is not None or not wf.is_open(ticket.state)
    return False
