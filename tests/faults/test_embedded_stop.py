"""Embedded mode: every post acknowledged with 202 survives kill -9 and SIGTERM mid-feed; no event gets two tickets.

A real ``yuqing run`` (embedded: durable SQLite bus, SQLite post store and database) in a subprocess with a temp
data dir. A feeder thread posts the demo stream over HTTP as fast as the service takes it; the test kills the
process in the middle (kill -9, then SIGTERM), restarts it, and finally checks the stores: every post that was
answered 202 is in the post store, and no event has two tickets. Nothing here is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.scale import REPO, demo_records, free_port, parse_all, sentiment_model, wait_for

# A few thousand posts keep the test to about two minutes on two busy cores.
STOP_POSTS = int(os.environ.get("YUQING_FAULT_STOP_POSTS", "3000"))
BATCH = 50
pytestmark = pytest.mark.slow
PASSWORD = "fault-admin-password-1"  # a throw-away test account


class EmbeddedService:
    """``yuqing run`` on a data dir; started and stopped (politely or not) by the test."""

    def __init__(self, data_dir: Path, *, drain_s: float) -> None:
        self.data_dir = data_dir
        self.drain_s = drain_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.token = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
        env.update({
            "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
            "YUQING_DATA_DIR": str(self.data_dir),
            "YUQING_ANALYZE__SENTIMENT_MODEL": sentiment_model(), "YUQING_ANALYZE__NER": "off",
            "YUQING_API__BOOTSTRAP_ADMIN_PASSWORD": PASSWORD,
            "YUQING_API__SESSION_SECRET": "fault-test-session-secret-0123456789abcdef",
            "YUQING_API__INGEST_PER_MINUTE": "100000",
            "YUQING_SHUTDOWN_DRAIN_S": str(self.drain_s),
            "YUQING_LOG_LEVEL": "INFO",
        })
        return env

    def start(self) -> None:
        self.port = free_port()
        log = self.data_dir.parent / f"run-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "run", "--port", str(self.port)], env=self.env(), cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._healthy, timeout_s=180, what=f"yuqing run to answer /health\n{self.tail()}")
        if not self.token:
            out_b = subprocess.run([sys.executable, "-m", "core.cli", "users", "token", "admin", "--name", "feed"],
                                   env=self.env(), cwd=REPO, capture_output=True, timeout=120, check=True)
            self.token = out_b.stdout.decode().strip().splitlines()[-1]

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"yuqing run exited with {self.proc.returncode}\n{self.tail()}")
        return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200

    def tail(self, lines: int = 40) -> str:
        if not self.logs or not self.logs[-1].exists():
            return ""
        return "\n".join(self.logs[-1].read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.logs[-1].read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class Feeder(threading.Thread):
    """Posts batches over HTTP until told to stop or the service goes away; remembers what got 202."""

    def __init__(self, service: EmbeddedService, batches: list[list[dict[str, Any]]]) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{service.port}/api/v1/ingest"
        self.headers = {"Authorization": f"Bearer {service.token}", "Content-Type": "application/json"}
        self.batches = batches
        self.sent = 0  # batches answered 202
        self.acknowledged: list[dict[str, Any]] = []
        self.statuses: Counter[int] = Counter()
        self.retry_after: set[str] = set()
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while self.sent < len(self.batches) and not self.stopping.is_set():
                batch = self.batches[self.sent]
                try:
                    response = client.post(self.url, content=json.dumps(batch, ensure_ascii=False).encode(),
                                           headers=self.headers)
                except httpx.HTTPError:
                    return  # the service is gone: whatever was in flight was never acknowledged
                self.statuses[response.status_code] += 1
                if response.status_code == 202:
                    assert response.json()["accepted"] == len(batch), response.text
                    self.acknowledged.extend(batch)
                    self.sent += 1
                elif response.status_code == 503:
                    self.retry_after.add(response.headers.get("Retry-After", ""))
                    time.sleep(0.05)
                else:
                    raise AssertionError(f"ingest answered {response.status_code}: {response.text[:300]}")


def stored_post_ids(data_dir: Path) -> set[str]:
    with sqlite3.connect(f"file:{data_dir / 'posts.sqlite'}?mode=ro", uri=True, timeout=10) as db:
        return {row[0] for row in db.execute("SELECT id FROM posts")}


def tickets_per_event(data_dir: Path) -> Counter[str]:
    with sqlite3.connect(f"file:{data_dir / 'yuqing.sqlite'}?mode=ro", uri=True, timeout=10) as db:
        return Counter(row[0] for row in db.execute("SELECT event_id FROM tickets"))


def posts_per_event_member(data_dir: Path) -> Counter[str]:
    with sqlite3.connect(f"file:{data_dir / 'yuqing.sqlite'}?mode=ro", uri=True, timeout=10) as db:
        return Counter(row[0] for row in db.execute("SELECT post_id FROM event_members"))


def feed_until(service: EmbeddedService, batches: list[list[dict[str, Any]]], *, acknowledged: int) -> Feeder:
    """Start feeding ``batches`` and return once at least ``acknowledged`` of them were answered 202."""
    feeder = Feeder(service, batches)
    feeder.start()
    wait_for(lambda: feeder.sent >= acknowledged or not feeder.is_alive(), timeout_s=300, every_s=0.05,
             what=f"{acknowledged} acknowledged batches\n{service.tail()}")
    assert feeder.sent >= acknowledged, f"feeder stopped early: {feeder.statuses}\n{service.tail()}"
    return feeder


@pytest.fixture
def service(tmp_path: Path) -> Any:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    svc = EmbeddedService(data_dir, drain_s=3.0)
    try:
        yield svc
    finally:
        svc.close()


def test_acknowledged_posts_survive_kill_9_and_sigterm_mid_feed(service: EmbeddedService) -> None:
    records = demo_records(STOP_POSTS, seed=23, rate_per_min=600.0)
    ids = {r["external_id"]: p.id for r, p in zip(records, parse_all(records), strict=True)}
    batches = [records[i: i + BATCH] for i in range(0, len(records), BATCH)]
    third = len(batches) // 3
    acknowledged: list[dict[str, Any]] = []

    # 1. kill -9 in the middle of the feed: no clean-up at all.
    service.start()
    feeder = feed_until(service, batches[:third * 2], acknowledged=third)
    service.signal(signal.SIGKILL)
    feeder.join(60)
    acknowledged += feeder.acknowledged
    service.wait(30)
    lost_in_memory = len(acknowledged) - len(stored_post_ids(service.data_dir))
    assert lost_in_memory > 0, "the kill should hit while posts were still queued (else it proves nothing)"

    # 2. Restart (the queue is replayed), feed more, SIGTERM mid-feed: intake stops, bounded drain, exit 0.
    rest = batches[feeder.sent:]
    service.start()
    feeder = feed_until(service, rest, acknowledged=min(third, len(rest) - 1))
    service.signal(signal.SIGTERM)
    code = service.wait(120)
    feeder.stopping.set()
    feeder.join(60)
    acknowledged += feeder.acknowledged
    log = service.log_text()
    assert code == 0, f"SIGTERM must end in a clean exit, not {code}\n{service.tail()}"
    assert "SIGTERM received: no longer taking posts" in log
    assert "left queued in" in log or "stopped cleanly" in log, service.tail()
    assert "DROPPED" not in log
    assert 503 in feeder.statuses, f"ingest must refuse posts while draining: {feeder.statuses}"
    assert feeder.retry_after == {"30"}

    # 3. Restart, feed the rest to the end, wait until every acknowledged post is stored, stop with SIGINT.
    rest = rest[feeder.sent:]
    service.start()
    feeder = feed_until(service, rest, acknowledged=len(rest))
    feeder.join(60)
    acknowledged += feeder.acknowledged
    want = {ids[r["external_id"]] for r in acknowledged}
    assert len(want) == STOP_POSTS, "every batch was acknowledged once in the end"

    def all_stored() -> bool:
        return want <= stored_post_ids(service.data_dir)

    try:
        wait_for(all_stored, timeout_s=300, every_s=1.0, what="every acknowledged post in the post store")
    except AssertionError:
        missing = want - stored_post_ids(service.data_dir)
        raise AssertionError(f"{len(missing)} acknowledged posts never reached the post store "
                             f"(lost at the kill: {lost_in_memory} were still queued)\n{service.tail()}") from None
    service.signal(signal.SIGINT)
    assert service.wait(120) == 0
    assert "stopped cleanly" in service.log_text(), service.tail()

    tickets = tickets_per_event(service.data_dir)
    assert tickets, "the demo incidents must open tickets (else 'no ticket twice' proves nothing)"
    assert max(tickets.values()) == 1, f"events with two tickets: {[e for e, n in tickets.items() if n > 1]}"
    members = posts_per_event_member(service.data_dir)
    assert set(members) == want and max(members.values()) == 1


def test_a_second_signal_cuts_the_drain_short_and_the_queue_is_replayed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    service = EmbeddedService(data_dir, drain_s=600.0)  # a drain that would outlast the test
    try:
        records = demo_records(1500, seed=29, rate_per_min=600.0)
        want = {p.id for p in parse_all(records)}
        service.start()
        # While it runs, a second process on the same data dir is refused with advice, not a traceback.
        (tmp_path / "nothing.jsonl").write_text("")
        other = subprocess.run([sys.executable, "-m", "core.cli", "ingest", str(tmp_path / "nothing.jsonl")],
                               env=service.env(), cwd=REPO, capture_output=True, text=True, timeout=120,
                               check=False)
        assert other.returncode == 2, other
        assert "in use by another yuqing process" in other.stderr and "Traceback" not in other.stderr
        feeder = feed_until(service, [records[i: i + 500] for i in range(0, len(records), 500)], acknowledged=3)
        feeder.join(60)
        service.signal(signal.SIGTERM)
        wait_for(lambda: "no longer taking posts" in service.log_text(), timeout_s=30, what="the drain to start")
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait(60) == 0
        assert time.monotonic() - started < 45, "the second signal must not wait for the 600 s drain"
        log = service.log_text()
        assert "SIGTERM again: stopping without waiting for the drain" in log
        assert "left queued in" in log and "stopped cleanly" not in log, service.tail()

        service.start()  # the queue is on disk: the next start processes it without any new post
        assert "delivered again from" in service.log_text()
        wait_for(lambda: want <= stored_post_ids(data_dir), timeout_s=300, every_s=1.0,
                 what=f"the replayed queue in the post store\n{service.tail()}")
    finally:
        service.close()
