"""Helpers shared by tests: an embedded yuqing (container + pipeline + app) on a temporary data dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.runtime import Pipeline
from core.settings import Settings
from core.wiring import Container


def embedded_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Embedded settings on a private data dir (never the user's ./data)."""
    base: dict[str, Any] = {"mode": "embedded", "data_dir": tmp_path, "database_url": ""}
    base.update(overrides)
    return Settings(**base)


@contextmanager
def embedded(tmp_path: Path, *, start: bool = True, **overrides: Any) -> Iterator[tuple[Container, Pipeline]]:
    """A running embedded pipeline; stopped and closed afterwards."""
    container = Container(embedded_settings(tmp_path, **overrides))
    pipeline = Pipeline(container)
    if start:
        pipeline.start(kinds=["analyze", "alerts"])
    try:
        yield container, pipeline
    finally:
        pipeline.stop()
        container.close()


def make_token(container: Container, username: str, role: str, *, unit_id: str | None = None) -> str:
    """Create a user (units synced first) and return an API token for it."""
    from core.auth.service import create_token, create_user

    container.sync_units()
    with container.db.transaction() as session:
        user = create_user(session, username=username, password=f"pw-{username}-0123456789", role=role,
                           unit_id=unit_id)
        return create_token(session, user_id=user.id, name=f"{username}-tests")


def bearer(token: str) -> dict[str, str]:
    """Authorization header for an API token."""
    return {"Authorization": f"Bearer {token}"}


def post_record(external_id: str, text: str, *, source: str = "weibo", minutes: float = 0.0,
                base: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """One record in the project's post JSONL shape."""
    at = (base or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)) + timedelta(minutes=minutes)
    record = {"source": source, "external_id": external_id, "text": text, "published_at": at.isoformat(),
              "author": extra.pop("author", f"user-{external_id}")}
    record.update(extra)
    return record


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write records as JSON lines."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


INCIDENT = "A7县化工园区一化工厂发生爆炸，现场浓烟滚滚，已有人员受伤送医，周边居民闻到刺鼻气味，请政府尽快公布情况！"
BACKGROUND = [
    "今天A1区的桂花开了，公园里人很多，周末带孩子去玩很开心。",
    "A2区新开的图书馆环境不错，借书很方便，点赞。",
    "A4区地铁站附近的早餐店味道很好，价格也实惠。",
    "A5区今天的马拉松比赛组织得很好，志愿者很热情。",
    "A6区社区医院的医生态度很好，看病排队时间短了很多。",
    "咨询一下A3区的公积金贷款额度怎么计算，谢谢。",
]


def incident_stream(n_incident: int = 20) -> list[dict[str, Any]]:
    """Background chatter plus one explosion incident: an original, reposts and copy-paste variants."""
    records = [post_record(f"bg-{i}", text, minutes=i * 3) for i, text in enumerate(BACKGROUND)]
    records.append(post_record("inc-0", INCIDENT, minutes=20, engagement={"reposts": 300, "comments": 120,
                                                                          "likes": 800, "dislikes": 0}))
    for i in range(1, n_incident):
        variant = INCIDENT if i % 2 else INCIDENT.replace("请政府", "希望有关部门")
        records.append(post_record(f"inc-{i}", f"转发：{variant}" if i % 3 == 0 else variant, minutes=20 + i,
                                   repost_of="inc-0" if i % 3 == 0 else None,
                                   engagement={"reposts": 30 * i, "comments": 10 * i, "likes": 50 * i,
                                               "dislikes": 0}))
    return records
