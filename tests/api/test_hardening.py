"""Hardening of the HTTP surface: body size limits, pagination caps, rate limits, CORS, security headers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.observability import install
from tests.support import bearer, embedded, make_token, post_record

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from core.auth import passwords

    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)  # fast hashing for tests only
    with embedded(tmp_path_factory.mktemp("hard"), start=False, api={"max_body_bytes": 4096}) as (container,
                                                                                                   pipeline):
        app = create_app(container, pipeline=pipeline)
        install(app, container=container, pipeline=pipeline)  # default limits
        with TestClient(app, headers=bearer(make_token(container, "analyst1", "analyst"))) as c:
            yield c
    passwords.configure()


def test_oversized_bodies_are_refused_with_413(client: TestClient) -> None:
    big = json.dumps([post_record(f"b{i}", "A1区" + "很长的内容" * 40) for i in range(10)],
                     ensure_ascii=False).encode()
    assert len(big) > 4096
    r = client.post("/api/v1/ingest", content=big)
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the route measures what arrived
        yield big[:3000]
        yield big[3000:]

    assert client.post("/api/v1/ingest", content=chunks()).status_code == 413
    huge_login = {"username": "x", "password": "y" * 5000}
    assert client.post("/api/v1/auth/login", json=huge_login).status_code == 413


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/posts", {"limit": 201}),
    ("/api/v1/posts", {"limit": 10_000_000}),
    ("/api/v1/posts", {"offset": 100_001}),
    ("/api/v1/posts", {"limit": 0}),
    ("/api/v1/events", {"limit": 201}),
    ("/api/v1/events", {"offset": -1}),
    ("/api/v1/events", {"samples": 11}),
    ("/api/v1/stats/keywords", {"top": 101}),
    ("/api/v1/dead-letters", {"limit": 100_000}),
])
def test_pagination_is_capped_with_422(client: TestClient, path: str, params: dict[str, int]) -> None:
    r = client.get(path, params=params)
    assert r.status_code in (401, 422), r.text  # dead letters need a login first; never a huge page
    if path != "/api/v1/dead-letters":
        assert r.status_code == 422


def test_largest_allowed_page_is_served(client: TestClient) -> None:
    assert client.get("/api/v1/posts", params={"limit": 200}).status_code == 200
    assert client.get("/api/v1/events", params={"limit": 200}).status_code == 200


def test_default_rate_limits_on_login_and_ingest(client: TestClient) -> None:
    for bucket in client.app.state.rate_limits.values():
        bucket.reset()  # other tests of this module used some tokens
    creds = {"username": "nobody", "password": "wrong-password"}
    codes = [client.post("/api/v1/auth/login", json=creds).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]  # burst of 5, then 10 a minute
    last = client.post("/api/v1/auth/login", json=creds)
    assert last.status_code == 429 and int(last.headers["retry-after"]) >= 1
    body = json.dumps([post_record("rl", "A1区路灯坏了")], ensure_ascii=False).encode()
    started = time.monotonic()
    statuses = []
    while 429 not in statuses and len(statuses) < 200:
        statuses.append(client.post("/api/v1/ingest", content=body).status_code)
    refilled = 2.0 * (time.monotonic() - started)  # 120 a minute refill while the burst was being spent
    assert statuses[-1] == 429 and set(statuses[:-1]) == {202}
    assert 30 <= len(statuses) - 1 <= 30 + refilled + 1  # a burst of 30


def test_cors_is_closed_by_default(client: TestClient) -> None:
    r = client.get("/api/v1/stats/overview", headers={"Origin": EVIL})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/api/v1/ingest", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    assert "access-control-allow-credentials" not in pre.headers


def test_cors_allows_only_configured_origins(tmp_path: Path) -> None:
    with embedded(tmp_path, start=False, api={"cors_origins": ["https://dash.example"]}) as (container, pipeline):
        c = TestClient(create_app(container, pipeline=pipeline))
        ok = c.get("/api/v1/stats/overview", headers={"Origin": "https://dash.example"})
        assert ok.headers.get("access-control-allow-origin") == "https://dash.example"
        bad = c.get("/api/v1/stats/overview", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in bad.headers


def test_dashboard_page_has_a_strict_csp_and_no_inline_code(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
    for name in ("script-src", "style-src", "default-src"):
        assert directives[name] == ["'self'"], csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == ["'none'"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    # The strict policy only works if the page needs no inline code: check the page itself.
    html = r.text
    assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", html))
    assert not re.search(r"<style\b|\son[a-z]+\s*=|\sstyle\s*=|javascript:", html, re.IGNORECASE)


def test_api_answers_carry_the_security_headers(client: TestClient) -> None:
    for path in ("/health", "/api/v1/posts", "/metrics", "/ready"):
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert "content-security-policy" in r.headers, path
        assert r.headers["x-request-id"], path


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Like ``client`` with the default body limit (16 MiB), for batches of poisoned records."""
    from core.auth import passwords

    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)
    with embedded(tmp_path_factory.mktemp("roomy"), start=False) as (container, pipeline):
        app = create_app(container, pipeline=pipeline)
        with TestClient(app, headers=bearer(make_token(container, "analyst2", "analyst"))) as c:
            yield c
    passwords.configure()


def _fresh_ingest_budget(client: TestClient) -> None:
    for bucket in client.app.state.rate_limits.values():
        bucket.reset()


