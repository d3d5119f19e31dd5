"""The public API over a running embedded pipeline: ingest, search filters and pagination, events, stats, health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import can_see_ticket
from tests.support import bearer, embedded, incident_stream, make_token, post_record

TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, object]]:
    tmp = tmp_path_factory.mktemp("api")
    with embedded(tmp) as (container, pipeline):
        TOKENS["analyst"] = make_token(container, "analyst1", "analyst")
        TOKENS["handler"] = make_token(container, "handler-a3", "handler", unit_id="gov-a3")
        app = create_app(container, pipeline=pipeline)
        with TestClient(app, headers=bearer(TOKENS["analyst"])) as c:
            records = incident_stream(12)
            text = "我叫张三，电话13812345678，身份证110101199003071234，A3区小区停水三天了"
            records.append(post_record("pii-1", text, source="hotline", minutes=5))
            r = c.post("/api/v1/ingest", content=json.dumps(records, ensure_ascii=False).encode())
            assert r.status_code == 202, r.text
            assert r.json()["accepted"] == len(records)
            assert pipeline.wait_idle(timeout_s=120)
            container.post_store.refresh()
            yield c, container


def test_health_ready(client) -> None:
    c, _ = client
    r = c.get("/health")
    assert r.status_code == 200
    assert r.json()["checks"]["database"] == "ok"


def test_ingest_reports_each_bad_record_and_keeps_it(client) -> None:
    c, container = client
    body = json.dumps([
        {"source": "weibo", "external_id": "ok-1", "text": "A1区公园很好", "published_at": "2026-11-20T10:00:00"},
        {"source": "weibo", "external_id": "bad-1", "published_at": "2026-11-20T10:00:00"},
        {"source": "tiktok", "external_id": "bad-2", "text": "x", "published_at": "2026-11-20T10:00:00"},
    ], ensure_ascii=False).encode()
    r = c.post("/api/v1/ingest", content=body)
    assert r.status_code == 202
    out = r.json()
    assert out["accepted"] == 1 and out["dead_lettered"] == 2
    assert [e["index"] for e in out["errors"]] == [1, 2]
    assert "text" in out["errors"][0]["reason"]
    assert "tiktok" in out["errors"][1]["reason"]
    from ingest import deadletters

    with container.db.transaction() as session:
        _total, rows = deadletters.list_dead_letters(session, stage="ingest", limit=50)
        kept = {r.reason: r.raw for r in rows}
    assert any(b"bad-2" in raw and "tiktok" in reason for reason, raw in kept.items())


def test_ingest_rejects_empty_and_oversized_batches(client) -> None:
    c, _ = client
    assert c.post("/api/v1/ingest", content=b"   ").status_code == 422
    too_many = "\n".join("{}" for _ in range(1001)).encode()
    assert c.post("/api/v1/ingest", content=too_many).status_code == 413


def test_search_filters_and_pagination(client) -> None:
    c, _ = client
    r = c.get("/api/v1/posts", params={"q": "化工厂", "limit": 5})
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 12
    assert len(page["items"]) == 5
    second = c.get("/api/v1/posts", params={"q": "化工厂", "limit": 5, "offset": 5}).json()
    assert {p["id"] for p in page["items"]}.isdisjoint({p["id"] for p in second["items"]})
    hotline = c.get("/api/v1/posts", params={"source": "hotline"}).json()
    assert hotline["total"] == 1
    assert c.get("/api/v1/posts", params={"source": "tiktok"}).status_code == 422
    assert c.get("/api/v1/posts", params={"limit": 10_000}).status_code == 422
    negative = c.get("/api/v1/posts", params={"sentiment": "负面", "limit": 200}).json()
    assert all(p["sentiment"]["label"] == "负面" for p in negative["items"])
    window = c.get("/api/v1/posts", params={"from": "2026-11-20T09:00:00Z", "to": "2026-11-20T09:10:00Z"}).json()
    assert window["total"] >= 1
    assert all("2026-11-20T09:0" in p["published_at"] or "2026-11-20T09:10" in p["published_at"]
               for p in window["items"])


def test_personal_data_is_masked_for_unit_handlers_and_shown_to_analysts(client) -> None:
    c, _ = client
    item = c.get("/api/v1/posts", params={"source": "hotline"}, headers=bearer(TOKENS["handler"])).json()["items"][0]
    assert item["masked"] is True
    assert "13812345678" not in item["text"]
    assert "110101199003071234" not in item["text"]
    assert "张三" not in item["text"]
    raw = c.get("/api/v1/posts", params={"source": "hotline"}).json()["items"][0]
    assert raw["masked"] is False and "13812345678" in raw["text"]


def test_every_read_and_ingest_needs_a_login(client) -> None:
    c, _ = client
    anonymous = {"Authorization": ""}
    for path in ("/api/v1/posts", "/api/v1/events", "/api/v1/stats/overview", "/api/v1/stats/keywords",
                 "/api/v1/stream/tickets"):
        assert c.get(path, headers=anonymous).status_code == 401, path
    assert c.post("/api/v1/ingest", content=b"[]", headers=anonymous).status_code == 401
    # A unit handler reads but may not feed the pipeline.
    assert c.post("/api/v1/ingest", content=b"[{}]", headers=bearer(TOKENS["handler"])).status_code == 403
    assert c.get("/health", headers=anonymous).status_code == 200


def test_live_ticket_stream_shows_handlers_their_own_units_only() -> None:
    class U:
        def __init__(self, role: str, unit_id: str | None) -> None:
            self.role, self.unit_id = role, unit_id

    change = {"ticket_id": "T1", "lead_unit": "gov-a7", "cooperating_units": ["dept-environment"]}
    assert can_see_ticket(U("analyst", None), change)
    assert can_see_ticket(U("handler", "gov-a7"), change)
    assert can_see_ticket(U("handler", "dept-environment"), change)
    assert not can_see_ticket(U("handler", "gov-a3"), change)
    assert not can_see_ticket(U("handler", None), change)


def test_events_hottest_first_with_representatives(client) -> None:
    c, _ = client
    r = c.get("/api/v1/events", params={"limit": 3})
    assert r.status_code == 200
    events = r.json()["items"]
    assert events, "expected at least one event"
    heats = [e["heat"] for e in events]
    assert heats == sorted(heats, reverse=True)
    top = events[0]
    assert top["size"] == 12
    assert top["representatives"] and "化工" in top["representatives"][0]["text"]
    detail = c.get(f"/api/v1/events/{top['id']}").json()
    assert detail["id"] == top["id"]
    assert c.get("/api/v1/events/nope").status_code == 404


def test_a_page_of_events_reads_its_sample_posts_in_one_go(client, monkeypatch) -> None:
    # The dashboard polls this page: one post-store read per sample post (N+1) swamped Elasticsearch.
    c, container = client
    store = container.post_store
    reads: list[int] = []
    real_get_many = store.get_many
    monkeypatch.setattr(store, "get", lambda post_id: pytest.fail(f"per-post read of {post_id}"))
    monkeypatch.setattr(store, "get_many", lambda ids: reads.append(len(ids)) or real_get_many(ids))
    events = c.get("/api/v1/events", params={"limit": 10, "samples": 3}).json()["items"]
    assert len(reads) == 1
    shown = sum(len(e["representatives"]) for e in events)
    assert shown == reads[0] >= len(events) >= 2  # every sample asked for is shown, each event has one


def test_overview_counts_add_up(client) -> None:
    c, _ = client
    r = c.get("/api/v1/stats/overview", params={"from": "2026-11-19T00:00:00Z", "to": "2026-11-21T00:00:00Z"})
    assert r.status_code == 200
    ov = r.json()
    assert ov["total"] == sum(ov["by_sentiment"].values()) == sum(ov["by_source"].values())
    assert ov["total"] >= 19
    assert sum(sum(b["counts"].values()) for b in ov["series"]) == ov["total"]


def test_security_headers(client) -> None:
    c, _ = client
    r = c.get("/health")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_openapi_docs_served(client) -> None:
    c, _ = client
    assert c.get("/openapi.json").status_code == 200


_ = Path


def test_events_name_only_the_tickets_the_caller_may_see(client) -> None:
    c, _ = client
    handler = bearer(TOKENS["handler"])
    everyone = {e["id"]: e["ticket_id"] for e in c.get("/api/v1/events", params={"limit": 200}).json()["items"]}
    mine = {e["id"]: e["ticket_id"] for e in c.get("/api/v1/events", params={"limit": 200}, headers=handler)
            .json()["items"]}
    visible = {tid: c.get(f"/api/v1/tickets/{tid}", headers=handler).status_code == 200
               for tid in everyone.values() if tid}
    assert any(not ok for ok in visible.values()), "the stream should open a ticket of another unit"
    for event_id, tid in everyone.items():
        assert mine[event_id] == (tid if tid and visible[tid] else None)
        detail = c.get(f"/api/v1/events/{event_id}", headers=handler).json()
        assert detail["ticket_id"] == mine[event_id]
