"""HTTP ingest acknowledges only what is durable, and refuses posts (503 + Retry-After) while shutting down."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from core.bus.base import TOPIC_RAW
from core.bus.sqlite import SqliteBus
from tests.support import bearer, embedded, make_token, post_record


def test_posts_answered_202_are_on_disk_before_any_worker_ran(tmp_path: Path) -> None:
    records = [post_record(f"d{i}", f"A{i % 9 + 1}区第{i}条留言：路灯不亮") for i in range(30)]
    with embedded(tmp_path, start=False) as (container, pipeline):  # no worker: nothing is consumed
        token = make_token(container, "feeder", "analyst")
        with TestClient(create_app(container, pipeline=pipeline), headers=bearer(token)) as client:
            r = client.post("/api/v1/ingest", content=json.dumps(records, ensure_ascii=False).encode())
            assert r.status_code == 202 and r.json()["accepted"] == 30
    # The process's bus is closed; a new one on the same file (as after a restart) has every accepted post.
    bus = SqliteBus(tmp_path / "bus.sqlite")
    assert bus.recovered == 30
    consumer = bus.consumer([TOPIC_RAW], group="analyze")
    got = consumer.poll(max_records=100, timeout_s=1)
    assert sorted(json.loads(m.value)["external_id"] for m in got) == sorted(f"d{i}" for i in range(30))
    consumer.close()
    bus.close()


def test_ingest_answers_503_with_retry_after_while_draining(tmp_path: Path) -> None:
    with embedded(tmp_path, start=False) as (container, pipeline):
        token = make_token(container, "feeder", "analyst")
        with TestClient(create_app(container, pipeline=pipeline), headers=bearer(token)) as client:
            pipeline.draining.set()
            r = client.post("/api/v1/ingest", content=json.dumps([post_record("late", "A1区停电")]).encode())
            assert r.status_code == 503
            assert r.headers["Retry-After"] == "30"
            assert "shutting down" in r.json()["detail"]
            assert pipeline.backlog() == 0, "a refused post must not be queued"
