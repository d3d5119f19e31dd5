"""API shapes of tickets, their history and responses, and the bodies of ticket actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from alerts.tickets import permissions as perm
from alerts.tickets import responses as rsp
from alerts.tickets import workflow as wf
from core.db.models import ResponseRow, TicketAuditRow, TicketRow

TEXT_MAX = 4000


class TicketOut(BaseModel):
    """One ticket as listed."""

    id: str
    event_id: str
    title: str
    level: int
    state: str
    state_zh: str
    rule: str
    reason: str
    lead_unit: str
    lead_unit_name: str | None = None
    cooperating_units: list[str]
    deadlines: dict[str, str]
    escalation: int
    created_at: datetime
    updated_at: datetime
    signed_at: datetime | None
    responded_at: datetime | None
    closed_at: datetime | None
    merged_into: str | None
    reopened: int
    version: int


class AuditOut(BaseModel):
    """One history row."""

    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any]


class ResponseOut(BaseModel):
    """One response (口径) with its approval trail."""

    id: str
    channel: str
    state: str
    text: str
    drafted_by: str
    drafted_at: datetime
    approvals: list[dict[str, Any]]
    approvers: list[str]
    published_by: str | None
    published_at: datetime | None
    allowed_actions: list[str] = Field(default_factory=list)


class TicketDetailOut(TicketOut):
    """A ticket with everything the detail page shows."""

    routing: dict[str, Any]
    evaluation: dict[str, Any]
    extra: dict[str, Any]
    history: list[AuditOut]
    responses: list[ResponseOut]
    allowed_actions: list[str]


class TicketPageOut(BaseModel):
    """A page of tickets."""

    items: list[TicketOut]
    total: int
    limit: int
    offset: int


class AssessIn(BaseModel):
    level: int | str
    facts: str = Field(min_length=1, max_length=TEXT_MAX)
    risk: str = Field(default="", max_length=TEXT_MAX)


class HandleIn(BaseModel):
    tasks: dict[str, str] = Field(default_factory=dict)


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class ReassignIn(BaseModel):
    lead_unit: str = Field(min_length=1, max_length=64)
    cooperating_units: list[str] = Field(default_factory=list, max_length=50)


class ExtensionIn(BaseModel):
    """``until`` (aware ISO time) or ``hours`` added to the current deadline; stage "response" = first response."""

    stage: str
    until: datetime | None = None
    hours: float | None = Field(default=None, gt=0, le=24 * 90)
    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class DecisionIn(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=TEXT_MAX)


class MergeIn(BaseModel):
    into: str = Field(min_length=1, max_length=40)


class CloseIn(BaseModel):
    summary: str = Field(min_length=1, max_length=TEXT_MAX)


class EvaluateIn(BaseModel):
    window_hours: float = Field(default=24, gt=0, le=24 * 30)


class ResponseIn(BaseModel):
    text: str = Field(min_length=1, max_length=rsp.MAX_TEXT)
    channel: str


class ResponseEditIn(BaseModel):
    text: str = Field(min_length=1, max_length=rsp.MAX_TEXT)


class ReviewIn(BaseModel):
    note: str = Field(default="", max_length=TEXT_MAX)


# Ticket actions and the permission each needs (draft_response is offered when responses may be drafted).
_UI_ACTIONS = ["acknowledge", "assess", "start_handling", "reject", "reassign", "request_extension",
               "decide_extension", "merge", "close", "reopen", "evaluate"]


def allowed_actions(actor: perm.Actor, t: TicketRow) -> list[str]:
    """Actions this actor may take on this ticket now (state machine and role both allow)."""
    states = set(wf.allowed_actions(t.state))
    out = [a for a in _UI_ACTIONS if a in states and perm.can(actor, a, t)]
    pending = (t.extra or {}).get("extension", {}).get("state") == "pending"
    if "decide_extension" in out and not pending:
        out.remove("decide_extension")
    if "request_extension" in out and pending:
        out.remove("request_extension")
    if t.state in wf.TRANSITIONS["respond"] and perm.can(actor, "draft_response", t):
        out.append("draft_response")
    return out


def ticket_out(t: TicketRow, unit_names: dict[str, str] | None = None) -> TicketOut:
    """List view of a ticket."""
    return TicketOut(
        id=t.id, event_id=t.event_id, title=t.title, level=t.level, state=t.state,
        state_zh=wf.STATE_ZH.get(t.state, t.state), rule=t.rule, reason=t.reason, lead_unit=t.lead_unit,
        lead_unit_name=(unit_names or {}).get(t.lead_unit), cooperating_units=list(t.cooperating_units or []),
        deadlines=dict(t.deadlines or {}), escalation=t.escalation, created_at=t.created_at, updated_at=t.updated_at,
        signed_at=t.signed_at, responded_at=t.responded_at, closed_at=t.closed_at, merged_into=t.merged_into,
        reopened=t.reopened, version=t.version,
    )


def response_out(r: ResponseRow, actor: perm.Actor, t: TicketRow, required_approvals: int) -> ResponseOut:
    """A response with the actions the actor may take on it."""
    actions = []
    if r.state != rsp.PUBLISHED:
        if perm.can(actor, "approve_response", t) and actor.username != r.drafted_by:
            actions += ["approve", "reject"]
        if perm.can(actor, "edit_response", t):
            actions.append("edit")
        if (perm.can(actor, "publish_response", t) and len(rsp.distinct_approvers(r)) >= required_approvals
                and t.state in wf.TRANSITIONS["respond"]):
            actions.append("publish")
    return ResponseOut(id=r.id, channel=r.channel, state=r.state, text=r.text, drafted_by=r.drafted_by,
                       drafted_at=r.drafted_at, approvals=list(r.approvals or []), approvers=rsp.distinct_approvers(r),
                       published_by=r.published_by, published_at=r.published_at, allowed_actions=actions)


def audit_out(a: TicketAuditRow) -> AuditOut:
    """History row view."""
    return AuditOut(at=a.at, actor=a.actor, action=a.action, from_state=a.from_state, to_state=a.to_state,
                    detail=dict(a.detail or {}))
