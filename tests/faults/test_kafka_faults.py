"""Kafka faults with real worker processes: the broker restarts mid-stream; an analyze worker leaves its group."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from tests.faults.scale import EVENT_POSTS, PrivateNoida, demo_posts, publish, raw_items, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.es, pytest.mark.postgres]

SMALL_BATCHES = {"YUQING_ANALYZE__BATCH_SIZE": "16"}


def _assert_exactly_once(scale: Any, ids: set[str]) -> None:
    got = scale.outcome()
    assert got.member_posts == ids, f"{len(ids - got.member_posts)} post(s) lost"
    assert got.member_rows == len(ids) and got.size_total == len(ids), "a post was counted twice"
    assert scale.es_count() == len(ids) and scale.es_ids(ids) == ids
    assert got.tickets_per_event_max <= 1


def _publish_in_background(scale: Any, posts: list[Any], progress: list[int], result: dict[str, Any],
                           go: threading.Event | None = None, head: int = 0) -> threading.Thread:
    """Publish ``posts[:head]`` at once, then (after ``go``) the rest 10 every 0.3 s, as a source would."""

    def run() -> None:
        try:
            resent = publish(scale, "posts.raw", raw_items(posts[:head])) if head else 0
            progress.append(head)
            if go is not None:
                go.wait(300)
            resent += publish(scale, "posts.raw", raw_items(posts[head:]), chunk=10, pause_s=0.3,
                              on_chunk=lambda sent: progress.append(head + sent))
            result["resent"] = resent
        except BaseException as exc:  # surfaced by the test after join()
            result["error"] = exc

    thread = threading.Thread(target=run, name="publisher", daemon=True)
    thread.start()
    return thread


def test_kafka_restart_mid_stream_loses_no_post(deployments, private_noida: PrivateNoida) -> None:
    posts = demo_posts(EVENT_POSTS, seed=41)
    n = len(posts)
    scale = deployments(bootstrap=private_noida.bootstrap, es_url=private_noida.es_url, partitions=2,
                        name="kafka", extra_env=SMALL_BATCHES)
    analyze = scale.worker("analyze")
    alerts = scale.worker("alerts")
    progress: list[int] = []
    result: dict[str, Any] = {}
    go = threading.Event()
    publisher = _publish_in_background(scale, posts, progress, result, go=go, head=n // 3)
    wait_for(lambda: scale.topic_size("posts.analyzed") > 0, timeout_s=180, every_s=0.5,
             what="the analyze stage under way before the broker stops")
    go.set()
    wait_for(lambda: progress[-1] >= n // 2, timeout_s=60, every_s=0.1, what="half of the stream published")

    private_noida.stop_service("kafka")
    stopped_at = progress[-1]
    threading.Event().wait(8.0)  # the source, the analyze and the event stage all hit the outage
    private_noida.start_service("kafka")

    publisher.join(240)
    assert not publisher.is_alive() and "error" not in result, f"publisher failed: {result.get('error')!r}"
    assert stopped_at < n, "the stream ended before the broker stopped"
    scale.wait_drained(n, timeout_s=420)
    assert analyze.alive() and alerts.alive(), "a worker process died instead of waiting for the broker"
    _assert_exactly_once(scale, {p.id for p in posts})
    print(f"kafka restart after {stopped_at}/{n} published; the source re-sent {result['resent']} chunk(s)")


def test_two_analyze_workers_share_partitions_and_one_takes_over(
    deployments, kafka_bootstrap: str, es_url: str
) -> None:
    posts = demo_posts(EVENT_POSTS, seed=43)
    n, warm = len(posts), 20
    scale = deployments(bootstrap=kafka_bootstrap, es_url=es_url, partitions=4, name="group",
                        extra_env=SMALL_BATCHES)
    first, second = scale.worker("analyze", "analyze-a"), scale.worker("analyze", "analyze-b")
    scale.worker("alerts")
    publish(scale, "posts.raw", raw_items(posts[:warm]))
    scale_members = lambda: scale.group_members("analyze")  # noqa: E731

    def shared() -> bool:
        members = scale_members()
        parts = [p for p in members.values() if p]
        return len(members) == 2 and len(parts) == 2 and set().union(*parts) == {0, 1, 2, 3} \
            and not parts[0] & parts[1]

    wait_for(shared, timeout_s=180, what="two members splitting the four partitions")
    wait_for(lambda: scale.member_count() >= warm, timeout_s=240, what="the warm-up posts processed")

    progress: list[int] = []
    result: dict[str, Any] = {}
    publisher = _publish_in_background(scale, posts[warm:], progress, result)
    wait_for(lambda: progress and progress[-1] >= (n - warm) // 3, timeout_s=120, every_s=0.2,
             what="a third of the rest published")
    first.stop()  # SIGTERM: finishes its batch, commits, leaves the group
    assert not first.alive()
    assert first.proc.returncode == 0, f"SIGTERM did not end the worker cleanly:\n{first.log()[-3000:]}"
    took_over = lambda: list(scale_members().values()) == [{0, 1, 2, 3}]  # noqa: E731
    try:
        try:
            wait_for(took_over, timeout_s=60, what="the remaining worker owning every partition")
        except AssertionError:
            # The leaver exited cleanly (asserted above), so its LeaveGroup was sent; noida-db 0.2.3 sometimes
            # keeps a member that left mid-rebalance and never expires it. A real broker drops such a member
            # after session.timeout.ms (10 s here): do what the broker would and let the live worker rejoin.
            logging.getLogger(__name__).warning("group still holds the leaver after 60 s: %s; evicting",
                                                scale_members())
            scale.evict_members("analyze")
            wait_for(took_over, timeout_s=120, what="the remaining worker owning every partition")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; members: {scale_members()}\nleaver's log:\n{first.log()[-3000:]}"
                             f"\nremaining worker's log:\n{second.log()[-3000:]}") from None
    publisher.join(240)
    assert "error" not in result, f"publisher failed: {result.get('error')!r}"
    scale.wait_drained(n, timeout_s=420)
    assert second.alive()
    _assert_exactly_once(scale, {p.id for p in posts})
