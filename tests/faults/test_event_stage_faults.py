"""The event stage under backend faults: Elasticsearch down for 30 s, PostgreSQL connections terminated.

Both feed the same pre-analyzed demo posts to ``posts.analyzed`` and run the event stage's StageWorker
(what ``yuqing worker alerts`` runs) in this process, so the test can see its retries and what it polled.
A second deployment on the shared servers runs the same input without faults as the reference.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.faults.scale import PrivateNoida, analyzed_items, event_worker, publish, terminate_backends, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.es, pytest.mark.postgres]

OUTAGE_S = 30.0
MAX_POLL = 20
KILLS = 4


def _assert_exactly_once(scale: Any, posts: list[Any]) -> None:
    ids = {p.id for p in posts}
    got = scale.outcome()
    assert got.member_posts == ids
    assert got.member_rows == len(ids) and got.size_total == len(ids), "a post was counted twice"
    assert scale.es_count() == len(ids) and scale.es_ids(ids) == ids
    assert got.tickets_per_event_max <= 1, "an event got two tickets"


def test_elasticsearch_outage_is_retried_without_polling_more_and_catches_up(
    deployments, private_noida: PrivateNoida, kafka_bootstrap: str, es_url: str, analyzed_demo: list[Any]
) -> None:
    posts, first = analyzed_demo, 30
    n = len(posts)
    scale = deployments(bootstrap=private_noida.bootstrap, es_url=private_noida.es_url, partitions=1, name="es")
    reference = deployments(bootstrap=kafka_bootstrap, es_url=es_url, partitions=1, name="reference")
    with event_worker(scale, batch_size=MAX_POLL) as (worker, polled, errors), \
            event_worker(reference, batch_size=MAX_POLL):
        publish(reference, "posts.analyzed", analyzed_items(posts))
        publish(scale, "posts.analyzed", analyzed_items(posts[:first]))
        wait_for(lambda: scale.member_count() >= first and scale.es_count() >= first, timeout_s=180,
                 what="the first posts stored before the outage")

        private_noida.stop_service("elasticsearch")
        down_at = time.monotonic()
        publish(scale, "posts.analyzed", analyzed_items(posts[first:]))
        wait_for(lambda: worker.stats.retries >= 1 or errors, timeout_s=OUTAGE_S, every_s=0.2,
                 what="a batch retried while Elasticsearch is down")
        assert not errors, f"the worker loop ended: {errors[0]!r}"
        in_memory = polled.polled
        while time.monotonic() - down_at < OUTAGE_S:
            assert worker.alive and not errors
            assert polled.polled == in_memory, "the worker polled more while its batch was being retried"
            time.sleep(0.5)
        retries_during_outage = worker.stats.retries
        # Bounded memory: at most one poll's worth beyond what was stored before the outage.
        assert in_memory - first <= MAX_POLL
        assert in_memory < n, "everything was polled before the outage: the test proves nothing"

        private_noida.start_service("elasticsearch")
        back_at = time.monotonic()
        wait_for(lambda: scale.es_count() >= n and scale.member_count() >= n, timeout_s=120,
                 what="catching up after Elasticsearch came back")
        catch_up_s = time.monotonic() - back_at
        wait_for(lambda: scale.group_lag("alerts", "posts.analyzed") == 0, timeout_s=60, what="the final commit")
        wait_for(lambda: reference.member_count() >= n and reference.es_count() >= n, timeout_s=180,
                 what="the reference run")
    _assert_exactly_once(scale, posts)
    got, want = scale.outcome(), reference.outcome()
    assert got.events == want.events and got.tickets == want.tickets
    print(f"es outage: {retries_during_outage} retries in {OUTAGE_S:.0f}s, {in_memory - first} messages held, "
          f"caught up {catch_up_s:.1f}s after Elasticsearch returned")


def test_terminated_database_connections_are_retried_without_duplicate_tickets(
    deployments, kafka_bootstrap: str, es_url: str, analyzed_demo: list[Any]
) -> None:
    posts = analyzed_demo
    n = len(posts)
    scale = deployments(bootstrap=kafka_bootstrap, es_url=es_url, partitions=1, name="pg")
    reference = deployments(bootstrap=kafka_bootstrap, es_url=es_url, partitions=1, name="reference")
    terminated = 0
    stop = threading.Event()

    def terminator() -> None:
        # Cut the stage's connections in the middle of its transactions, KILLS times, then let it recover.
        nonlocal terminated
        while not stop.is_set() and terminated < KILLS:
            terminated += terminate_backends(scale.db_url, busy_only=True)
            stop.wait(0.02)

    with event_worker(scale, batch_size=10) as (worker, _, errors), event_worker(reference, batch_size=10):
        publish(reference, "posts.analyzed", analyzed_items(posts))
        killer = threading.Thread(target=terminator, daemon=True)
        killer.start()
        try:
            publish(scale, "posts.analyzed", analyzed_items(posts))
            wait_for(lambda: terminated >= KILLS or errors or not worker.alive, timeout_s=120,
                     every_s=0.2, what=f"{KILLS} writes interrupted")
        finally:
            stop.set()
            killer.join(10)
        assert not errors, (f"the event worker stopped on a dropped database connection instead of retrying the "
                            f"batch: {type(errors[0]).__name__}: {str(errors[0])[:300]}")
        wait_for(lambda: scale.member_count() >= n and scale.es_count() >= n, timeout_s=180,
                 what="every post stored after the connection kills")
        wait_for(lambda: reference.member_count() >= n and reference.es_count() >= n, timeout_s=180,
                 what="the reference run")
        retries = worker.stats.retries
    assert terminated > 0
    assert retries >= 1, "no write was interrupted: the fault did not happen"
    _assert_exactly_once(scale, posts)
    got, want = scale.outcome(), reference.outcome()
    assert got.tickets == want.tickets, "a retried ticket write changed how many tickets exist"
    assert got.events == want.events
    print(f"pg: {terminated} backends terminated, {retries} batch retries")
