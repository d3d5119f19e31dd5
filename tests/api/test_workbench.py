"""我的待办, people's names, notification health and user admin, over the real app and database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.messages import render_markdown
from alerts.notifiers.base import Notification
from alerts.rules.base import Match
from alerts.tickets import responses
from alerts.tickets import service as tickets
from api.app import create_app
from core.auth.service import User
from core.db.models import OutboxRow
from core.records import Event, WarningLevel, utcnow
from tests.support import bearer, embedded, make_token

TOKENS: dict[str, str] = {}


def _ticket(container: Any, event_id: str, *, lead: str, coop: list[str], level: WarningLevel, age_h: float = 0) -> str:
    now = utcnow() - timedelta(hours=age_h)
    event = Event(id=event_id, title=f"事件{event_id}", first_seen=now, last_seen=now, size=5)
    with container.db.transaction() as s:
        t, _ = tickets.open_or_update(s, event=event, lead_unit=lead, cooperating_units=coop, routing={}, now=now,
                                      match=Match(rule="r", event_id=event_id, level=level, reason="测试", at=now))
        return t.id


@pytest.fixture(scope="module")
def app_and_container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with embedded(tmp_path_factory.mktemp("wb"), start=False) as (container, pipeline):
        for name, role, unit in [("admin1", "admin", None), ("office1", "analyst", None), ("boss", "leader", None),
                                 ("h-a3", "handler", "gov-a3"), ("h-env", "handler", "dept-environment")]:
            TOKENS[name] = make_token(container, name, role, unit_id=unit)
        yield create_app(container, pipeline=pipeline), container


def client(app: Any, who: str) -> TestClient:
    return TestClient(app, headers=bearer(TOKENS[who]))


def test_handler_todo_lists_lead_by_deadline_and_marks_cooperation(app_and_container: Any) -> None:
    app, container = app_and_container
    later = _ticket(container, "ev-later", lead="gov-a3", coop=["dept-environment"], level=WarningLevel.blue)
    sooner = _ticket(container, "ev-sooner", lead="gov-a3", coop=[], level=WarningLevel.red)
    other = _ticket(container, "ev-other", lead="gov-a5", coop=[], level=WarningLevel.red)
    with container.db.transaction() as s:  # the lead unit starts handling and gives the environment bureau a task
        a3 = User(id=99, username="h-a3", role="handler", unit_id="gov-a3")
        tickets.acknowledge(s, ticket_id=later, actor=a3, now=utcnow())
        tickets.assess(s, ticket_id=later, actor=a3, level=1, facts="已核实", risk="", now=utcnow())
        tickets.start_handling(s, ticket_id=later, actor=a3, tasks={"dept-environment": "监测水质并公布结果"},
                               now=utcnow())
    lead = client(app, "h-a3").get("/api/v1/dashboard/todo").json()
    ids = [x["ticket"]["id"] for x in lead["lead"]]
    assert ids.index(sooner) < ids.index(later) and other not in ids
    assert lead["lead"][ids.index(sooner)]["next_stage"] == "sign"
    assert lead["cooperating"] == [] and lead["review"] == []  # a handler approves nothing
    env = client(app, "h-env").get("/api/v1/dashboard/todo").json()
    assert [x["ticket"]["id"] for x in env["cooperating"]] == [later]
    assert env["cooperating"][0]["relation"] == "cooperating"
    assert env["cooperating"][0]["task"] == "监测水质并公布结果"
    assert env["lead"] == []


def test_approver_queue_holds_drafts_until_they_approved(app_and_container: Any) -> None:
    app, container = app_and_container
    tid = _ticket(container, "ev-draft", lead="gov-a3", coop=[], level=WarningLevel.orange)
    a3 = User(id=99, username="h-a3", role="handler", unit_id="gov-a3")
    with container.db.transaction() as s:
        tickets.acknowledge(s, ticket_id=tid, actor=a3, now=utcnow())
        row = responses.draft_response(s, ticket_id=tid, actor=a3, text="已组织核查，今晚公布结果。", channel="website",
                                       now=utcnow())
        rid = row.id
    with container.db.transaction() as s:  # the office's robot is told a draft waits
        note = s.scalar(select(OutboxRow).where(OutboxRow.kind == "ticket.review", OutboxRow.target == "office"))
        assert note is not None and note.notification["payload"]["id"] == tid
    assert "回应待审核" in render_markdown(Notification.model_validate(note.notification), dashboard_url="https://x")
    queue = client(app, "office1").get("/api/v1/dashboard/todo").json()["review"]
    assert [(r["ticket_id"], r["response_id"], r["drafted_by"]) for r in queue] == [(tid, rid, "h-a3")]
    with container.db.transaction() as s:
        office = User(id=98, username="office1", role="analyst")
        responses.review_response(s, response_id=rid, actor=office, approve=True, note="", now=utcnow())
    assert client(app, "office1").get("/api/v1/dashboard/todo").json()["review"] == []  # done by me
    assert [r["response_id"] for r in client(app, "boss").get("/api/v1/dashboard/todo").json()["review"]] == [rid]


def test_people_gives_display_names_and_unit_names(app_and_container: Any) -> None:
    app, _ = app_and_container
    out = client(app, "h-a3").get("/api/v1/dashboard/people").json()
    assert out["names"]["h-a3"] == "h-a3" and out["names"]["system"] == "系统"
    assert out["units"]["gov-a3"] == "A3区人民政府"
    assert not any("hash" in k or "mobile" in k for k in out)


def test_notify_health_warns_when_nothing_can_go_out(app_and_container: Any) -> None:
    app, container = app_and_container
    with container.db.transaction() as s:
        s.query(OutboxRow).filter(OutboxRow.state == "pending").update({"created_at": utcnow() - timedelta(hours=1)})
    out = client(app, "office1").get("/api/v1/dashboard/notify-health").json()
    assert {c["channel"]: c["enabled"] for c in out["channels"]} == {"wecom": False, "email": False, "webhook": False}
    assert out["pending"] >= 1 and out["stuck"] == out["pending"]
    assert any("未配置任何通知渠道" in w for w in out["warnings"])
    assert any("仍未发出" in w for w in out["warnings"])
    assert client(app, "h-a3").get("/api/v1/dashboard/notify-health").status_code == 403


def test_admin_creates_and_disables_a_user(app_and_container: Any) -> None:
    app, _ = app_and_container
    admin = client(app, "admin1")
    body = {"username": "new-a7", "display_name": "赵科员", "role": "handler", "unit_id": "gov-a7",
            "password": "a-long-password-1"}
    assert client(app, "office1").post("/api/v1/dashboard/users", json=body).status_code == 403
    assert admin.post("/api/v1/dashboard/users", json=body).status_code == 201
    assert admin.post("/api/v1/dashboard/users", json=body).status_code == 409  # taken
    assert admin.post("/api/v1/dashboard/users", json={**body, "username": "x", "unit_id": "nope"}).status_code == 409
    login = TestClient(app).post("/api/v1/auth/login", json={"username": "new-a7", "password": "a-long-password-1"})
    assert login.status_code == 200
    assert admin.post("/api/v1/dashboard/users/new-a7/active", json={"active": False}).json() == {
        "username": "new-a7", "active": False}
    again = TestClient(app).post("/api/v1/auth/login", json={"username": "new-a7", "password": "a-long-password-1"})
    assert again.status_code == 401
    assert admin.post("/api/v1/dashboard/users/admin1/active", json={"active": False}).status_code == 409
    users = {u["username"]: u for u in admin.get("/api/v1/dashboard/users").json()["items"]}
    assert users["new-a7"]["active"] is False and users["new-a7"]["display_name"] == "赵科员"
