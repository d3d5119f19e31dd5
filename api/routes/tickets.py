"""Ticket endpoints: thin wrappers over ``alerts.tickets`` services; errors become 400/403/404/409."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.deadlines import DeadlinePolicy
from alerts.tickets import evaluation, responses, schemas, service
from alerts.tickets.schemas import TicketDetailOut, TicketPageOut
from api.security import CurrentUser, DbSession
from core.auth.service import User
from core.db.models import UnitRow
from core.errors import ConflictError, Forbidden, InvalidTransition, NotFound
from core.records import WarningLevel, utcnow

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])
# Every spelling WarningLevel.parse takes, so the schema says which levels exist (others: 422).
StateName = Literal["new", "acknowledged", "assessing", "handling", "responded", "returned", "closed", "evaluated",
                    "merged"]
LevelName = Literal["1", "2", "3", "4", "blue", "yellow", "orange", "red", "蓝", "黄", "橙", "红"]


@contextmanager
def _service_errors(session: Session) -> Iterator[None]:
    """Map service errors to HTTP and roll back; the route commits on success."""
    try:
        yield
    except NotFound as exc:
        session.rollback()
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except Forbidden as exc:
        session.rollback()
        raise HTTPException(status_code=403, detail=str(exc)) from exc
    except (InvalidTransition, ConflictError) as exc:
        session.rollback()
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except ValueError as exc:
        session.rollback()
        raise HTTPException(status_code=400, detail=str(exc)) from exc


def visible_ticket(ticket_id: str, user: CurrentUser, session: DbSession) -> None:
    """404 before anything else for a ticket the caller may not see.

    Without it an action could answer from the ticket's state first (409 "no pending extension" on another
    unit's ticket), which tells a handler that the id exists: every answer for a foreign ticket is 404.
    """
    try:
        service.get_ticket(session, ticket_id=ticket_id, actor=user)
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=f"工单不存在 / ticket {ticket_id!r} not found") from exc


VISIBLE = [Depends(visible_ticket)]


def _policy(request: Request) -> DeadlinePolicy:
    policy: DeadlinePolicy | None = getattr(request.app.state, "deadline_policy", None)
    if policy is None:
        settings = getattr(request.app.state, "settings", None)
        path = getattr(getattr(settings, "alerts", None), "deadlines_file", None)
        policy = DeadlinePolicy.load(Path(path) if path else None)
        request.app.state.deadline_policy = policy
    return policy


def _required_approvals(request: Request) -> int:
    return int(getattr(request.app.state, "required_approvals", responses.DEFAULT_REQUIRED_APPROVALS))


def _unit_names(session: Session) -> dict[str, str]:
    return {u.id: u.name for u in session.scalars(select(UnitRow))}


def _detail(session: Session, request: Request, ticket_id: str, user: User) -> TicketDetailOut:
    t = service.get_ticket(session, ticket_id=ticket_id, actor=user)
    base = schemas.ticket_out(t, _unit_names(session))
    need = _required_approvals(request)
    return TicketDetailOut(
        **base.model_dump(),
        routing=dict(t.routing or {}), evaluation=dict(t.evaluation or {}), extra=dict(t.extra or {}),
        history=[schemas.audit_out(a) for a in service.history(session, ticket_id=t.id, actor=user)],
        responses=[schemas.response_out(r, user, t, need)
                   for r in responses.list_responses(session, ticket_id=t.id, actor=user)],
        allowed_actions=schemas.allowed_actions(user, t),
    )


def _done(session: Session, request: Request, ticket_id: str, user: User) -> TicketDetailOut:
    session.commit()
    detail = _detail(session, request, ticket_id, user)
    # Tell open dashboards (the ticket page, boards, an approver's 待办) that a person changed this ticket.
    broadcaster = getattr(request.app.state, "broadcaster", None)
    if broadcaster is not None:
        broadcaster.publish({"ticket_id": detail.id, "event_id": detail.event_id, "level": detail.level,
                             "state": detail.state, "created": False, "by": user.username,
                             "lead_unit": detail.lead_unit, "cooperating_units": detail.cooperating_units,
                             "at": utcnow().isoformat()})
    return detail


@router.get("", response_model=TicketPageOut)
def list_tickets(
    user: CurrentUser,
    session: DbSession,
    state: Annotated[list[StateName] | None, Query()] = None,
    level: LevelName | None = None,
    unit: str | None = None,
    open_: Annotated[bool | None, Query(alias="open")] = None,
    event_id: str | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,  # larger overflows the database's integers
) -> TicketPageOut:
    """Tickets the caller may see (unit users: their own unit's only), newest first."""
    filters: dict[str, Any] = {"state": state, "lead_unit": unit, "open": open_, "event_id": event_id, "q": q}
    if level:
        try:
            filters["level"] = WarningLevel.parse(level)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
    rows, total = service.list_tickets(session, filters=filters, limit=limit, offset=offset, visible_to=user)
    names = _unit_names(session)
    return TicketPageOut(items=[schemas.ticket_out(t, names) for t in rows], total=total, limit=limit, offset=offset)


class SummaryOut(BaseModel):
    open: int
    overdue: int
    by_state: dict[str, int]
    by_level: dict[str, int]


@router.get("/summary", response_model=SummaryOut)
def summary(user: CurrentUser, session: DbSession) -> SummaryOut:
    """Counts of the open tickets the caller may see, and how many are past a deadline."""
    rows, _ = service.list_tickets(session, filters={"open": True}, limit=500, visible_to=user)
    now = utcnow()
    by_state: dict[str, int] = {}
    by_level: dict[str, int] = {}
    overdue = 0
    for t in rows:
        by_state[t.state] = by_state.get(t.state, 0) + 1
        by_level[str(t.level)] = by_level.get(str(t.level), 0) + 1
        overdue += int(bool(service.overdue_stages(t, now=now)))
    return SummaryOut(open=len(rows), overdue=overdue, by_state=by_state, by_level=by_level)


@router.get("/{ticket_id}", response_model=TicketDetailOut)
def get_ticket(ticket_id: str, request: Request, user: CurrentUser, session: DbSession) -> TicketDetailOut:
    """One ticket with history, responses, deadlines, routing explanation and the caller's allowed actions."""
    with _service_errors(session):
        return _detail(session, request, ticket_id, user)


class EmptyIn(BaseModel):
    pass


@router.post("/{ticket_id}/acknowledge", dependencies=VISIBLE, response_model=TicketDetailOut)
def acknowledge(ticket_id: str, request: Request, user: CurrentUser, session: DbSession,
                _body: EmptyIn | None = None) -> TicketDetailOut:
    """签收."""
    with _service_errors(session):
        service.acknowledge(session, ticket_id=ticket_id, actor=user, now=utcnow())
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/assess", dependencies=VISIBLE, response_model=TicketDetailOut)
def assess(ticket_id: str, body: schemas.AssessIn, request: Request, user: CurrentUser,
           session: DbSession) -> TicketDetailOut:
    """研判: facts, risk and the confirmed level."""
    with _service_errors(session):
        service.assess(session, ticket_id=ticket_id, actor=user, level=body.level, facts=body.facts, risk=body.risk,
                       now=utcnow(), policy=_policy(request))
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/start_handling", dependencies=VISIBLE, response_model=TicketDetailOut)
def start_handling(ticket_id: str, request: Request, user: CurrentUser, session: DbSession,
                   body: schemas.HandleIn | None = None) -> TicketDetailOut:
    """处置, with tasks for cooperating units."""
    with _service_errors(session):
        service.start_handling(session, ticket_id=ticket_id, actor=user, tasks=(body or schemas.HandleIn()).tasks,
                               now=utcnow())
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/reject", dependencies=VISIBLE, response_model=TicketDetailOut)
def reject(ticket_id: str, body: schemas.ReasonIn, request: Request, user: CurrentUser,
           session: DbSession) -> TicketDetailOut:
    """退回 to the office, with a reason."""
    with _service_errors(session):
        service.reject(session, ticket_id=ticket_id, actor=user, reason=body.reason, now=utcnow())
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/reassign", dependencies=VISIBLE, response_model=TicketDetailOut)
def reassign(ticket_id: str, body: schemas.ReassignIn, request: Request, user: CurrentUser,
             session: DbSession) -> TicketDetailOut:
    """改派 to another lead unit."""
    with _service_errors(session):
        service.reassign(session, ticket_id=ticket_id, actor=user, lead_unit=body.lead_unit,
                         cooperating_units=body.cooperating_units, now=utcnow(), policy=_policy(request))
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/request_extension", dependencies=VISIBLE, response_model=TicketDetailOut)
def request_extension(ticket_id: str, body: schemas.ExtensionIn, request: Request, user: CurrentUser,
                      session: DbSession) -> TicketDetailOut:
    """申请延期 of one stage (``until`` or ``hours`` more)."""
    with _service_errors(session):
        t = service.get_ticket(session, ticket_id=ticket_id, actor=user)
        stage = body.stage
        if stage == "response":
            stage = min((s for s in ("authoritative_info", "first_response") if s in t.deadlines),
                        key=lambda s: t.deadlines[s], default="first_response")
        until = body.until
        if until is None:
            if body.hours is None or stage not in (t.deadlines or {}):
                raise ValueError("需要 until 或 hours / give until (ISO time) or hours")
            until = service.parse_iso(t.deadlines[stage]) + timedelta(hours=body.hours)
        if until.tzinfo is None:
            raise ValueError("until 需带时区 / until needs a timezone")
        service.request_extension(session, ticket_id=ticket_id, actor=user, stage=stage, until=until,
                                  reason=body.reason, now=utcnow())
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/decide_extension", dependencies=VISIBLE, response_model=TicketDetailOut)
def decide_extension(ticket_id: str, body: schemas.DecisionIn, request: Request, user: CurrentUser,
                     session: DbSession) -> TicketDetailOut:
    """批准 or 不批准 the pending extension."""
    with _service_errors(session):
        service.decide_extension(session, ticket_id=ticket_id, actor=user, approve=body.approve, note=body.note,
                                 now=utcnow())
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/merge", dependencies=VISIBLE, response_model=TicketDetailOut)
def merge(ticket_id: str, body: schemas.MergeIn, request: Request, user: CurrentUser,
          session: DbSession) -> TicketDetailOut:
    """合并 into another open ticket."""
    with _service_errors(session):
        service.merge(session, ticket_id=ticket_id, into_ticket_id=body.into, actor=user, now=utcnow())
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/close", dependencies=VISIBLE, response_model=TicketDetailOut)
def close(ticket_id: str, body: schemas.CloseIn, request: Request, user: CurrentUser,
          session: DbSession) -> TicketDetailOut:
    """办结 with a summary."""
    with _service_errors(session):
        service.close(session, ticket_id=ticket_id, actor=user, summary=body.summary, now=utcnow())
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/reopen", dependencies=VISIBLE, response_model=TicketDetailOut)
def reopen(ticket_id: str, body: schemas.ReasonIn, request: Request, user: CurrentUser,
           session: DbSession) -> TicketDetailOut:
    """重开 after a flare-up."""
    with _service_errors(session):
        service.reopen(session, ticket_id=ticket_id, actor=user, reason=body.reason, now=utcnow(),
                       policy=_policy(request))
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/evaluate", dependencies=VISIBLE, response_model=TicketDetailOut)
def evaluate(ticket_id: str, request: Request, user: CurrentUser, session: DbSession,
             body: schemas.EvaluateIn | None = None) -> TicketDetailOut:
    """效果评估 now."""
    with _service_errors(session):
        service.get_ticket(session, ticket_id=ticket_id, actor=user)
        evaluation.evaluate_effect(session, ticket_id=ticket_id, now=utcnow(),
                                   window_hours=(body or schemas.EvaluateIn()).window_hours, actor=user,
                                   policy=_policy(request))
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/responses", dependencies=VISIBLE, response_model=TicketDetailOut, status_code=201)
def draft_response(ticket_id: str, body: schemas.ResponseIn, request: Request, user: CurrentUser,
                   session: DbSession) -> TicketDetailOut:
    """起草回应口径."""
    with _service_errors(session):
        responses.draft_response(session, ticket_id=ticket_id, actor=user, text=body.text, channel=body.channel,
                                 now=utcnow())
        return _done(session, request, ticket_id, user)


def _response_ticket(session: Session, ticket_id: str, response_id: str, user: User) -> None:
    # The response must belong to this (visible) ticket: no reaching other tickets' responses by id.
    service.get_ticket(session, ticket_id=ticket_id, actor=user)
    if response_id not in {r.id for r in responses.list_responses(session, ticket_id=ticket_id, actor=user)}:
        raise NotFound(f"回应不存在 / response {response_id!r} not found")


@router.post("/{ticket_id}/responses/{response_id}/approve", dependencies=VISIBLE, response_model=TicketDetailOut)
def approve_response(ticket_id: str, response_id: str, request: Request, user: CurrentUser, session: DbSession,
                     body: schemas.ReviewIn | None = None) -> TicketDetailOut:
    """审核通过."""
    with _service_errors(session):
        _response_ticket(session, ticket_id, response_id, user)
        responses.review_response(session, response_id=response_id, actor=user, approve=True,
                                  note=(body or schemas.ReviewIn()).note, now=utcnow(),
                                  required_approvals=_required_approvals(request))
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/responses/{response_id}/reject", dependencies=VISIBLE, response_model=TicketDetailOut)
def reject_response(ticket_id: str, response_id: str, request: Request, user: CurrentUser, session: DbSession,
                    body: schemas.ReviewIn | None = None) -> TicketDetailOut:
    """审核不通过 (back to the drafter)."""
    with _service_errors(session):
        _response_ticket(session, ticket_id, response_id, user)
        responses.review_response(session, response_id=response_id, actor=user, approve=False,
                                  note=(body or schemas.ReviewIn()).note, now=utcnow(),
                                  required_approvals=_required_approvals(request))
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/responses/{response_id}/edit", dependencies=VISIBLE, response_model=TicketDetailOut)
def edit_response(ticket_id: str, response_id: str, body: schemas.ResponseEditIn, request: Request,
                  user: CurrentUser, session: DbSession) -> TicketDetailOut:
    """修改草稿 (published responses cannot change: 409)."""
    with _service_errors(session):
        _response_ticket(session, ticket_id, response_id, user)
        responses.edit_response(session, response_id=response_id, actor=user, text=body.text, now=utcnow())
        return _done(session, request, ticket_id, user)


@router.post("/{ticket_id}/responses/{response_id}/publish", dependencies=VISIBLE, response_model=TicketDetailOut)
def publish_response(ticket_id: str, response_id: str, request: Request, user: CurrentUser,
                     session: DbSession) -> TicketDetailOut:
    """发布 (after enough distinct approvals)."""
    with _service_errors(session):
        _response_ticket(session, ticket_id, response_id, user)
        responses.publish_response(session, response_id=response_id, actor=user, now=utcnow(),
                                   required_approvals=_required_approvals(request))
        return _done(session, request, ticket_id, user)
