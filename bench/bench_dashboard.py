"""Dashboard API latency over a 1,000,000-post SQLite store: p95 of each call the dashboard makes.

The store is filled directly (synthetic AnalyzedPosts, ``SqlitePostStore.upsert`` in big batches, no analysis
pipeline) over the 30 days before a fixed "now", plus 200 events built from some of those posts and 60 tickets.
The database is cached under ``.bench/dashboard-<VERSION>/`` so a re-run only measures; bump ``VERSION`` when the
generator or the store schema changes. Calls go through a FastAPI TestClient over the real app (analyst session).
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

VERSION = "v1"  # the generator's version; the store's schema text is hashed into the cache key too
N_POSTS = 1_000_000
DAYS = 30
BATCH = 20_000
N_EVENTS = 200
POSTS_PER_EVENT = 40
N_TICKETS = 60
CALLS = 20
CACHE = Path(__file__).resolve().parents[1] / ".bench"

DISTRICTS = ["A1区", "A2区", "A3区", "A4区", "A5区", "A6区", "A7县", "A8县"]
SUBJECTS = ["化工厂", "地铁站", "小区物业", "学校食堂", "医院", "菜市场", "公交线路", "养老院", "停车场", "公园"]
PROBLEMS = ["发生爆炸", "噪音扰民", "停水停电", "乱收费", "食品安全", "排队太久", "垃圾没人清运", "道路积水",
            "施工扬尘", "服务态度差"]
PRAISE = ["环境不错", "服务很好", "办事效率高", "值得点赞", "越来越方便"]
TOPICS = ["城乡建设", "生态环境", "交通运输", "教育", "卫生健康", "市场监管", "社会保障", "公共安全"]
SOURCES = ["weibo", "wechat", "douyin", "news", "forum", "hotline", "mailbox"]
PASSWORD = "bench-password-1"  # noqa: S105 - a throw-away account in the bench's own database
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _texts() -> list[tuple[str, str]]:
    """(text, sentiment) templates: a few thousand distinct texts, so segmentation can be cached."""
    out = []
    for d in DISTRICTS:
        for s in SUBJECTS:
            for p in PROBLEMS:
                out.append((f"{d}{s}{p}，希望有关部门尽快处理，已经反映多次了。", "负面"))
            for p in PRAISE:
                out.append((f"{d}{s}{p}，感谢工作人员。", "正面"))
            out.append((f"请问{d}{s}的开放时间和办理流程是什么？", "中性"))
    return out


def _build(path: Path) -> None:
    """Write N_POSTS synthetic posts, N_EVENTS events and N_TICKETS tickets into a fresh data dir."""
    from alerts.events import service as event_service
    from alerts.rules.base import Match
    from alerts.tickets import service as ticket_service
    from analyze.segment import tokenize_for_search
    from core.records import AnalyzedPost, Entities, Sentiment, SentimentLabel, Source, Topic, WarningLevel
    from core.store.sqlite_posts import SqlitePostStore
    from core.wiring import Container
    from tests.support import embedded_settings

    tokenize = lru_cache(maxsize=None)(lambda s: tuple(tokenize_for_search(s)))
    store = SqlitePostStore(path / "posts.sqlite", tokenize=lambda s: list(tokenize(s)))
    store.ensure_schema()
    templates = _texts()
    rng = np.random.default_rng(7)
    span_s = DAYS * 86400
    # Newer posts are denser (a growing office), and every post id is unique.
    ages = np.sort(rng.random(N_POSTS) ** 1.3 * span_s)[::-1]
    picks = rng.integers(0, len(templates), N_POSTS)
    sources = rng.integers(0, len(SOURCES), N_POSTS)
    topics = rng.integers(0, len(TOPICS), N_POSTS)
    event_posts: list[AnalyzedPost] = []
    event_of = {int(i): f"E-bench-{k % N_EVENTS:04d}" for k, i in
                enumerate(rng.choice(np.arange(N_POSTS - 200_000, N_POSTS), N_EVENTS * POSTS_PER_EVENT,
                                     replace=False))}
    batch: list[AnalyzedPost] = []
    started = time.perf_counter()
    for i in range(N_POSTS):
        text, label = templates[int(picks[i])]
        district = DISTRICTS[int(picks[i]) // (len(templates) // len(DISTRICTS))]
        at = NOW - timedelta(seconds=float(ages[i]))
        score = 0.85 if label == "负面" else (0.1 if label == "正面" else 0.45)
        post = AnalyzedPost.model_construct(
            id=f"bench:{i}", source=Source(SOURCES[int(sources[i])]), external_id=str(i), title="", text=text,
            url=f"https://example.org/p/{i}", author_hash=f"h{i % 50_000}", author_display=f"用户{i % 50_000}",
            published_at=at, received_at=at, engagement=AnalyzedPost.model_fields["engagement"].get_default(
                call_default_factory=True), repost_of=None, place_hints=[], raw={}, text_norm=text, text_masked=text,
            title_masked="", tokens=list(tokenize(text)),
            sentiment=Sentiment(label=SentimentLabel(label), score=score), topic=Topic(l1=TOPICS[int(topics[i])]),
            entities=Entities(places=[district], districts=[district]), pii_found=[], signature=[],
            event_id=event_of.get(i), near_dup_of=None,
        )
        batch.append(post)
        if post.event_id:
            event_posts.append(post)
        if len(batch) >= BATCH:
            store.upsert(batch)
            batch = []
            if (i + 1) % 200_000 == 0:
                log.info("%d posts written (%.0f s)", i + 1, time.perf_counter() - started)
    if batch:
        store.upsert(batch)
    log.info("posts written in %.0f s", time.perf_counter() - started)
    store.close()

    container = Container(embedded_settings(path))
    try:
        container.sync_units()
        with container.db.transaction() as session:
            events = event_service.apply_posts(session, posts=event_posts)
        units = [u.id for u in container.router.units] or ["gov-a7"]
        with container.db.transaction() as session:
            for k, event in enumerate(sorted(events, key=lambda e: -e.heat)[:N_TICKETS]):
                level = WarningLevel(1 + k % 4)
                match = Match(rule="bench", event_id=event.id, level=level, reason="基准测试预警", at=NOW)
                ticket_service.open_or_update(
                    session, event=event, match=match, lead_unit=random.Random(k).choice(units),
                    cooperating_units=[], routing={"strategy": "bench"}, now=NOW - timedelta(hours=k))
    finally:
        container.close()


def _p95(fn: Callable[[], Any]) -> float:
    times = []
    fn()  # warm the page cache and the connection once
    for _ in range(CALLS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 95) * 1000)


def run(report: Callable[[str, Any], None]) -> None:
    """Build (or reuse) the store, then report the p95 latency in ms of each dashboard call."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.auth import passwords
    from core.auth.service import create_user
    from core.store import sqlite_posts
    from core.wiring import Container
    from tests.support import embedded_settings

    schema = hashlib.sha256(sqlite_posts._SCHEMA.encode()).hexdigest()[:10]
    root = CACHE / f"dashboard-{VERSION}-{schema}"
    done = root / "complete"
    if not done.exists():
        for old in CACHE.glob("dashboard-*"):  # stale caches (older generator or schema): 1 GB each
            shutil.rmtree(old)
        root.mkdir(parents=True)
        t0 = time.perf_counter()
        _build(root)
        done.write_text(VERSION)
        report("dashboard.build_s", time.perf_counter() - t0)
    container = Container(embedded_settings(root))
    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)
    try:
        container.sync_units()
        with container.db.transaction() as session:
            from sqlalchemy import select

            from core.db.models import UserRow

            if session.scalar(select(UserRow.id).where(UserRow.username == "bench-analyst")) is None:
                create_user(session, username="bench-analyst", password=PASSWORD, role="analyst")
        report("dashboard.posts", container.post_store.count())
        client = TestClient(create_app(container))
        r = client.post("/api/v1/auth/login", json={"username": "bench-analyst", "password": PASSWORD})
        r.raise_for_status()
        day = {"from": (NOW - timedelta(days=1)).isoformat(), "to": NOW.isoformat()}
        week = {"from": (NOW - timedelta(days=7)).isoformat(), "to": NOW.isoformat()}

        def get(path: str, **params: Any) -> Callable[[], Any]:
            def call() -> Any:
                resp = client.get(path, params=params)
                resp.raise_for_status()
                return resp.json()
            return call

        csrf = r.json()["csrf_token"]

        def preview() -> Any:
            resp = client.post("/api/v1/watchlists/preview", json={"expression": "(A3区 | A4区) & (停水停电 | 爆炸)"},
                               headers={"X-CSRF-Token": csrf})
            resp.raise_for_status()
            return resp.json()

        calls = {
            "overview_24h": get("/api/v1/stats/overview", **day),
            "overview_7d": get("/api/v1/stats/overview", **week),
            "events_top10": get("/api/v1/events", limit=10, samples=0),
            "events_page50": get("/api/v1/events", limit=50, samples=1),
            "posts_search_q": get("/api/v1/posts", q="化工厂", limit=20),
            "posts_search_q_7d_negative": get("/api/v1/posts", q="停水停电", sentiment="负面", limit=20,
                                              **week),
            "posts_latest": get("/api/v1/posts", limit=20),
            "keywords_negative_24h": get("/api/v1/stats/keywords", sentiment="负面", **day),
            "tickets_summary": get("/api/v1/tickets/summary"),
            "tickets_open_500": get("/api/v1/tickets", open="true", limit=500),
            "watchlist_preview_7d": preview,
        }
        for name, fn in calls.items():
            report(f"dashboard.p95_ms.{name}", _p95(fn))
    finally:
        container.close()
        passwords.configure()


if __name__ == "__main__":
    from bench.harness import report as _report

    logging.basicConfig(level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    run(_report)
