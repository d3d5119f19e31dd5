"""kill -9 of an analyze worker mid-replay: every post stored once, events and tickets as in a clean run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.scale import FAULT_POSTS, demo_file, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.es, pytest.mark.postgres]


def test_killed_analyze_worker_restarts_without_loss_or_double_counting(
    deployments, kafka_bootstrap: str, es_url: str, tmp_path: Path
) -> None:
    n = FAULT_POSTS
    ids = demo_file(tmp_path / "demo.jsonl", n, seed=23)
    assert len(set(ids)) == n
    # One partition per topic: the event stage then sees posts in one order in both runs, so any difference
    # in events or tickets can only come from the crash (with several partitions the interleaving varies).
    # Small analyze batches: more commit points, so the kill lands between a publish and its commit.
    env = {"YUQING_ANALYZE__BATCH_SIZE": "16"}
    faulted = deployments(bootstrap=kafka_bootstrap, es_url=es_url, partitions=1, name="faulted", extra_env=env)
    clean = deployments(bootstrap=kafka_bootstrap, es_url=es_url, partitions=1, name="clean", extra_env=env)

    # Both runs at once (the clean one is the reference); only the faulted one is killed.
    analyze = faulted.worker("analyze", "analyze-1")
    faulted.worker("alerts", "alerts-1")
    clean.worker("analyze", "analyze-1")
    clean.worker("alerts", "alerts-1")
    # The replays run while the worker is killed: a crash in the middle of a stream, not after it.
    with ThreadPoolExecutor(max_workers=2) as pool:
        replays = [pool.submit(run.replay, tmp_path / "demo.jsonl", timeout_s=max(300.0, n / 20))
                   for run in (faulted, clean)]
        wait_for(lambda: faulted.topic_size("posts.analyzed") >= n // 3, timeout_s=max(300.0, n / 10),
                 every_s=0.3, what="a third of the posts analyzed before the kill")
        analyze.kill()
        done_at_kill = faulted.topic_size("posts.analyzed")
        for replay in replays:
            replay.result()
    assert done_at_kill < n, "the worker finished before it could be killed: raise YUQING_FAULT_POSTS"
    faulted.evict_members("analyze")  # what the broker's session timeout does (noida-db does not)
    faulted.worker("analyze", "analyze-2")
    faulted.wait_drained(n, timeout_s=max(600.0, n / 10))
    clean.wait_drained(n, timeout_s=max(300.0, n / 10))

    got, want = faulted.outcome(), clean.outcome()
    # Exactly once: every post is a member of one event, counted once, and stored once.
    assert got.member_posts == set(ids)
    assert got.member_rows == n and got.size_total == n
    assert faulted.es_count() == n and faulted.es_ids(ids) == set(ids)
    # The same effects as the clean run: the same events (by member set) with the same heat, the same tickets.
    assert got.events == want.events
    assert got.tickets == want.tickets
    assert got.tickets_per_event_max <= 1
    assert want.tickets > 0, "the input should open at least one ticket, or the comparison proves little"
    redelivered = faulted.topic_size("posts.analyzed") - n
    print(f"kill at {done_at_kill}/{n} analyzed; {redelivered} analyzed twice after the restart")
