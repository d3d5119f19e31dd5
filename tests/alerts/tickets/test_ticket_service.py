"""Ticket services against a real migrated SQLite database: open/update/reopen, actions, roles, audit, outbox."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts.tickets import service as svc
from core.db.models import OutboxRow, TicketAuditRow, TicketRow
from core.errors import Forbidden, InvalidTransition, NotFound
from core.records import WarningLevel
from tests.alerts.tickets.ticket_helpers import ADMIN, ANALYST, ENV, HOUSING, LEADER, POLICE, T0, make_event, make_match


def _open(db, event_id="ev1", level=WarningLevel.yellow, reason="1小时内相关信息激增", now=T0, rule="burst"):
    with db.transaction() as s:
        t, created = svc.open_or_update(
            s, event=make_event(event_id), match=make_match(event_id, level, rule=rule, reason=reason, at=now),
            lead_unit="env", cooperating_units=["housing"], routing={"strategy": "topic", "topic": "环境"},
            now=now)
        return t.id, created


def _audit(db, tid):
    with db.transaction() as s:
        return [(a.action, a.from_state, a.to_state, a.actor) for a in
                s.scalars(select(TicketAuditRow).where(TicketAuditRow.ticket_id == tid).order_by(TicketAuditRow.id))]


def _outbox(db):
    with db.transaction() as s:
        return {(o.kind, o.target) for o in s.scalars(select(OutboxRow))}


def test_open_creates_one_ticket_with_deadlines_audit_and_notifications(db) -> None:
    tid, created = _open(db)
    assert created
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert (t.state, t.level, t.lead_unit, t.cooperating_units) == ("new", 2, "env", ["housing"])
        assert svc.parse_iso(t.deadlines["sign"]) == T0 + timedelta(hours=1)
        assert svc.parse_iso(t.deadlines["first_response"]) == T0 + timedelta(hours=48)
        assert t.routing["topic"] == "环境"
    assert _audit(db, tid) == [("open", None, "new", "system")]
    assert _outbox(db) == {("ticket.created", "env"), ("ticket.created", "housing"), ("ticket.created", "office")}
    with db.transaction() as s:
        note = s.get(OutboxRow, f"{tid}:ticket.created:2:wecom:env").notification
        assert note["payload"]["id"] == tid and note["payload"]["lead_unit"] == "env"
        assert note["payload"]["deadlines"]["sign"] and note["payload"]["event_id"] == "ev1"


def test_same_match_again_changes_nothing_and_never_duplicates(db) -> None:
    tid, _ = _open(db)
    tid2, created = _open(db, now=T0 + timedelta(minutes=5))
    assert tid2 == tid and not created
    assert _audit(db, tid) == [("open", None, "new", "system")]
    with db.transaction() as s:
        assert s.query(TicketRow).count() == 1


def test_higher_level_raises_and_tightens_lower_never_lowers(db) -> None:
    tid, _ = _open(db)
    later = T0 + timedelta(minutes=20)
    _open(db, level=WarningLevel.red, reason="涉及人员伤亡", now=later, rule="keyword")
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert t.level == 4 and t.reason == "涉及人员伤亡"
        # red: sign 30 min and authoritative information 5 h from the raise; the earlier limit wins per stage.
        assert svc.parse_iso(t.deadlines["sign"]) == later + timedelta(minutes=30)
        assert svc.parse_iso(t.deadlines["authoritative_info"]) == later + timedelta(hours=5)
        assert svc.parse_iso(t.deadlines["press_conference"]) == later + timedelta(hours=24)
        assert [r["rule"] for r in t.extra["reasons"]] == ["burst", "keyword"]
    assert ("ticket.level", "env") in _outbox(db)
    _open(db, level=WarningLevel.blue, reason="新的低级别线索", now=later + timedelta(minutes=1), rule="volume")
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert t.level == 4 and len(t.extra["reasons"]) == 3
    assert [a[0] for a in _audit(db, tid)] == ["open", "raise_level", "update"]


def _walk_to_closed(db, tid, now=T0):
    with db.transaction() as s:
        svc.acknowledge(s, ticket_id=tid, actor=ENV, now=now)
        svc.assess(s, ticket_id=tid, actor=ENV, level=2, facts="垃圾站除臭设备故障", risk="低", now=now)
        svc.start_handling(s, ticket_id=tid, actor=ENV, tasks={"housing": "协调物业"}, now=now)
        svc.close(s, ticket_id=tid, actor=ENV, summary="已维修除臭设备", now=now)


def test_reopen_within_window_else_new_ticket(db) -> None:
    tid, _ = _open(db)
    _walk_to_closed(db, tid, now=T0 + timedelta(hours=1))
    tid2, created = _open(db, reason="问题再次出现", now=T0 + timedelta(days=3))
    assert tid2 == tid and not created
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert (t.state, t.reopened, t.closed_at) == ("handling", 1, None)
    assert ("ticket.reopened", "office") in _outbox(db)
    _walk_closed_again = [("reopen", "closed", "handling", "system")]
    assert _audit(db, tid)[-1] == _walk_closed_again[0]
    with db.transaction() as s:
        svc.close(s, ticket_id=tid, actor=ANALYST, summary="再次处理完毕", now=T0 + timedelta(days=3, hours=1))
    tid3, created = _open(db, reason="又出现", now=T0 + timedelta(days=20))
    assert created and tid3 != tid


def test_full_lifecycle_audit_states(db) -> None:
    tid, _ = _open(db)
    _walk_to_closed(db, tid, now=T0 + timedelta(minutes=10))
    assert [(a, f, t) for a, f, t, _ in _audit(db, tid)] == [
        ("open", None, "new"), ("acknowledge", "new", "acknowledged"), ("assess", "acknowledged", "assessing"),
        ("start_handling", "assessing", "handling"), ("close", "handling", "closed"),
    ]
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert t.signed_at == T0 + timedelta(minutes=10) and t.closed_at is not None
        assert t.version == 5  # every change bumped the optimistic version
        assert t.extra["tasks"][0]["unit"] == "housing"
    assert ("ticket.closed", "office") in _outbox(db) and ("ticket.task", "housing") in _outbox(db)


def test_reject_then_reassign(db) -> None:
    tid, _ = _open(db)
    with db.transaction() as s, pytest.raises(ValueError, match="reason"):
        svc.reject(s, ticket_id=tid, actor=ENV, reason="  ", now=T0)
    with db.transaction() as s:
        svc.reject(s, ticket_id=tid, actor=ENV, reason="不属于本单位职责，应由住建局主办", now=T0)
    with db.transaction() as s, pytest.raises(NotFound):
        svc.reassign(s, ticket_id=tid, actor=ANALYST, lead_unit="nowhere", cooperating_units=[], now=T0)
    later = T0 + timedelta(hours=2)
    with db.transaction() as s:
        t = svc.reassign(s, ticket_id=tid, actor=ANALYST, lead_unit="housing", cooperating_units=["env"], now=later)
        assert (t.state, t.lead_unit, t.cooperating_units, t.signed_at) == ("new", "housing", ["env"], None)
        assert svc.parse_iso(t.deadlines["sign"]) == later + timedelta(hours=1)
        assert svc.parse_iso(t.deadlines["first_response"]) == T0 + timedelta(hours=48)  # the public's clock runs on
    assert ("ticket.returned", "office") in _outbox(db)
    with db.transaction() as s:
        svc.acknowledge(s, ticket_id=tid, actor=HOUSING, now=later)


def test_extension_request_and_decision(db) -> None:
    tid, _ = _open(db)
    with db.transaction() as s:
        svc.acknowledge(s, ticket_id=tid, actor=ENV, now=T0)
    until = T0 + timedelta(days=30)
    with db.transaction() as s, pytest.raises(InvalidTransition, match="no pending"):
        svc.decide_extension(s, ticket_id=tid, actor=ANALYST, approve=True, note="", now=T0)
    with db.transaction() as s, pytest.raises(ValueError, match="later"):
        svc.request_extension(s, ticket_id=tid, actor=ENV, stage="close", until=T0, reason="x", now=T0)
    with db.transaction() as s:
        svc.request_extension(s, ticket_id=tid, actor=ENV, stage="close", until=until, reason="需第三方检测", now=T0)
    with db.transaction() as s, pytest.raises(InvalidTransition, match="already pending"):
        svc.request_extension(s, ticket_id=tid, actor=ENV, stage="close", until=until, reason="again", now=T0)
    with db.transaction() as s, pytest.raises(Forbidden):
        svc.decide_extension(s, ticket_id=tid, actor=ENV, approve=True, note="自己批", now=T0)
    with db.transaction() as s:
        t = svc.decide_extension(s, ticket_id=tid, actor=LEADER, approve=True, note="同意", now=T0)
        assert svc.parse_iso(t.deadlines["close"]) == until
        assert t.extra["extensions"][0]["decided_by"] == "leader"


def test_merge_moves_reasons_and_units(db) -> None:
    a, _ = _open(db, "ev1")
    with db.transaction() as s:
        b, _ = svc.open_or_update(s, event=make_event("ev2", "同一垃圾站另一帖"),
                                  match=make_match("ev2", WarningLevel.orange, reason="媒体关注"),
                                  lead_unit="police", cooperating_units=[], routing={}, now=T0)
        b = b.id
    with db.transaction() as s, pytest.raises(Forbidden):
        svc.merge(s, ticket_id=b, into_ticket_id=a, actor=LEADER, now=T0)
    with db.transaction() as s:
        svc.merge(s, ticket_id=b, into_ticket_id=a, actor=ANALYST, now=T0)
    with db.transaction() as s:
        tb, ta = s.get(TicketRow, b), s.get(TicketRow, a)
        assert (tb.state, tb.merged_into) == ("merged", a)
        assert ta.level == 3 and "police" in ta.cooperating_units and ta.extra["merged_from"] == [b]
    with db.transaction() as s, pytest.raises(InvalidTransition):
        svc.merge(s, ticket_id=a, into_ticket_id=a, actor=ANALYST, now=T0)
    # A new match on the merged ticket's event goes to the ticket it was merged into.
    with db.transaction() as s:
        t, created = svc.open_or_update(s, event=make_event("ev2"), match=make_match("ev2", reason="新线索"),
                                        lead_unit="police", cooperating_units=[], routing={}, now=T0)
        assert (t.id, created) == (a, False)


def test_unit_users_see_only_their_units_and_get_404(db) -> None:
    a, _ = _open(db, "ev1")  # lead env, cooperating housing
    with db.transaction() as s:
        svc.open_or_update(s, event=make_event("ev3", "治安事件"), match=make_match("ev3"),
                           lead_unit="police", cooperating_units=[], routing={}, now=T0)
    with db.transaction() as s:
        assert svc.list_tickets(s, visible_to=ANALYST)[1] == 2
        assert svc.list_tickets(s, visible_to=LEADER)[1] == 2
        env_rows, env_total = svc.list_tickets(s, visible_to=ENV)
        assert env_total == 1 and env_rows[0].id == a
        assert svc.list_tickets(s, visible_to=HOUSING)[0][0].id == a  # cooperating unit sees it too
        police_rows, _ = svc.list_tickets(s, visible_to=POLICE)
        assert [t.lead_unit for t in police_rows] == ["police"]
        with pytest.raises(NotFound):
            svc.get_ticket(s, ticket_id=a, actor=POLICE)
        with pytest.raises(NotFound):
            svc.history(s, ticket_id=a, actor=POLICE)
        with pytest.raises(NotFound):
            svc.acknowledge(s, ticket_id=a, actor=POLICE, now=T0)
        assert svc.list_tickets(s, filters={"state": "new", "level": 2, "q": "垃圾"}, visible_to=ANALYST)[1] == 1


# (action, callable) where every call is the *first* legal step for that action from a fresh setup.
ROLE_MATRIX = {
    # action: set of actors allowed
    "acknowledge": {"admin", "env-handler"},
    "reject": {"admin", "env-handler"},
    "reassign": {"admin", "office"},
    "merge": {"admin", "office"},
    "assess": {"admin", "office", "env-handler"},
    "request_extension": {"admin", "env-handler"},
    "decide_extension": {"admin", "office", "leader"},
    "close": {"admin", "office", "env-handler"},
    "reopen": {"admin", "office"},
}
ACTORS = [ADMIN, ANALYST, LEADER, ENV, HOUSING, POLICE]


def _prepare(db, action):
    tid, _ = _open(db)
    with db.transaction() as s:
        if action in ("assess", "request_extension", "decide_extension", "close", "reopen"):
            svc.acknowledge(s, ticket_id=tid, actor=ENV, now=T0)
        if action in ("close", "reopen"):
            svc.assess(s, ticket_id=tid, actor=ENV, level=2, facts="f", risk="r", now=T0)
            svc.start_handling(s, ticket_id=tid, actor=ENV, tasks={}, now=T0)
        if action == "reopen":
            svc.close(s, ticket_id=tid, actor=ENV, summary="done", now=T0)
        if action == "decide_extension":
            svc.request_extension(s, ticket_id=tid, actor=ENV, stage="close", until=T0 + timedelta(days=60),
                                  reason="r", now=T0)
        if action == "reassign":
            svc.reject(s, ticket_id=tid, actor=ENV, reason="not ours", now=T0)
    return tid


def _do(s, action, tid, actor, other):
    now = T0
    calls = {
        "acknowledge": lambda: svc.acknowledge(s, ticket_id=tid, actor=actor, now=now),
        "reject": lambda: svc.reject(s, ticket_id=tid, actor=actor, reason="r", now=now),
        "reassign": lambda: svc.reassign(s, ticket_id=tid, actor=actor, lead_unit="housing", cooperating_units=[],
                                         now=now),
        "merge": lambda: svc.merge(s, ticket_id=tid, into_ticket_id=other, actor=actor, now=now),
        "assess": lambda: svc.assess(s, ticket_id=tid, actor=actor, level=2, facts="f", risk="r", now=now),
        "request_extension": lambda: svc.request_extension(s, ticket_id=tid, actor=actor, stage="close",
                                                           until=T0 + timedelta(days=90), reason="r", now=now),
        "decide_extension": lambda: svc.decide_extension(s, ticket_id=tid, actor=actor, approve=True, note="",
                                                         now=now),
        "close": lambda: svc.close(s, ticket_id=tid, actor=actor, summary="s", now=now),
        "reopen": lambda: svc.reopen(s, ticket_id=tid, actor=actor, reason="flare", now=now),
    }
    return calls[action]()


@pytest.mark.parametrize("action", sorted(ROLE_MATRIX))
def test_each_role_can_do_exactly_its_actions(db, action) -> None:
    for actor in ACTORS:
        with db.transaction() as s:
            s.query(OutboxRow).delete()
            s.query(TicketAuditRow).delete()
            s.query(TicketRow).delete()
        tid = _prepare(db, action)
        other = None
        if action == "merge":
            with db.transaction() as s:
                other = svc.open_or_update(s, event=make_event("ev9"), match=make_match("ev9"), lead_unit="env",
                                           cooperating_units=[], routing={}, now=T0)[0].id
        allowed = actor.username in ROLE_MATRIX[action]
        with db.transaction() as s:
            if allowed:
                _do(s, action, tid, actor, other)
            elif actor.role == "handler" and actor.unit_id not in ("env", "housing"):
                with pytest.raises(NotFound):
                    _do(s, action, tid, actor, other)
            else:
                with pytest.raises(Forbidden):
                    _do(s, action, tid, actor, other)


def test_concurrent_open_on_sqlite_file_makes_one_ticket(db) -> None:
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker(reason: str, level: WarningLevel) -> None:
        try:
            barrier.wait()
            with db.transaction() as s:
                match = make_match("evc", level, reason=reason, rule=reason)
                t, created = svc.open_or_update(s, event=make_event("evc"), match=match, lead_unit="env",
                                                cooperating_units=[], routing={}, now=T0)
                results.append((t.id, created))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=("规则A", WarningLevel.yellow)),
               threading.Thread(target=worker, args=("规则B", WarningLevel.red))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors
    assert len({r[0] for r in results}) == 1 and sorted(r[1] for r in results) == [False, True]
    with db.transaction() as s:
        rows = s.query(TicketRow).all()
        assert len(rows) == 1
        assert rows[0].level == 4 and {r["rule"] for r in rows[0].extra["reasons"]} == {"规则A", "规则B"}


def test_stale_write_raises_conflict_instead_of_overwriting(db) -> None:
    from core.errors import ConflictError

    tid, _ = _open(db)
    stale = db.session()
    try:
        old = stale.get(TicketRow, tid)  # read version 1
        with db.transaction() as s:
            svc.acknowledge(s, ticket_id=tid, actor=ENV, now=T0)  # someone else moves it to version 2
        old.title = "覆盖别人的修改"
        with pytest.raises(ConflictError, match="re-read and retry"):
            svc.flush(stale)
    finally:
        stale.rollback()
        stale.close()
    with db.transaction() as s:
        t = s.get(TicketRow, tid)
        assert (t.state, t.version, t.title) == ("acknowledged", 2, "某小区垃圾站臭味扰民")


@pytest.mark.postgres
def test_visibility_lifecycle_and_reopen_on_postgresql() -> None:
    from alerts.tickets import responses as rsp
    from core.db.models import UnitRow
    from tests.alerts.tickets.ticket_helpers import LEADER2, fresh_pg_database

    with fresh_pg_database("yq_tickets") as db:
        with db.transaction() as s:
            s.add_all([UnitRow(id="env", name="生态环境局"), UnitRow(id="housing", name="住建局"),
                       UnitRow(id="police", name="公安局")])
        tid, created = _open(db)
        assert created and _open(db, reason="另一条线索", rule="keyword")[0] == tid
        with db.transaction() as s:
            assert [t.id for t in svc.list_tickets(s, visible_to=HOUSING)[0]] == [tid]
            assert svc.list_tickets(s, visible_to=POLICE)[1] == 0
            svc.acknowledge(s, ticket_id=tid, actor=ENV, now=T0)
            rid = rsp.draft_response(s, ticket_id=tid, actor=ENV, text="口径", channel="website", now=T0).id
            rsp.review_response(s, response_id=rid, actor=ANALYST, approve=True, now=T0)
            rsp.review_response(s, response_id=rid, actor=LEADER2, approve=True, now=T0)
            rsp.publish_response(s, response_id=rid, actor=ENV, now=T0 + timedelta(hours=1))
            svc.close(s, ticket_id=tid, actor=ENV, summary="完毕", now=T0 + timedelta(hours=2))
        assert _open(db, reason="又起", rule="flare", now=T0 + timedelta(days=1)) == (tid, False)
        with db.transaction() as s:
            t = s.get(TicketRow, tid)
            assert (t.state, t.reopened, t.responded_at) == ("handling", 1, T0 + timedelta(hours=1))
            assert not svc.stage_met(t, "first_response")  # the flare needs a new response
