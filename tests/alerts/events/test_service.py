"""alerts.events.service: idempotent event aggregates on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select

from alerts.events import service
from core.db.models import EventMemberRow, EventRow
from core.db.session import Database
from core.records import AnalyzedPost, Engagement, Entities, Event, Sentiment, SentimentLabel, Topic, post_id

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards; skip if the server is unreachable."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the scale extra is installed in the dev venv
        pytest.skip("psycopg not installed (pip install -e '.[scale]')")
    name = f"yq_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3,
                                autocommit=True)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at 127.0.0.1:5432 (user postgres) unreachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3,
                             autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pg_database() -> Iterator[Database]:
    """One fresh PostgreSQL database for this module (emptied before each test by ``db``)."""
    gen = _pg_database()
    database = Database(next(gen))
    try:
        database.migrate()
        yield database
    finally:
        database.close()
        with pytest.raises(StopIteration):
            next(gen)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'events.db'}")
        database.migrate()
        yield database
        database.close()
        return
    database = request.getfixturevalue("pg_database")
    with database.transaction() as s:
        s.execute(delete(EventMemberRow))
        s.execute(delete(EventRow))
    yield database


def make_post(
    n: int, *, event_id: str | None = "ev-a", minutes: int = 0, author: str | None = None, likes: int = 0,
    negative: bool = True, topic: str = "城乡建设", places: tuple[str, ...] = ("丽发新城小区",),
    title: str = "", source: str = "weibo",
) -> AnalyzedPost:
    ext = f"ext-{n}"
    label = SentimentLabel.negative if negative else SentimentLabel.neutral
    return AnalyzedPost(
        id=post_id(source, ext), source=source, external_id=ext,
        title=title, text=f"张三 13812345678 反映丽发新城搅拌站噪音 {n}",
        text_masked=f"张* 138****5678 反映丽发新城搅拌站噪音 {n}", title_masked=title,
        author_hash=author if author is not None else f"author-{n}",
        published_at=T0 + timedelta(minutes=minutes), engagement=Engagement(likes=likes),
        sentiment=Sentiment(label=label, score=0.9 if negative else 0.5), topic=Topic(l1=topic),
        entities=Entities(places=list(places), districts=["A2区"]), event_id=event_id,
    )


def rows_snapshot(db: Database) -> tuple[list[dict], list[tuple]]:
    with db.transaction() as s:
        events = [
            {c.name: getattr(r, c.name) for c in EventRow.__table__.columns if c.name != "updated_at"}
            for r in s.scalars(select(EventRow).order_by(EventRow.id))
        ]
        members = [tuple(r) for r in s.execute(
            select(EventMemberRow.post_id, EventMemberRow.event_id, EventMemberRow.author_hash,
                   EventMemberRow.negative).order_by(EventMemberRow.post_id))]
    return events, members


def test_aggregates_of_one_event(db: Database) -> None:
    posts = [
        make_post(1, minutes=0, author="u1", likes=3, title="丽发新城搅拌站噪音扰民"),
        make_post(2, minutes=30, author="u1", likes=50),
        make_post(3, minutes=90, author="u2", likes=7, negative=False, topic="环境保护"),
        make_post(4, minutes=95, author="u3", likes=1, places=("丽发新城小区", "暮云街道")),
    ]
    with db.transaction() as s:
        events = service.apply_posts(s, posts=posts)
    assert [e.id for e in events] == ["ev-a"]
    e = events[0]
    assert (e.size, e.unique_authors, e.engagement, e.negative_count) == (4, 3, 61, 3)
    assert e.first_seen == T0 and e.last_seen == T0 + timedelta(minutes=95)
    assert e.heat_series == {"2024-05-01T08:00:00+00:00": 2, "2024-05-01T09:00:00+00:00": 2}
    assert e.topic == "城乡建设"
    assert e.places[0] == "丽发新城小区" and "暮云街道" in e.places
    assert e.districts == ["A2区"]
    assert e.sources == {"weibo": 4}
    assert e.representative_ids[:2] == [posts[1].id, posts[2].id]  # most engaged first
    assert e.title == "丽发新城搅拌站噪音扰民"
    assert 0 < e.heat < 100
    with db.transaction() as s:
        assert service.get_event(s, event_id="ev-a") == e
        assert service.get_event(s, event_id="ev-missing") is None


def test_redelivery_changes_nothing(db: Database) -> None:
    posts = [make_post(i, minutes=7 * i, author=f"u{i % 3}", likes=i) for i in range(6)]
    posts += [make_post(10 + i, event_id="ev-b", minutes=3 * i, places=()) for i in range(3)]
    with db.transaction() as s:
        first = service.apply_posts(s, posts=posts)
    before = rows_snapshot(db)
    with db.transaction() as s:
        again = service.apply_posts(s, posts=posts)
    with db.transaction() as s:  # a partial redelivery inside a new batch changes nothing either
        mixed = service.apply_posts(s, posts=[*posts[2:4], posts[2]])
    assert again == [] and mixed == []
    assert rows_snapshot(db) == before
    assert {e.id: e.size for e in first} == {"ev-a": 6, "ev-b": 3}


def test_order_of_arrival_does_not_change_the_aggregates(db: Database) -> None:
    def batch(event_id: str, source: str) -> list[AnalyzedPost]:
        return [make_post(i, event_id=event_id, source=source, minutes=11 * i, author=f"u{i % 4}",
                          likes=(i * 7) % 5, negative=i % 2 == 0, title=f"标题{i}") for i in range(8)]

    split_posts, whole_posts = batch("ev-split", "forum"), batch("ev-whole", "news")
    with db.transaction() as s:
        service.apply_posts(s, posts=split_posts[4:])
    with db.transaction() as s:
        service.apply_posts(s, posts=list(reversed(split_posts[:4])))
    with db.transaction() as s:
        service.apply_posts(s, posts=whole_posts)
    with db.transaction() as s:
        split = service.get_event(s, event_id="ev-split")
        whole = service.get_event(s, event_id="ev-whole")
    assert split is not None and whole is not None
    ignore = {"id", "sources", "representative_ids"}
    assert split.model_dump(exclude=ignore) == whole.model_dump(exclude=ignore)
    index = {p.id: i for i, p in enumerate(split_posts)} | {p.id: i for i, p in enumerate(whole_posts)}
    assert [index[r] for r in split.representative_ids] == [index[r] for r in whole.representative_ids]
    assert split.title == "标题0"  # the earliest post's masked title, whatever arrived first


def test_title_never_uses_unmasked_text(db: Database) -> None:
    with db.transaction() as s:
        (event,) = service.apply_posts(s, posts=[make_post(1)])
    assert "13812345678" not in event.title and "张三" not in event.title
    assert event.title.startswith("张* 138****5678")


def test_posts_without_event_are_ignored_and_list_orders(db: Database) -> None:
    hot = [make_post(i, event_id="ev-hot", minutes=i, likes=100) for i in range(10)]
    cold = [make_post(100, event_id="ev-cold", minutes=-600, negative=False)]
    with db.transaction() as s:
        service.apply_posts(s, posts=[*hot, *cold, make_post(999, event_id=None)])
    with db.transaction() as s:
        assert [e.id for e in service.list_events(s, limit=10, offset=0)] == ["ev-hot", "ev-cold"]
        assert [e.id for e in service.list_events(s, limit=10, offset=0, order="first_seen")] == [
            "ev-hot", "ev-cold"]
        assert [e.id for e in service.list_events(s, limit=1, offset=1)] == ["ev-cold"]
        assert [e.id for e in service.list_events(s, limit=10, offset=0, since=T0)] == ["ev-hot"]
        assert s.get(EventMemberRow, make_post(999).id) is None
        with pytest.raises(ValueError, match="unknown order"):
            service.list_events(s, limit=10, offset=0, order="bogus")


def test_heat_grows_with_the_event(db: Database) -> None:
    heats = []
    for i in range(5):
        with db.transaction() as s:
            (event,) = service.apply_posts(s, posts=[make_post(i, minutes=i, likes=10)])
        heats.append(event.heat)
    assert heats == sorted(heats) and heats[0] < heats[-1]


@pytest.mark.postgres
def test_two_workers_racing_on_the_same_posts_count_them_once(pg_database: Database) -> None:
    import threading

    db = pg_database
    with db.transaction() as s:
        s.execute(delete(EventMemberRow))
        s.execute(delete(EventRow))
    posts = [make_post(i, event_id="ev-race", minutes=i, author=f"u{i % 5}", likes=1) for i in range(40)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(batch: list[AnalyzedPost]) -> None:
        try:
            barrier.wait(timeout=10)
            with db.transaction() as s:
                service.apply_posts(s, posts=batch)
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(posts,)),
               threading.Thread(target=worker, args=(list(reversed(posts)),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    with db.transaction() as s:
        event = service.get_event(s, event_id="ev-race")
    assert event is not None
    assert (event.size, event.unique_authors, event.engagement) == (40, 5, 40)


def _mixed_stream() -> list[AnalyzedPost]:
    """Three events, out-of-order times in two time zones, repeated authors and anonymous posts, a repost,
    and the same post twice."""
    cst = timezone(timedelta(hours=8))
    posts = []
    for i in range(24):
        post = make_post(i, event_id=f"ev-{'abc'[i % 3]}", minutes=(i * 37) % 50 - 20, author=f"u{i % 4}",
                         likes=(i * 13) % 7, negative=i % 3 != 1, title=f"标题{i % 5}" if i % 2 else "",
                         places=("丽发新城小区", "暮云街道")[: 1 + i % 2])
        if i % 4 == 1:
            post = post.model_copy(update={"published_at": post.published_at.astimezone(cst)})
        if i % 7 == 3:
            post = post.model_copy(update={"author_hash": None})
        if i == 9:
            post = post.model_copy(update={"repost_of": "ext-2"})
        posts.append(post)
    # The newest post of ev-a in +08:00, then an older one: the event seen after the older post is in UTC.
    latest = make_post(50, event_id="ev-a", minutes=100, author="u9")
    posts += [latest.model_copy(update={"published_at": latest.published_at.astimezone(cst)}),
              make_post(51, event_id="ev-a", minutes=1, author="u8")]
    return [*posts[:10], posts[4], *posts[10:]]


def test_a_batch_gives_what_one_call_per_post_gives(db: Database, tmp_path) -> None:
    """EventBatch (the event stage's path: one batch, one post at a time) equals one apply_posts call per post,
    each in its own transaction: the same event after every post and the same rows at the end."""
    posts = _mixed_stream()
    one_by_one: list[Event | None] = []
    for post in posts:
        with db.transaction() as s:
            one_by_one.append(next(iter(service.apply_posts(s, posts=[post])), None))
    expected = rows_snapshot(db)
    with db.transaction() as s:
        s.execute(delete(EventMemberRow))
        s.execute(delete(EventRow))
    # Half of the stream was counted before (a redelivered batch overlaps what the last one stored).
    with db.transaction() as s:
        for post in posts[:6]:
            batch = service.EventBatch(s, [post])
            batch.apply([post])
            batch.finish()
    batched: list[Event | None] = one_by_one[:6]
    with db.transaction() as s:
        batch = service.EventBatch(s, posts)
        batched += [batch.apply([post]) for post in posts[6:]]
        batch.finish()
    assert [e and e.model_dump_json() for e in batched] == [e and e.model_dump_json() for e in one_by_one]
    assert rows_snapshot(db) == expected
    assert sum(e is None for e in batched) == 1  # the repeated post counts once
