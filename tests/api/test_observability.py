"""/metrics, /ready, request ids in logs and per-IP rate limits on a real embedded app."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.observability import REQUEST_ID, RequestIdFilter, TokenBucket, install
from tests.support import bearer, embedded, make_token, post_record

LOGIN = ("POST", "/api/v1/auth/login")
INGEST = ("POST", "/api/v1/ingest")


@pytest.fixture(autouse=True)
def cheap_hashing() -> Iterator[None]:
    from core.auth import passwords

    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)  # fast hashing for tests only
    yield
    passwords.configure()


def build(container, pipeline=None):
    """The app as the service builds it, observability installed (by the factory or here)."""
    app = create_app(container, pipeline=pipeline)
    install(app, container=container, pipeline=pipeline)  # a no-op once the factory calls it
    return app


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, object, object]]:
    with embedded(tmp_path_factory.mktemp("obs")) as (container, pipeline):
        app = build(container, pipeline)
        with TestClient(app, headers=bearer(make_token(container, "analyst1", "analyst"))) as client:
            yield client, container, pipeline


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_ready_waits_for_the_model_then_metrics_show_the_flow(running) -> None:
    client, container, pipeline = running
    first = client.get("/ready")
    checks = first.json()["checks"]
    assert checks["database"] == "ok" and checks["post_store"] == "ok" and checks["bus"] == "ok"
    if first.status_code == 503:
        assert checks["sentiment"] == "loading"  # the probe started the warm-up
    deadline = time.monotonic() + 120
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/ready").json()
        time.sleep(0.2)
    records = [post_record(f"m{i}", f"A{i % 7 + 1}区 公交线路调整 第{i}条 意见", source="weibo") for i in range(6)]
    records.append(post_record("h1", "反映A3区小区停水三天", source="hotline"))
    r = client.post("/api/v1/ingest", content=json.dumps(records, ensure_ascii=False).encode())
    assert r.status_code == 202
    assert pipeline.wait_idle(timeout_s=120)
    container.post_store.refresh()
    page = client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    got = samples(page.text)
    assert got[("yuqing_ingested_posts_total", (("source", "weibo"),))] >= 6
    assert got[("yuqing_ingested_posts_total", (("source", "hotline"),))] >= 1
    assert got[("yuqing_stage_handled_posts_total", (("stage", "analyze"),))] >= 7
    assert got[("yuqing_stage_batch_seconds_count", (("stage", "analyze"),))] >= 1
    assert got[("yuqing_worker_up", (("worker", "alerts"),))] == 1
    assert got[("yuqing_sentiment_model_loaded", ())] == 1
    assert got[("yuqing_bus_backlog", (("topic", "posts.raw"),))] == 0
    assert got[("process_resident_memory_bytes", ())] > 0


def test_ready_fails_when_a_worker_stops(tmp_path: Path) -> None:
    with embedded(tmp_path, start=False) as (container, pipeline):
        pipeline.start(kinds=["alerts"])  # no analyze worker here: readiness does not wait for a model
        with TestClient(build(container, pipeline)) as client:
            ready = client.get("/ready")
            assert ready.status_code == 200 and "sentiment" not in ready.json()["checks"]
            pipeline.workers[0].stop()
            r = client.get("/ready")
            assert r.status_code == 503
            assert r.json()["checks"]["workers"] == f"stopped: {pipeline.workers[0].name}"
            assert client.get("/health").status_code == 503  # liveness+readiness, as before


def test_ready_fails_while_the_process_drains(tmp_path: Path) -> None:
    with embedded(tmp_path, start=False) as (container, pipeline):
        pipeline.start(kinds=["alerts"])
        with TestClient(build(container, pipeline)) as client:
            assert client.get("/ready").json()["checks"]["intake"] == "ok"
            pipeline.draining.set()  # what the first SIGTERM does: ingest answers 503 from now on
            r = client.get("/ready")
            assert r.status_code == 503 and r.json()["checks"]["intake"] == "draining"


def test_api_only_process_is_ready_without_a_model(tmp_path: Path) -> None:
    with embedded(tmp_path, start=False) as (container, _pipeline), TestClient(build(container)) as client:
        r = client.get("/ready")
        assert r.status_code == 200, r.json()
        assert "sentiment" not in r.json()["checks"]
        assert "sentiment" not in container.__dict__  # and no model was loaded for it


def test_request_id_is_echoed_and_carried_by_log_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    probe_log = logging.getLogger("tests.probe")
    with embedded(tmp_path, start=False) as (container, pipeline):
        app = build(container, pipeline)

        @app.get("/probe-sync")
        def probe_sync() -> dict[str, str]:  # runs in the thread pool
            probe_log.warning("sync handler")
            return {}

        @app.get("/probe-async")
        async def probe_async() -> dict[str, str]:  # runs on the event loop
            probe_log.warning("async handler")
            return {}

        with TestClient(app) as client, caplog.at_level(logging.INFO):
            r = client.get("/probe-sync", headers={"X-Request-ID": "trace-42"})
            assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
            r = client.get("/probe-async", headers={"X-Request-ID": "trace-43"})
            assert r.headers["x-request-id"] == "trace-43"
            tagged = {rec.getMessage(): getattr(rec, "request_id", None) for rec in caplog.records
                      if rec.name == "tests.probe"}
            assert tagged == {"sync handler": "trace-42", "async handler": "trace-43"}
            forged = client.get("/health", headers={"X-Request-ID": "x\r\nlevel=ERROR fake"})
            rid = forged.headers["x-request-id"]
            assert rid != "x\r\nlevel=ERROR fake" and len(rid) == 16 and rid.isalnum()
            generated = client.get("/health").headers["x-request-id"]
            assert generated and generated != rid
            caplog.clear()
            probe_log.warning("outside any request")
            assert not hasattr(caplog.records[0], "request_id")
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert RequestIdFilter().filter(outside) and not hasattr(outside, "request_id")
    token = REQUEST_ID.set("abc")
    try:
        assert logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, "m", None, None).request_id == "abc"
    finally:
        REQUEST_ID.reset(token)


def test_login_and_ingest_are_rate_limited_per_address(tmp_path: Path) -> None:
    with embedded(tmp_path, start=False) as (container, pipeline):
        app = build(container, pipeline)
        app.state.rate_limits[LOGIN] = TokenBucket(per_minute=6, burst=3)
        app.state.rate_limits[INGEST] = TokenBucket(per_minute=60, burst=2)
        with TestClient(app, headers=bearer(make_token(container, "analyst1", "analyst"))) as client:
            creds = {"username": "nobody", "password": "wrong-password"}
            codes = [client.post("/api/v1/auth/login", json=creds).status_code for _ in range(4)]
            assert codes == [401, 401, 401, 429]
            refused = client.post("/api/v1/auth/login", json=creds)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 10 and refused.headers["x-request-id"]
            assert "请求过于频繁" in refused.json()["detail"]
            assert client.get("/api/v1/auth/me").status_code == 200  # other routes are not limited
            body = json.dumps([post_record("i1", "A1区路灯坏了")], ensure_ascii=False).encode()
            assert [client.post("/api/v1/ingest", content=body).status_code for _ in range(3)] == [202, 202, 429]
            assert client.post("/api/v1/ingest/", content=body).status_code == 429  # a trailing slash is no way out


def test_forwarded_addresses_are_used_only_when_trusted(tmp_path: Path) -> None:
    from fastapi import FastAPI

    for trusted, expected in ((False, [401, 429]), (True, [401, 401])):
        app = FastAPI()

        @app.post("/api/v1/auth/login")
        def login() -> None:
            from fastapi import HTTPException

            raise HTTPException(401)

        with embedded(tmp_path / str(trusted), start=False) as (container, _):
            install(app, container=container, trust_forwarded=trusted)
            app.state.rate_limits[LOGIN] = TokenBucket(per_minute=1, burst=1)
            client = TestClient(app)
            codes = [client.post("/api/v1/auth/login", headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code
                     for i in range(2)]
            assert codes == expected


def test_token_bucket_refills_and_forgets_old_addresses() -> None:
    now = [0.0]
    bucket = TokenBucket(per_minute=60, burst=2, max_keys=3, clock=lambda: now[0])
    assert bucket.take("a") == 0 and bucket.take("a") == 0
    assert bucket.take("a") == pytest.approx(1.0)
    now[0] = 0.5
    assert bucket.take("a") == pytest.approx(0.5)
    now[0] = 2.0
    assert bucket.take("a") == 0
    for key in "bcd":
        bucket.take(key)
    assert len(bucket._buckets) == 3 and "a" not in bucket._buckets
    with pytest.raises(ValueError):
        TokenBucket(per_minute=0, burst=1)


def test_metrics_can_require_a_scrape_token(tmp_path: Path) -> None:
    from fastapi import FastAPI

    with embedded(tmp_path, start=False) as (container, _):
        app = FastAPI()
        install(app, container=container, metrics_token="scrape-me")
        client = TestClient(app)
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200 and "yuqing_posts_stored" in ok.text


def test_metrics_are_closed_to_anonymous_callers_by_default(tmp_path: Path) -> None:
    with embedded(tmp_path, start=False) as (container, pipeline):
        app = build(container, pipeline)
        client = TestClient(app)
        assert client.get("/metrics").status_code == 401
        handler = make_token(container, "handler-m", "handler", unit_id="gov-a3")
        assert client.get("/metrics", headers=bearer(handler)).status_code == 403
        ok = client.get("/metrics", headers=bearer(make_token(container, "analyst-m", "analyst")))
        assert ok.status_code == 200 and "yuqing_posts_stored" in ok.text


def test_metrics_can_be_made_public_for_a_monitoring_network(tmp_path: Path) -> None:
    with embedded(tmp_path, start=False, api={"metrics_public": True}) as (container, pipeline):
        assert TestClient(build(container, pipeline)).get("/metrics").status_code == 200


def test_ready_is_unavailable_on_a_read_only_database(tmp_path: Path) -> None:
    from core.db.session import Database

    with embedded(tmp_path, start=False) as (container, pipeline):
        client = TestClient(build(container, pipeline))
        assert client.get("/ready").json()["checks"]["database"] == "ok"
        path = container.settings.resolved_database_url.removeprefix("sqlite:///")
        read_only = Database(f"sqlite:///file:{path}?mode=ro&uri=true")
        writable, container.__dict__["db"] = container.db, read_only
        try:
            with read_only.engine.connect() as conn:  # reads still work...
                conn.exec_driver_sql("SELECT count(*) FROM users").scalar()
            r = client.get("/ready")
            assert r.status_code == 503 and r.json()["checks"]["database"] == "error: read-only"
        finally:
            container.__dict__["db"] = writable
            read_only.close()
