"""The mailbox's big matters rank in the top 10 events, each mostly in one event (``yuqing eval events``'s
replay of ``../shared/data/mailbox/messages.jsonl`` plus the labelled letters)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from analyze.events_cli import DEFAULT_LABELS, _read_jsonl, replay_mailbox

MAILBOX = Path(__file__).resolve().parents[4] / "shared" / "data" / "mailbox" / "messages.jsonl"
TOP = 10

pytestmark = [pytest.mark.slow, pytest.mark.shared]


@pytest.fixture(scope="module")
def replayed() -> tuple[list[dict], dict[str, str]]:
    if not MAILBOX.exists():
        pytest.skip(f"{MAILBOX} not present: the mailbox letters live in ../shared")
    rows, _ = _read_jsonl(MAILBOX)
    if DEFAULT_LABELS.exists():
        labelled, _ = _read_jsonl(DEFAULT_LABELS)
        present = {r["id"] for r in rows}
        rows.extend(r for r in labelled if r["id"] not in present)
    event_of, _ = replay_mailbox(rows)
    return rows, event_of


def _ranks(event_of: dict[str, str]) -> dict[str, int]:
    sizes = Counter(event_of.values())
    return {e: i for i, (e, _) in enumerate(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])), 1)}


@pytest.mark.parametrize("name", [
    "丽发新城",  # the mixing plant's noise and dust
    "伊景园滨河苑",  # parking spaces bundled with the staff flats; its employer's side (广铁集团) merged in
    "魅力之城",  # the night market's smoke
    "58车贷",  # 展星投资有限公司涉嫌诈骗
    "经济学院",  # students forced into internships and factory work, 2017-2019 (9 of the 14 letters naming it)
])
def test_matter_is_one_top10_event(replayed: tuple[list[dict], dict[str, str]], name: str) -> None:
    rows, event_of = replayed
    ranks = _ranks(event_of)
    naming = [r for r in rows if name in r["subject"] + r["body"][:80]]
    assert len(naming) >= 10
    events = Counter(event_of[r["id"]] for r in naming)
    main, in_main = events.most_common(1)[0]
    assert ranks[main] <= TOP, (name, ranks[main])
    assert in_main >= 0.6 * len(naming), (name, events.most_common(4))
    # No second top-10 event carries the same matter.
    others = [(ranks[e], n) for e, n in events.items() if e != main and ranks[e] <= TOP]
    assert not others, (name, others)
