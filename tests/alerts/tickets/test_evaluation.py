"""Effect evaluation from event_members before/after the response: 平息, 持续, 升级 (which reopens)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.tickets import evaluation as ev
from alerts.tickets import service as svc
from core.db.models import TicketRow
from core.errors import InvalidTransition
from tests.alerts.tickets.ticket_helpers import ANALYST, ENV, T0, add_members, make_event, make_match


def _closed_ticket(db, respond_at):
    with db.transaction() as s:
        t, _ = svc.open_or_update(s, event=make_event(), match=make_match(), lead_unit="env",
                                  cooperating_units=[], routing={}, now=T0)
        svc.acknowledge(s, ticket_id=t.id, actor=ENV, now=T0)
        svc.assess(s, ticket_id=t.id, actor=ENV, level=2, facts="f", risk="r", now=T0)
        svc.start_handling(s, ticket_id=t.id, actor=ENV, tasks={}, now=T0)
        t.responded_at = respond_at  # as publish_response would set it
        svc.close(s, ticket_id=t.id, actor=ENV, summary="done", now=respond_at + timedelta(hours=1))
        return t.id


def _posts(start, hours, per_hour, negative_every=0):
    out = []
    for h in range(hours):
        for i in range(per_hour):
            out.append((start + timedelta(hours=h, minutes=i), bool(negative_every and i % negative_every == 0)))
    return out


@pytest.mark.parametrize(("before_rate", "after_rate", "expected", "state"), [
    (10, 2, "平息", "evaluated"),
    (10, 8, "持续", "evaluated"),
    (4, 12, "升级", "handling"),
])
def test_outcomes(db, before_rate, after_rate, expected, state) -> None:
    pivot = T0 + timedelta(hours=30)
    tid = _closed_ticket(db, pivot)
    with db.transaction() as s:
        add_members(s, "ev1", _posts(pivot - timedelta(hours=24), 24, before_rate) +
                    _posts(pivot, 24, after_rate), prefix="x")
    with db.transaction() as s:
        result = ev.evaluate_effect(s, ticket_id=tid, now=pivot + timedelta(hours=30), actor=ANALYST)
    assert result["outcome"] == expected
    assert result["before"]["volume"] == 24 * before_rate and result["after"]["volume"] == 24 * after_rate
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert t.state == state and t.evaluation["outcome"] == expected
        assert t.reopened == (1 if expected == "升级" else 0)


def test_negative_share_jump_is_escalation() -> None:
    before = {"volume": 100, "rate_per_hour": 4.0, "negative_share": 0.2}
    after = {"volume": 90, "rate_per_hour": 3.8, "negative_share": 0.6}
    assert ev.classify(before, after) == "升级"
    assert ev.classify(before, {**after, "negative_share": 0.25}) == "持续"
    assert ev.classify({"volume": 0, "rate_per_hour": 0, "negative_share": 0},
                       {"volume": 0, "rate_per_hour": 0, "negative_share": 0}) == "平息"


def test_open_ticket_evaluation_is_stored_without_state_change_and_needs_a_pivot(db) -> None:
    with db.transaction() as s:
        t, _ = svc.open_or_update(s, event=make_event(), match=make_match(), lead_unit="env",
                                  cooperating_units=[], routing={}, now=T0)
        tid = t.id
    with db.transaction() as s, pytest.raises(InvalidTransition, match="nothing to evaluate"):
        ev.evaluate_effect(s, ticket_id=tid, now=T0 + timedelta(hours=5))
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        t.responded_at = T0 + timedelta(hours=1)
    with db.transaction() as s:
        res = ev.evaluate_effect(s, ticket_id=tid, now=T0 + timedelta(hours=3))
        assert res["partial"] is True and res["after"]["hours"] == 2.0
        assert s.get(TicketRow, tid).state == "new"
