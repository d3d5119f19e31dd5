"""SqliteBus specifics beyond the shared contract: what survives a restart or a killed process, retention, 0600."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.bus.memory import partition_for
from core.bus.sqlite import BusInUse, SqliteBus
from core.errors import BackendUnavailable

REPO = Path(__file__).resolve().parents[3]


def drain(bus: SqliteBus, group: str, topics: list[str], *, commit: bool, want: int,
          timeout_s: float = 10.0) -> list[bytes]:
    consumer = bus.consumer(topics, group=group)
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        batch = consumer.poll(max_records=500, timeout_s=0.2)
        got.extend(m.value for m in batch)
        if batch and commit:
            consumer.commit()
    consumer.close()
    return got


def rows(path: Path, topic: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM messages WHERE topic = ?", (topic,)).fetchone()[0])


def test_uncommitted_messages_are_delivered_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    bus = SqliteBus(path, partitions=3)
    bus.publish_many("t", [(f"k{i}", f"m{i}".encode()) for i in range(30)])
    assert len(drain(bus, "g", ["t"], commit=False, want=30)) == 30  # polled, never committed
    bus.close()

    again = SqliteBus(path, partitions=3)
    assert again.recovered == 30
    assert sorted(drain(again, "g", ["t"], commit=True, want=30)) == sorted(f"m{i}".encode() for i in range(30))
    again.close()

    third = SqliteBus(path, partitions=3)
    assert third.recovered == 0
    assert drain(third, "g", ["t"], commit=True, want=1, timeout_s=0.5) == []
    third.close()


def test_messages_keep_key_order_headers_and_offsets_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    bus = SqliteBus(path, partitions=2)
    bus.publish("t", "舆情".encode(), key="a", headers={"reason": "坏 json"})
    bus.publish_many("t", [("a", b"a1"), ("a", b"a2")])
    bus.close()
    bus = SqliteBus(path, partitions=2)
    consumer = bus.consumer(["t"], group="g")
    got = consumer.poll(max_records=10, timeout_s=1)
    assert [m.value for m in got] == ["舆情".encode(), b"a1", b"a2"]
    assert got[0].headers == {"reason": "坏 json"}
    assert [m.offset for m in got] == [0, 1, 2]
    consumer.commit()
    consumer.close()
    bus.close()


def test_offsets_continue_after_everything_was_consumed_and_pruned(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    bus = SqliteBus(path, partitions=1)
    bus.publish_many("t", [(None, b"old")] * 5)
    assert len(drain(bus, "g", ["t"], commit=True, want=5)) == 5
    bus.close()
    assert rows(path, "t") == 0, "a fully committed partition is pruned"

    bus = SqliteBus(path, partitions=1)
    bus.publish("t", b"new")
    consumer = bus.consumer(["t"], group="g")
    got = consumer.poll(max_records=10, timeout_s=1)
    # Reusing offset 0 would put "new" below the group's commit (5) and it would never be delivered.
    assert [(m.value, m.offset) for m in got] == [(b"new", 5)]
    consumer.close()
    bus.close()


def test_a_subscribed_group_pins_messages_across_a_restart_until_it_commits(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    bus = SqliteBus(path, partitions=1)
    bus.consumer(["t"], group="slow").close()  # subscribed once, then gone
    bus.publish_many("t", [(None, f"x{i}".encode()) for i in range(2000)])
    assert len(drain(bus, "fast", ["t"], commit=True, want=2000)) == 2000
    bus.close()
    assert rows(path, "t") == 2000, "group 'slow' has read nothing yet"

    bus = SqliteBus(path, partitions=1)
    assert len(drain(bus, "slow", ["t"], commit=True, want=2000)) == 2000
    bus.close()
    assert rows(path, "t") == 0


def test_retention_topics_keep_only_their_newest_messages_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    bus = SqliteBus(path, partitions=1, retention={"ann": 100})
    for i in range(5):
        bus.publish_many("ann", [(None, f"{i}-{j}".encode()) for j in range(100)])
    assert bus.queued() == 0, "an announcement stream is not pipeline backlog"
    bus.close()
    assert 100 <= rows(path, "ann") < 200
    bus = SqliteBus(path, partitions=1, retention={"ann": 100})
    newest = drain(bus, "late-reader", ["ann"], commit=False, want=100)
    assert newest[-1] == b"4-99"
    bus.close()


def test_bus_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    old = os.umask(0o022)
    try:
        bus = SqliteBus(path)
        bus.publish("t", b"x")
        for name in ("bus.sqlite", "bus.sqlite-wal", "bus.sqlite.lock"):
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == 0o600, f"{name} is {oct(mode)}"
        bus.close()
    finally:
        os.umask(old)


def test_a_second_process_cannot_open_the_same_bus(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    bus = SqliteBus(path)
    code = f"from core.bus.sqlite import SqliteBus; SqliteBus({str(path)!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert out.returncode != 0
    assert "in use by another yuqing process" in out.stderr
    bus.close()


def test_a_second_open_in_the_same_process_is_refused_too(tmp_path: Path) -> None:
    first = SqliteBus(tmp_path / "bus.sqlite")
    with pytest.raises(BusInUse):
        SqliteBus(tmp_path / "bus.sqlite")
    first.close()
    SqliteBus(tmp_path / "bus.sqlite").close()  # released by close


def test_the_stored_partition_count_wins_so_keys_stay_in_their_partition(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    SqliteBus(path, partitions=3).close()
    bus = SqliteBus(path, partitions=8)
    assert bus.partitions == 3
    bus.close()


def test_publish_on_a_closed_bus_is_a_backend_error_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    bus = SqliteBus(path)
    bus.close()
    with pytest.raises(BackendUnavailable):
        bus.publish("t", b"late")
    assert rows(path, "t") == 0


PUBLISHER = textwrap.dedent("""
    import sys
    from core.bus.sqlite import SqliteBus
    bus = SqliteBus(sys.argv[1], partitions=4, synchronous=sys.argv[2])
    consumer = bus.consumer(["t"], group="g")
    i = 0
    while True:
        bus.publish_many("t", [(f"k{i + j}", f"m{i + j}".encode()) for j in range(10)])
        i += 10
        print(i, flush=True)  # everything below i was acknowledged
        if consumer.poll(max_records=7, timeout_s=0):
            consumer.commit()
