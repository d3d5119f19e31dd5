"""KafkaBus specifics beyond the shared contract (needs the Kafka test server for the broker tests)."""

from __future__ import annotations

import importlib.util
import socket
import uuid

import pytest

from core.bus.kafka import KafkaBus
from core.errors import BackendUnavailable


def build(bootstrap: str, **kw: object) -> KafkaBus:
    args: dict[str, object] = dict(
        bootstrap=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=3, replication_factor=1,
        acks="all", linger_ms=5, batch_size=64 * 1024, compression="gzip", max_poll_records=100,
        max_poll_interval_ms=60_000, session_timeout_ms=6_000, request_timeout_ms=10_000,
        group_prefix=f"g{uuid.uuid4().hex[:8]}-")
    args.update(kw)
    return KafkaBus(**args)  # type: ignore[arg-type]


@pytest.mark.kafka
def test_topics_are_prefixed_and_created_with_the_configured_partitions(kafka_bootstrap: str) -> None:
    from kafka import KafkaAdminClient

    bus = build(kafka_bootstrap)
    bus.ensure_topics(["posts.raw"])
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    try:
        described = admin.describe_topics([bus.topic_prefix + "posts.raw"])
        assert len(described[0]["partitions"]) == 3
    finally:
        admin.close()
    bus.ensure_topics(["posts.raw"])  # existing topic: no error
    bus.close()


@pytest.mark.kafka
@pytest.mark.parametrize("retention_ms", [None, 900_000])
def test_topics_get_the_configured_retention(kafka_bootstrap: str, retention_ms: int | None) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    bus = build(kafka_bootstrap, retention_ms=retention_ms)
    bus.ensure_topics(["posts.raw"])
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    try:
        name = bus.topic_prefix + "posts.raw"
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                           ["retention.ms", "segment.ms"])])
    finally:
        admin.close()
        bus.close()
    configs = described["topic"][name]  # kafka-python 3: {type: {name: {config: {...}}}}
    if retention_ms is None:  # not set on the topic: the broker's defaults apply
        assert all(entry["config_source"] != "DYNAMIC_TOPIC_CONFIG" for entry in configs.values())
    else:
        assert configs["retention.ms"]["value"] == str(retention_ms)
        assert configs["segment.ms"]["value"] == str(retention_ms // 4)  # segments roll, so retention can drop them
        assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"


@pytest.mark.kafka
def test_an_idle_member_does_not_spin_and_still_picks_up_at_once(kafka_bootstrap: str) -> None:
    import resource
    import time

    def cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    bus = build(kafka_bootstrap)
    consumer = bus.consumer(["idle"], group="idle")
    try:
        for _ in range(30):  # join the group and own the partitions
            consumer.poll(timeout_s=0.5)
            if consumer.assignment():
                break
        assert consumer.assignment()
        started_cpu, started = cpu_s(), time.monotonic()
        while time.monotonic() - started < 3.0:
            assert consumer.poll(timeout_s=1.0) == []
        # A broker that answers empty fetches at once made kafka-python's wait spin a core (3 s of CPU here).
        assert cpu_s() - started_cpu < 1.0
        bus.publish("idle", b"wake up", key="k")
        bus.flush(timeout_s=10)
        got: list[bytes] = []
        for _ in range(20):
            got += [m.value for m in consumer.poll(timeout_s=0.5)]
            if got:
                break
        assert got == [b"wake up"]
    finally:
        consumer.close()
        bus.close()


@pytest.mark.kafka
def test_gzip_compressed_messages_round_trip(kafka_bootstrap: str) -> None:
    bus = build(kafka_bootstrap, compression="gzip")
    consumer = bus.consumer(["z"], group="gz")
    bus.publish_many("z", [(f"k{i}", ("舆情" * 200 + str(i)).encode()) for i in range(50)])
    bus.flush()
    got = []
    for _ in range(40):
        got += consumer.poll(max_records=100, timeout_s=0.5)
        if len(got) >= 50:
            break
    assert sorted(m.value for m in got) == sorted(("舆情" * 200 + str(i)).encode() for i in range(50))
    assert all(m.topic == "z" for m in got), "callers see topic names without the prefix"
    assert consumer.lag() == 50
    consumer.commit()
    assert consumer.lag() == 0
    consumer.close()
    bus.close()


def test_unreachable_broker_raises_backend_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    bus = build(f"127.0.0.1:{port}", request_timeout_ms=1_500)
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}"):
        bus.publish("posts.raw", b"x")
    with pytest.raises(BackendUnavailable):
        bus.consumer(["posts.raw"], group="g")


@pytest.mark.skipif(importlib.util.find_spec("lz4") is not None, reason="lz4 is installed here")
def test_codec_without_its_package_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="lz4"):
        build("127.0.0.1:9", compression="lz4")


@pytest.mark.kafka
def test_a_producer_stuck_in_a_fatal_state_is_replaced(kafka_bootstrap: str) -> None:
    from kafka.errors import KafkaError

    bus = build(kafka_bootstrap)
    bus.publish("posts.raw", b"first", key="a")
    bus.flush(timeout_s=10)
    # What kafka-python does to an idempotent producer after a non-retriable error: every later send fails.
    bus._producer._transaction_manager.transition_to_fatal_error(KafkaError("simulated fatal error"))
    with pytest.raises(BackendUnavailable):
        bus.publish("posts.raw", b"second", key="b")
        bus.flush(timeout_s=10)
    bus.publish("posts.raw", b"second", key="b")  # the retry, on a fresh producer
    bus.flush(timeout_s=10)
    consumer = bus.consumer(["posts.raw"], group="fatal")
    got: list[bytes] = []
    for _ in range(30):
        got += [m.value for m in consumer.poll(max_records=10, timeout_s=1.0)]
        if len(got) >= 2:
            break
    consumer.close()
    bus.close()
    assert sorted(got) == [b"first", b"second"]