@pytest.mark.parametrize(("bad", "reason"), [
    (b'{"source": "weibo", "external_id": "s1", "text": "\\ud800", "published_at": "2026-11-20T09:00:00"}',
     "invalid Unicode"),
    (b'{"source": "weibo", "external_id": "n1", "text": "x", "likes": ' + b"9" * 5000
     + b', "published_at": "2026-11-20T09:00:00"}', "malformed JSON"),
    (b'{"source": "weibo", "external_id": "d1", "text": "x", "deep": ' + b"[" * 100_000 + b"]" * 100_000
     + b', "published_at": "2026-11-20T09:00:00"}', "nested too deeply"),
    (b"9" * 5000, "malformed JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_one_poisoned_element_of_an_array_is_dead_lettered_and_the_rest_accepted(
        roomy: TestClient, bad: bytes, reason: str) -> None:
    _fresh_ingest_budget(roomy)
    good = [json.dumps(post_record(f"ok-{i}-{len(bad)}", "A1区路灯坏了"), ensure_ascii=False).encode()
            for i in range(2)]
    body = b"[" + b", ".join([good[0], bad, good[1]]) + b"]"
    r = roomy.post("/api/v1/ingest", content=body)
    assert r.status_code == 202, r.text[:300]
    out = r.json()
    assert out["accepted"] == 2 and out["dead_lettered"] == 1
    assert out["errors"][0]["index"] == 1 and reason in out["errors"][0]["reason"]
    listed = roomy.get("/api/v1/dead-letters", params={"limit": 5}).json()["items"]
    assert any(item["raw_size"] == len(bad) and reason in item["reason"] for item in listed)


def test_brackets_and_commas_inside_strings_do_not_split_records(roomy: TestClient) -> None:
    _fresh_ingest_budget(roomy)
    records = [post_record("br-1", 'A1区"引号"，[括号], {花括号}, \\ 反斜杠'), post_record("br-2", "A2区]]],,,")]
    r = roomy.post("/api/v1/ingest", content=json.dumps(records, ensure_ascii=False).encode())
    assert r.status_code == 202 and r.json()["accepted"] == 2 and r.json()["errors"] == []
    assert roomy.post("/api/v1/ingest", content=b"[]").json()["accepted"] == 0


def test_duplicates_within_a_batch_are_taken_once_and_reported(roomy: TestClient) -> None:
    _fresh_ingest_budget(roomy)
    records = [post_record("dup-1", "A1区停电"), post_record("dup-1", "A1区停电（改）"), post_record("dup-2", "A2区")]
    r = roomy.post("/api/v1/ingest", content=json.dumps(records, ensure_ascii=False).encode())
    out = r.json()
    assert r.status_code == 202 and out["accepted"] == 2
    assert out["duplicates"] == [{"index": 1, "duplicate_of": 0}]


def test_place_hints_are_bounded(roomy: TestClient) -> None:
    _fresh_ingest_budget(roomy)
    records = [post_record("ph-1", "A1区", place_hints=["A1区"] * 200_000),
               post_record("ph-2", "A1区", place_hints=["长" * 5000]),
               post_record("ph-3", "A1区", junk="x" * 100_000),
               post_record("ph-4", "A1区", place_hints=["A1区", "A1区", "A2区"])]
    out = roomy.post("/api/v1/ingest", content=json.dumps(records, ensure_ascii=False).encode()).json()
    assert out["accepted"] == 1 and [e["index"] for e in out["errors"]] == [0, 1, 2]
    assert "too many (200000 > 50)" in out["errors"][0]["reason"]
    assert "too long" in out["errors"][1]["reason"] and "too large" in out["errors"][2]["reason"]


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("get", "/api/v1/dead-letters", {"params": {"offset": 10**20}}),
    ("get", "/api/v1/tickets", {"params": {"offset": 10**20}}),
    ("post", "/api/v1/dead-letters/replay", {"json": {"ids": [10**20]}}),
    ("post", "/api/v1/dead-letters/replay", {"json": {"ids": [-1]}}),
])
def test_numbers_too_large_for_the_database_are_422_not_500(roomy: TestClient, method: str, path: str,
                                                            kwargs: dict) -> None:
    r = getattr(roomy, method)(path, **kwargs)
    assert r.status_code == 422, r.text


def test_a_405_names_every_method_of_the_path(roomy: TestClient) -> None:
    r = roomy.request("OPTIONS", "/api/v1/auth/tokens")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2026-11-20", "2026-11-20T09:00:00"])
def test_query_times_must_be_rfc3339_with_an_offset(roomy: TestClient, value: str) -> None:
    for path in ("/api/v1/posts", "/api/v1/stats/overview"):
        assert roomy.get(path, params={"to": value}).status_code == 422, (path, value)
    assert roomy.get("/api/v1/posts", params={"to": "2026-11-20T09:00:00+08:00"}).status_code == 200


def test_from_after_to_is_an_empty_window(roomy: TestClient) -> None:
    window = {"from": "2026-11-21T00:00:00Z", "to": "2026-11-20T00:00:00Z"}
    r = roomy.get("/api/v1/posts", params=window)
    assert r.status_code == 200 and r.json()["total"] == 0
    assert roomy.get("/api/v1/stats/overview", params=window).json()["total"] == 0