""")


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_every_acknowledged_message_survives_kill_9(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "bus.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(path), synchronous], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    acknowledged = 0
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 3000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()

    bus = SqliteBus(path, partitions=4)
    with sqlite3.connect(path) as db:
        committed = dict(db.execute("SELECT part, off FROM commits WHERE grp = 'g'").fetchall())
    consumer = bus.consumer(["t"], group="g")
    seen: dict[bytes, tuple[int, int]] = {}
    while batch := consumer.poll(max_records=1000, timeout_s=0.5):
        seen.update((m.value, (m.partition, m.offset)) for m in batch)
    consumer.close()
    bus.close()

    assert sum(committed.values()) > 0, "the killed process had committed part of the stream"
    next_offset = [0, 0, 0, 0]
    for i in range(acknowledged):
        p = partition_for(f"k{i}", 4, 0)
        offset, next_offset[p] = next_offset[p], next_offset[p] + 1
        if offset < committed.get(p, 0):
            assert f"m{i}".encode() not in seen, f"m{i} was committed yet delivered again"
        else:
            assert seen.get(f"m{i}".encode()) == (p, offset), f"acknowledged m{i} was lost"


def test_embedded_mode_builds_the_durable_bus_in_the_data_dir(tmp_path: Path) -> None:
    from core.bus.memory import MemoryBus
    from core.settings import Settings
    from core.wiring import build_bus

    bus = build_bus(Settings(mode="embedded", data_dir=tmp_path))
    assert isinstance(bus, SqliteBus) and bus.path == tmp_path / "bus.sqlite"
    bus.close()
    memory = build_bus(Settings(mode="embedded", data_dir=tmp_path, bus_backend="memory"))
    assert type(memory) is MemoryBus
