"""Responses (回应/口径): drafted by a unit, reviewed and approved (先审后发), then published, then frozen.

A draft needs ``required_approvals`` (default 2) approvals from *distinct* people other than the
drafter before it may be published; every decision is recorded with who and when. Editing a draft
drops earlier approvals (they approved other words). Published text is immutable: the service
refuses an edit and an ORM hook refuses any flush that changes it. Publishing moves the ticket to
``responded`` and sets ``responded_at`` (the first time) for the response deadlines.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from alerts.tickets import permissions as perm
from alerts.tickets import service as svc
from alerts.tickets import workflow as wf
from core.db.models import ResponseRow, TicketRow
from core.errors import InvalidTransition, NotFound

log = logging.getLogger(__name__)

CHANNELS = {"website": "政府网站", "weibo": "政务微博", "wechat": "政务微信", "press_conference": "新闻发布会",
            "hotline_reply": "热线答复"}
DEFAULT_REQUIRED_APPROVALS = 2
MAX_TEXT = 20_000
DRAFT, APPROVED, PUBLISHED, REJECTED = "draft", "approved", "published", "rejected"


class PublishedResponseImmutable(InvalidTransition):
    """Someone tried to change a response after it was published."""


@event.listens_for(ResponseRow, "before_update")
def _freeze_published(_mapper: Any, _conn: Any, target: ResponseRow) -> None:
    """Last line of defence: no code path may rewrite published words."""
    state = inspect(target)
    hist = state.attrs.published_at.history
    was_published = any(v is not None for v in (*hist.unchanged, *hist.deleted))
    changed = state.attrs.text.history.has_changes() or state.attrs.channel.history.has_changes()
    if was_published and changed:
        raise PublishedResponseImmutable(
            f"回应 {target.id} 已发布，内容不可修改 / response {target.id} is published; its text cannot change"
        )


def _load(session: Session, response_id: str) -> tuple[ResponseRow, TicketRow]:
    row = session.get(ResponseRow, response_id)
    if row is None:
        raise NotFound(f"回应不存在 / response {response_id!r} not found")
    ticket = svc.load_for_update(session, row.ticket_id)
    session.refresh(row)
    return row, ticket


def _check_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError("回应内容不能为空 / response text is empty")
    if len(text) > MAX_TEXT:
        raise ValueError(f"回应内容过长 / response text is longer than {MAX_TEXT} characters")
    return text


def distinct_approvers(row: ResponseRow) -> list[str]:
    """People (not the drafter) whose latest decision on the current text is an approval."""
    latest: dict[str, str] = {}
    for a in row.approvals or []:
        latest[a["user"]] = a["decision"]
    return [u for u, d in latest.items() if d == "approve" and u != row.drafted_by]


def draft_response(
    session: Session, *, ticket_id: str, actor: perm.Actor, text: str, channel: str, now: datetime
) -> ResponseRow:
    """A unit (or the office) drafts a response for a ticket being worked on."""
    if channel not in CHANNELS:
        raise ValueError(f"未知发布渠道 {channel!r} / unknown channel {channel!r}, use one of {sorted(CHANNELS)}")
    body = _check_text(text)
    t = svc.load_for_update(session, ticket_id)
    perm.check(actor, "draft_response", t)
    if t.state not in wf.TRANSITIONS["respond"]:
        raise InvalidTransition(f"工单处于「{wf.STATE_ZH[t.state]}」状态，不能起草回应 / "
                                f"cannot draft a response in state {t.state!r}")
    row = ResponseRow(id=f"R{now:%Y%m%d}{secrets.token_hex(4)}", ticket_id=t.id, text=body, channel=channel,
                      state=DRAFT, drafted_by=actor.username, drafted_at=now, approvals=[])
    session.add(row)
    svc.audit(session, t, actor=actor.username, action="draft_response", from_state=t.state, to_state=t.state,
              now=now, detail={"response_id": row.id, "channel": channel})
    # The approvers (the office) hear that a draft waits for review (待我审核) without watching the dashboard.
    svc.notify(session, t, kind="ticket.review", key=row.id, targets=["office"], subject=f"回应待审核：{t.title}")
    svc.flush(session)
    return row


def edit_response(session: Session, *, response_id: str, actor: perm.Actor, text: str, now: datetime) -> ResponseRow:
    """Change a draft's words; earlier approvals no longer count. Published responses never change."""
    row, t = _load(session, response_id)
    perm.check(actor, "edit_response", t)
    if row.state == PUBLISHED:
        raise PublishedResponseImmutable(
            f"回应 {row.id} 已发布，内容不可修改 / response {row.id} is published; its text cannot change"
        )
    row.text = _check_text(text)
    row.state = DRAFT
    # Approvals were given to other words: keep them in the trail but they no longer count.
    kept = [a if a["decision"] in ("edit",) or a["decision"].startswith("superseded-")
            else {**a, "decision": f"superseded-{a['decision']}"} for a in row.approvals or []]
    row.approvals = [*kept, {"user": actor.username, "at": svc.iso(now), "decision": "edit", "note": ""}]
    svc.audit(session, t, actor=actor.username, action="edit_response", from_state=t.state, to_state=t.state,
              now=now, detail={"response_id": row.id})
    svc.flush(session)
    return row


