"""A send the broker never acknowledged is raised by the flush of the thread that sent it, and only there.

Threads of one process share the bus's producer (in ``yuqing run`` the API's ingest, the analyze stage and
dead-lettering all publish). If another thread's flush took the failure, the sending thread's flush would
come back clean and its worker would commit a batch that never arrived.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from core.bus.kafka import KafkaBus
from core.errors import BackendUnavailable
from tests.faults.scale import PrivateNoida

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


def _bus(bootstrap: str) -> KafkaBus:
    return KafkaBus(bootstrap=bootstrap, topic_prefix=f"d{uuid.uuid4().hex[:8]}.", partitions=1,
                    replication_factor=1, acks="all", linger_ms=5, batch_size=64 * 1024, compression="gzip",
                    max_poll_records=100, max_poll_interval_ms=60_000, session_timeout_ms=6_000,
                    request_timeout_ms=1_500, group_prefix=f"g{uuid.uuid4().hex[:8]}-")


def _in_thread(fn: Callable[[], object]) -> BaseException | None:
    """Run ``fn`` in a new thread; what it raised (None when it returned)."""
    outcome: list[BaseException | None] = [None]

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the test
            outcome[0] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    return outcome[0]


def test_a_failed_send_is_raised_by_the_sending_threads_flush_only(
    private_noida: PrivateNoida, caplog: pytest.LogCaptureFixture
) -> None:
    bus = _bus(private_noida.bootstrap)
    try:
        bus.publish("posts.raw", b"before", key="a")
        bus.flush(timeout_s=10)  # producer connected, topic known
        private_noida.stop_service("kafka")
        bus.publish("posts.raw", b"lost", key="b")  # queued by this thread; the broker is gone
        # Another thread flushes while that message expires: not its send, so no error for it ...
        assert _in_thread(lambda: bus.flush(timeout_s=15)) is None
        # ... and this thread hears of it on its next flush, once.
        with pytest.raises(BackendUnavailable, match="1 message\\(s\\) not delivered"):
            bus.flush(timeout_s=15)
        bus.flush(timeout_s=15)
        assert "replacing the producer" in caplog.text
        private_noida.start_service("kafka")
        # The failed producer was replaced: the next send goes through without a restart of the process.
        bus.publish("posts.raw", b"after", key="c")
        bus.flush(timeout_s=30)
        assert _values(private_noida.bootstrap, bus) == [b"before", b"after"]
    finally:
        if not private_noida.kafka_up():
            private_noida.start_service("kafka")
        bus.close()


def _values(bootstrap: str, bus: KafkaBus) -> list[bytes]:
    """Every message on the test's posts.raw, in order (one partition)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=6000)
    try:
        tp = TopicPartition(bus.topic_prefix + "posts.raw", 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()
