"""Ticket and report endpoints through a real FastAPI app over a migrated SQLite database, per role."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from alerts.rules.base import Match
from alerts.tickets import service as svc
from api.routes import auth as auth_routes
from api.routes import reports as report_routes
from api.routes import tickets as ticket_routes
from core.auth import passwords
from core.auth.service import create_token, create_user
from core.db.models import UnitRow
from core.db.session import Database
from core.records import Event, WarningLevel, utcnow
from core.settings import ApiSettings, Settings

USERS = {  # username: (role, unit)
    "admin": ("admin", None), "office": ("analyst", None), "leader": ("leader", None),
    "leader2": ("leader", None), "env": ("handler", "env"), "housing": ("handler", "housing"),
    "police": ("handler", "police"),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)
    path = tmp_path_factory.mktemp("tapi") / "api.sqlite"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    tokens = {}
    with db.transaction() as s:
        s.add_all([UnitRow(id="env", name="生态环境局"), UnitRow(id="housing", name="住建局"),
                   UnitRow(id="police", name="公安局")])
        s.flush()
        for name, (role, unit) in USERS.items():
            u = create_user(s, username=name, password=f"{name}-password", role=role, unit_id=unit)
            tokens[name] = create_token(s, user_id=u.id, name="test")
    app = FastAPI()
    for module in (auth_routes, ticket_routes, report_routes):
        app.include_router(module.router)
    app.state.db = db
    app.state.settings = Settings(api=ApiSettings(session_secret=SecretStr("test-secret")))
    client = TestClient(app)
    yield client, db, tokens
    db.close()
    passwords.configure()


def _open(db, event_id, lead="env", coop=("housing",), level=WarningLevel.yellow):
    now = utcnow()
    with db.transaction() as s:
        t, _ = svc.open_or_update(
            s, event=Event(id=event_id, title=f"事件 {event_id}", first_seen=now, last_seen=now),
            match=Match(rule="burst", event_id=event_id, level=level, reason="信息激增", at=now),
            lead_unit=lead, cooperating_units=list(coop), routing={"strategy": "topic", "why": "环境投诉"}, now=now)
        return t.id


def call(client, tokens, who, method, path, **kw):
    return client.request(method, path, headers={"Authorization": f"Bearer {tokens[who]}"}, **kw)


def test_unit_users_cannot_see_or_act_on_other_units_tickets(env) -> None:
    client, db, tokens = env
    tid = _open(db, "api-e1")
    assert call(client, tokens, "police", "GET", f"/api/v1/tickets/{tid}").status_code == 404
    assert call(client, tokens, "police", "GET", "/api/v1/tickets/T-does-not-exist").status_code == 404
    for action, body in [("acknowledge", {}), ("reject", {"reason": "x"}), ("close", {"summary": "x"}),
                         ("responses", {"text": "x", "channel": "weibo"})]:
        r = call(client, tokens, "police", "POST", f"/api/v1/tickets/{tid}/{action}", json=body)
        assert r.status_code == 404, (action, r.text)
    ids = {t["id"] for t in call(client, tokens, "police", "GET", "/api/v1/tickets?limit=500").json()["items"]}
    assert tid not in ids
    assert tid in {t["id"] for t in call(client, tokens, "housing", "GET", "/api/v1/tickets").json()["items"]}
    assert call(client, tokens, "housing", "GET", f"/api/v1/tickets/{tid}").status_code == 200
    # A cooperating unit sees the ticket but may not sign it for the lead unit.
    assert call(client, tokens, "housing", "POST", f"/api/v1/tickets/{tid}/acknowledge").status_code == 403
    assert call(client, tokens, "leader", "POST", f"/api/v1/tickets/{tid}/acknowledge").status_code == 403
    assert client.get(f"/api/v1/tickets/{tid}").status_code == 401


def test_detail_and_lifecycle_with_response_approval(env) -> None:
    client, db, tokens = env
    tid = _open(db, "api-e2", level=WarningLevel.orange)
    detail = call(client, tokens, "env", "GET", f"/api/v1/tickets/{tid}").json()
    assert detail["routing"]["why"] == "环境投诉" and set(detail["deadlines"]) >= {"sign", "authoritative_info"}
    assert detail["history"][0]["action"] == "open" and detail["lead_unit_name"] == "生态环境局"
    assert set(detail["allowed_actions"]) == {"acknowledge", "reject"}
    r = call(client, tokens, "env", "POST", f"/api/v1/tickets/{tid}/close", json={"summary": "x"})
    assert r.status_code == 409 and "new" in r.json()["detail"]
    r = call(client, tokens, "env", "POST", f"/api/v1/tickets/{tid}/acknowledge")
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert "draft_response" in r.json()["allowed_actions"]
    r = call(client, tokens, "env", "POST", f"/api/v1/tickets/{tid}/responses",
             json={"text": "<script>alert(1)</script>情况通报", "channel": "website"})
    assert r.status_code == 201
    rid = r.json()["responses"][0]["id"]
    base = f"/api/v1/tickets/{tid}/responses/{rid}"
    assert call(client, tokens, "env", "POST", f"{base}/approve").status_code == 403
    assert call(client, tokens, "env", "POST", f"{base}/publish").status_code == 409
    assert call(client, tokens, "office", "POST", f"{base}/approve", json={"note": "可"}).status_code == 200
    assert call(client, tokens, "office", "POST", f"{base}/approve").status_code == 200  # same person again
    assert call(client, tokens, "env", "POST", f"{base}/publish").status_code == 409
    r = call(client, tokens, "leader", "POST", f"{base}/approve")
    assert r.json()["responses"][0]["approvers"] == ["office", "leader"]
    assert "publish" not in r.json()["responses"][0]["allowed_actions"]  # a leader approves, the unit publishes
    r = call(client, tokens, "env", "POST", f"{base}/publish")
    assert r.status_code == 200 and r.json()["state"] == "responded" and r.json()["responded_at"]
    assert r.json()["responses"][0]["text"] == "<script>alert(1)</script>情况通报"  # stored as text, JSON-escaped
    r = call(client, tokens, "env", "POST", f"{base}/edit", json={"text": "改口径"})
    assert r.status_code == 409 and "published" in r.json()["detail"]
    r = call(client, tokens, "env", "POST", f"/api/v1/tickets/{tid}/close", json={"summary": "已处置"})
    assert r.status_code == 200 and r.json()["state"] == "closed"
    assert call(client, tokens, "env", "POST", f"/api/v1/tickets/{tid}/reopen", json={"reason": "x"}).status_code == 403
    r = call(client, tokens, "office", "POST", f"/api/v1/tickets/{tid}/reopen", json={"reason": "二次舆情"})
    assert r.status_code == 200 and r.json()["state"] == "handling" and r.json()["reopened"] == 1
    actions = [h["action"] for h in r.json()["history"]]
    assert actions[:3] == ["open", "acknowledge", "draft_response"] and actions[-1] == "reopen"


def test_response_of_another_ticket_is_not_reachable(env) -> None:
    client, db, tokens = env
    a, b = _open(db, "api-e3"), _open(db, "api-e4", lead="police", coop=())
    call(client, tokens, "env", "POST", f"/api/v1/tickets/{a}/acknowledge")
    rid = call(client, tokens, "env", "POST", f"/api/v1/tickets/{a}/responses",
               json={"text": "口径", "channel": "weibo"}).json()["responses"][0]["id"]
    assert call(client, tokens, "office", "POST", f"/api/v1/tickets/{b}/responses/{rid}/approve").status_code == 404


def test_reject_reassign_extension_merge_and_bad_input(env) -> None:
    client, db, tokens = env
    tid = _open(db, "api-e5")
    assert call(client, tokens, "env", "POST", f"/api/v1/tickets/{tid}/reject", json={}).status_code == 422
    assert call(client, tokens, "env", "POST", f"/api/v1/tickets/{tid}/reject",
                json={"reason": "应由公安局主办"}).json()["state"] == "returned"
    assert call(client, tokens, "env", "POST", f"/api/v1/tickets/{tid}/reassign",
                json={"lead_unit": "police"}).status_code == 403
    assert call(client, tokens, "office", "POST", f"/api/v1/tickets/{tid}/reassign",
                json={"lead_unit": "nowhere"}).status_code == 404
    r = call(client, tokens, "office", "POST", f"/api/v1/tickets/{tid}/reassign", json={"lead_unit": "police"})
    assert r.status_code == 200 and r.json()["lead_unit"] == "police" and r.json()["state"] == "new"
    assert call(client, tokens, "env", "GET", f"/api/v1/tickets/{tid}").status_code == 404  # no longer theirs
    assert call(client, tokens, "police", "POST", f"/api/v1/tickets/{tid}/acknowledge").status_code == 200
    r = call(client, tokens, "police", "POST", f"/api/v1/tickets/{tid}/request_extension",
             json={"stage": "response", "until": "2020-01-01T00:00:00+08:00", "reason": "x"})
    assert r.status_code == 400
    r = call(client, tokens, "police", "POST", f"/api/v1/tickets/{tid}/request_extension",
             json={"stage": "response", "hours": 24, "reason": "需调查"})
    assert r.status_code == 200 and "decide_extension" not in r.json()["allowed_actions"]
    old = datetime.fromisoformat(r.json()["extra"]["extension"]["until"])
    r = call(client, tokens, "leader", "POST", f"/api/v1/tickets/{tid}/decide_extension",
             json={"approve": True, "note": "同意"})
    assert r.status_code == 200 and datetime.fromisoformat(r.json()["deadlines"]["first_response"]) == old
    other = _open(db, "api-e6", lead="police", coop=())
    r = call(client, tokens, "police", "POST", f"/api/v1/tickets/{other}/merge", json={"into": tid})
    assert r.status_code == 403
    r = call(client, tokens, "office", "POST", f"/api/v1/tickets/{other}/merge", json={"into": tid})
    assert r.status_code == 200 and r.json()["state"] == "merged" and r.json()["merged_into"] == tid
    # The schema lists the level names, so an unknown one is a validation error (422) like any other.
    assert call(client, tokens, "office", "GET", "/api/v1/tickets?level=purple").status_code == 422


def test_cookie_session_actions_need_csrf(env) -> None:
    client, db, _tokens = env
    tid = _open(db, "api-e7")
    browser = TestClient(client.app)
    csrf = browser.post("/api/v1/auth/login", json={"username": "env", "password": "env-password"}).json()["csrf_token"]
    assert browser.post(f"/api/v1/tickets/{tid}/acknowledge").status_code == 403
    r = browser.post(f"/api/v1/tickets/{tid}/acknowledge", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"


def test_summary_and_unit_reports(env) -> None:
    client, db, tokens = env
    _open(db, "api-e8", lead="housing", coop=())
    s = call(client, tokens, "office", "GET", "/api/v1/tickets/summary").json()
    assert s["open"] >= 1 and sum(s["by_state"].values()) == s["open"]
    own = call(client, tokens, "housing", "GET", "/api/v1/tickets/summary").json()
    assert own["open"] < s["open"]
    frm = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = call(client, tokens, "office", "GET", "/api/v1/reports/units", params={"from": frm})
    assert r.status_code == 200
    rows = {row["unit"]: row for row in r.json()["items"]}
    assert rows["housing"]["received"] >= 1 and r.json()["columns"]["late_report"] == "报告不及时"
    r = call(client, tokens, "office", "GET", "/api/v1/reports/units", params={"from": frm, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert table[0][0] == "单位" and {row[0] for row in table[1:]} >= {"env", "housing", "police"}
    mine = call(client, tokens, "housing", "GET", "/api/v1/reports/units", params={"from": frm}).json()["items"]
    assert [row["unit"] for row in mine] == ["housing"]
    naive = call(client, tokens, "office", "GET", "/api/v1/reports/units", params={"from": "2025-01-01T00:00:00"})
    assert naive.status_code == 422 and "timezone" in naive.text  # RFC 3339 times need their offset


ALL_ACTIONS = [("acknowledge", {}), ("assess", {}), ("start_handling", {}), ("reject", {"reason": "x"}),
               ("reassign", {"lead_unit": "police"}), ("request_extension", {"stage": "sign", "hours": 1}),
               ("decide_extension", {"approve": True}), ("merge", {"into": "T-x"}), ("close", {"summary": "x"}),
               ("reopen", {"reason": "x"}), ("evaluate", {"outcome": "平息"}),
               ("responses", {"text": "x", "channel": "weibo"}), ("responses/r1/approve", {}),
               ("responses/r1/reject", {"reason": "x"}), ("responses/r1/edit", {"text": "x"}),
               ("responses/r1/publish", {})]


@pytest.mark.parametrize(("action", "body"), ALL_ACTIONS)
def test_a_foreign_ticket_answers_exactly_like_a_missing_one(env, action: str, body: dict) -> None:
    client, db, tokens = env
    tid = _open(db, f"api-probe-{action.replace('/', '-')}")
    foreign = call(client, tokens, "police", "POST", f"/api/v1/tickets/{tid}/{action}", json=body)
    missing = call(client, tokens, "police", "POST", f"/api/v1/tickets/T-nope/{action}", json=body)
    assert foreign.status_code == missing.status_code == 404, (foreign.text, missing.text)
    assert foreign.json()["detail"].replace(tid, "T-nope") == missing.json()["detail"]