def review_response(
    session: Session,
    *,
    response_id: str,
    actor: perm.Actor,
    approve: bool,
    note: str = "",
    now: datetime,
    required_approvals: int = DEFAULT_REQUIRED_APPROVALS,
) -> ResponseRow:
    """审核/审批: approve or send back a draft; the drafter cannot approve their own words."""
    row, t = _load(session, response_id)
    perm.check(actor, "approve_response", t)
    if row.state == PUBLISHED:
        raise InvalidTransition(f"回应 {row.id} 已发布 / response {row.id} is already published")
    if actor.username == row.drafted_by:
        raise InvalidTransition("起草人不能审批自己的回应 / the drafter cannot approve their own response")
    row.approvals = [*(row.approvals or []), {"user": actor.username, "at": svc.iso(now),
                                              "decision": "approve" if approve else "reject", "note": note[:2000]}]
    if not approve:
        row.state = REJECTED
    else:
        row.state = APPROVED if len(distinct_approvers(row)) >= required_approvals else DRAFT
    svc.audit(session, t, actor=actor.username, action="approve_response" if approve else "reject_response",
              from_state=t.state, to_state=t.state, now=now,
              detail={"response_id": row.id, "note": note[:2000], "approvers": distinct_approvers(row)})
    svc.flush(session)
    return row


def publish_response(
    session: Session,
    *,
    response_id: str,
    actor: perm.Actor,
    now: datetime,
    required_approvals: int = DEFAULT_REQUIRED_APPROVALS,
) -> ResponseRow:
    """发布: only after enough distinct approvals; the ticket becomes ``responded``."""
    row, t = _load(session, response_id)
    perm.check(actor, "publish_response", t)
    if row.state == PUBLISHED:
        raise PublishedResponseImmutable(f"回应 {row.id} 已发布 / response {row.id} is already published")
    approvers = distinct_approvers(row)
    if len(approvers) < required_approvals:
        raise InvalidTransition(
            f"先审后发：需要 {required_approvals} 名不同审批人，现有 {len(approvers)} 名 / publishing needs "
            f"{required_approvals} distinct approvers other than the drafter, has {len(approvers)}"
        )
    svc.transition(session, t, actor=actor, action="respond", now=now, permission="publish_response",
                   detail={"response_id": row.id, "channel": row.channel, "approvers": approvers})
    row.state = PUBLISHED
    row.published_by = actor.username
    row.published_at = now
    if t.responded_at is None or t.responded_at < svc.cycle_start(t):
        t.responded_at = now  # the first response of this cycle (a reopen starts a new one)
    if row.channel == "press_conference" and not (t.extra or {}).get("press_conference_at"):
        svc.set_extra(t, press_conference_at=svc.iso(now))
    svc.notify(session, t, kind="ticket.responded", key=row.id, targets=["office", t.lead_unit],
               subject=f"已发布回应（{CHANNELS[row.channel]}）：{t.title}", response_channel=row.channel)
    svc.flush(session)
    return row


def list_responses(session: Session, *, ticket_id: str, actor: perm.Actor) -> list[ResponseRow]:
    """The ticket's responses, oldest first (NotFound for tickets the actor may not see)."""
    svc.get_ticket(session, ticket_id=ticket_id, actor=actor)
    return list(session.scalars(select(ResponseRow).where(ResponseRow.ticket_id == ticket_id)
                                .order_by(ResponseRow.drafted_at, ResponseRow.id)))
