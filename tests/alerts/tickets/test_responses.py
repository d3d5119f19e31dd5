"""Responses: two distinct approvers before publishing, drafter cannot approve, published text is frozen."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts.tickets import responses as rsp
from alerts.tickets import service as svc
from core.db.models import OutboxRow, ResponseRow, TicketRow
from core.errors import Forbidden, InvalidTransition, NotFound
from core.records import WarningLevel
from tests.alerts.tickets.ticket_helpers import (
    ADMIN,
    ANALYST,
    ENV,
    ENV2,
    HOUSING,
    LEADER,
    LEADER2,
    POLICE,
    T0,
    make_event,
    make_match,
)


def _ticket(db, level=WarningLevel.orange, event_id="ev1"):
    with db.transaction() as s:
        t, _ = svc.open_or_update(s, event=make_event(event_id), match=make_match(event_id, level=level),
                                  lead_unit="env",
                                  cooperating_units=["housing"], routing={}, now=T0)
        svc.acknowledge(s, ticket_id=t.id, actor=ENV, now=T0)
        return t.id


def _draft(db, tid, text="关于某小区垃圾站异味问题的情况通报", channel="website", actor=ENV):
    with db.transaction() as s:
        return rsp.draft_response(s, ticket_id=tid, actor=actor, text=text, channel=channel,
                                  now=T0 + timedelta(hours=1)).id


def test_publish_needs_two_distinct_approvers_not_the_drafter(db) -> None:
    tid = _ticket(db)
    rid = _draft(db, tid)
    with db.transaction() as s, pytest.raises(InvalidTransition, match="2 distinct approvers"):
        rsp.publish_response(s, response_id=rid, actor=ENV, now=T0)
    with db.transaction() as s, pytest.raises(Forbidden):
        rsp.review_response(s, response_id=rid, actor=ENV2, approve=True, now=T0)  # a handler cannot approve
    with db.transaction() as s:
        rsp.review_response(s, response_id=rid, actor=ANALYST, approve=True, note="口径可以", now=T0)
        rsp.review_response(s, response_id=rid, actor=ANALYST, approve=True, note="再点一次", now=T0)
    with db.transaction() as s, pytest.raises(InvalidTransition, match="has 1"):
        rsp.publish_response(s, response_id=rid, actor=ENV, now=T0)  # the same approver twice counts once
    with db.transaction() as s:
        row = rsp.review_response(s, response_id=rid, actor=LEADER, approve=True, note="同意发布", now=T0)
        assert row.state == "approved" and rsp.distinct_approvers(row) == ["office", "leader"]
    published_at = T0 + timedelta(hours=2)
    with db.transaction() as s, pytest.raises(Forbidden):
        rsp.publish_response(s, response_id=rid, actor=HOUSING, now=published_at)  # only the lead unit publishes
    with db.transaction() as s:
        row = rsp.publish_response(s, response_id=rid, actor=ENV, now=published_at)
        assert (row.state, row.published_by, row.published_at) == ("published", "env-handler", published_at)
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert t.state == "responded" and t.responded_at == published_at
        assert [a["user"] for a in s.get(ResponseRow, rid).approvals] == ["office", "office", "leader"]
        assert s.scalar(select(OutboxRow).where(OutboxRow.kind == "ticket.responded")) is not None


def test_drafter_cannot_approve_own_and_reject_sends_back(db) -> None:
    tid = _ticket(db)
    rid = _draft(db, tid, actor=ANALYST)
    with db.transaction() as s, pytest.raises(InvalidTransition, match="drafter"):
        rsp.review_response(s, response_id=rid, actor=ANALYST, approve=True, now=T0)
    with db.transaction() as s:
        assert rsp.review_response(s, response_id=rid, actor=LEADER, approve=False, note="表述不准确",
                                   now=T0).state == "rejected"
        rsp.review_response(s, response_id=rid, actor=LEADER2, approve=True, now=T0)
    with db.transaction() as s, pytest.raises(InvalidTransition):
        rsp.publish_response(s, response_id=rid, actor=ANALYST, now=T0)


def test_edit_resets_approvals_and_published_text_is_immutable(db) -> None:
    tid = _ticket(db)
    rid = _draft(db, tid, channel="press_conference")
    with db.transaction() as s:
        rsp.review_response(s, response_id=rid, actor=ANALYST, approve=True, now=T0)
        rsp.review_response(s, response_id=rid, actor=LEADER, approve=True, now=T0)
        rsp.edit_response(s, response_id=rid, actor=ENV, text="修改后的口径", now=T0)
    with db.transaction() as s, pytest.raises(InvalidTransition, match="has 0"):
        rsp.publish_response(s, response_id=rid, actor=ENV, now=T0)
    with db.transaction() as s:
        rsp.review_response(s, response_id=rid, actor=ANALYST, approve=True, now=T0)
        rsp.review_response(s, response_id=rid, actor=LEADER2, approve=True, now=T0)
        rsp.publish_response(s, response_id=rid, actor=ANALYST, now=T0 + timedelta(hours=3))
    with db.transaction() as s:
        assert s.get(TicketRow, tid).extra["press_conference_at"]
    with db.transaction() as s, pytest.raises(rsp.PublishedResponseImmutable):
        rsp.edit_response(s, response_id=rid, actor=ENV, text="偷偷改", now=T0)
    with db.transaction() as s, pytest.raises(InvalidTransition):
        rsp.publish_response(s, response_id=rid, actor=ENV, now=T0)
    # Even code that bypasses the service cannot rewrite published words.
    s = db.session()
    try:
        row = s.get(ResponseRow, rid)
        row.text = "直接改数据库对象"
        with pytest.raises(rsp.PublishedResponseImmutable):
            s.flush()
    finally:
        s.rollback()
        s.close()
    with db.transaction() as s:
        assert s.get(ResponseRow, rid).text == "修改后的口径"


def test_draft_rules(db) -> None:
    tid = _ticket(db)
    with db.transaction() as s, pytest.raises(ValueError, match="unknown channel"):
        rsp.draft_response(s, ticket_id=tid, actor=ENV, text="x", channel="fax", now=T0)
    with db.transaction() as s, pytest.raises(ValueError, match="empty"):
        rsp.draft_response(s, ticket_id=tid, actor=ENV, text="   ", channel="weibo", now=T0)
    with db.transaction() as s, pytest.raises(NotFound):
        rsp.draft_response(s, ticket_id=tid, actor=POLICE, text="x", channel="weibo", now=T0)
    _draft(db, tid, actor=HOUSING)  # a cooperating unit may draft
    with db.transaction() as s:
        assert [r.drafted_by for r in rsp.list_responses(s, ticket_id=tid, actor=ENV)] == ["housing-handler"]
        with pytest.raises(NotFound):
            rsp.list_responses(s, ticket_id=tid, actor=POLICE)


RESPONSE_ROLES = {
    "draft": {"admin", "office", "env-handler", "housing-handler"},
    "approve": {"admin", "office", "leader"},
    "publish": {"admin", "office", "env-handler"},
}


@pytest.mark.parametrize("step", sorted(RESPONSE_ROLES))
def test_each_role_on_responses(db, step) -> None:
    for n, actor in enumerate((ADMIN, ANALYST, LEADER, ENV, HOUSING, POLICE)):
        tid = _ticket(db, event_id=f"ev-{step}-{n}")
        rid = None if step == "draft" else _draft(db, tid, actor=ENV2)
        if step == "publish":
            with db.transaction() as s:
                rsp.review_response(s, response_id=rid, actor=LEADER, approve=True, now=T0)
                rsp.review_response(s, response_id=rid, actor=LEADER2, approve=True, now=T0)

        def do(s, actor=actor, tid=tid, rid=rid):
            if step == "draft":
                return rsp.draft_response(s, ticket_id=tid, actor=actor, text="口径", channel="weibo", now=T0)
            if step == "approve":
                return rsp.review_response(s, response_id=rid, actor=actor, approve=True, now=T0)
            return rsp.publish_response(s, response_id=rid, actor=actor, now=T0)

        with db.transaction() as s:
            if actor.username in RESPONSE_ROLES[step]:
                do(s)
            elif actor.unit_id == "police":
                with pytest.raises(NotFound):
                    do(s)
            else:
                with pytest.raises(Forbidden):
                    do(s)
