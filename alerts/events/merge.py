"""Event merging: when one post shows two live events to be one matter, they become one.

Online clustering opens a second event when a matter's first letters name it differently (the employer
"广铁集团" before the compound "伊景园滨河苑" it sells), and the two then grow side by side. A later post that
names the commonest anchor of each, joins each on its own merits (its similarity to both passes the join
test), when the two names go together in the stream (most posts naming the rarer also name the other) and
the centroids are alike, is the evidence that they are one matter. Without anchors on both sides no merge
happens: words alone chain unrelated stories.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from alerts.events.config import ClustererConfig
from alerts.events.event import Event
from alerts.events.places import same_thing, shares_anchor
from alerts.events.vectors import cosine

MAX_NAMES = 8  # names of one post counted together

def centroid_cosine(a: Event, b: Event) -> float:
    """Cosine of two events' centroids (each as decayed at its own latest member)."""
    if not a.norm or not b.norm:
        return 0.0
    small, large = (a, b) if len(a.centroid) <= len(b.centroid) else (b, a)
    return cosine(small.centroid, large.centroid, large.norm) / small.norm


def top_anchor(ev: Event) -> str | None:
    """The anchor an event names most often (ties by name), or None."""
    if not ev.anchors:
        return None
    return min(ev.anchors.items(), key=lambda kv: (-kv[1], kv[0]))[0]


class CoNaming:
    """How often anchors are named, alone and together, in posts' whole text (bounded: halves when large).
    Two names of one thing go together (the employer 广铁集团 and the compound it sells); a property firm
    named with many compounds goes with none of them in particular."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self.single: Counter[str] = Counter()
        self.pair: Counter[tuple[str, str]] = Counter()
        self.max_keys = max_keys

    def observe(self, names: list[str]) -> None:
        names = list(dict.fromkeys(names))[:MAX_NAMES]
        self.single.update(names)
        self.pair.update((a, b) if a < b else (b, a) for i, a in enumerate(names) for b in names[i + 1:])
        if len(self.pair) + len(self.single) > self.max_keys:
            for counts in (self.single, self.pair):
                for k in list(counts):
                    counts[k] //= 2  # type: ignore[index]
                    if not counts[k]:  # type: ignore[index]
                        del counts[k]  # type: ignore[arg-type]

    def together(self, a: str, b: str, config: ClustererConfig) -> bool:
        """Are ``a`` and ``b`` mostly named together (in at least ``merge_conaming`` of the rarer one's posts)?"""
        n = self.pair[(a, b) if a < b else (b, a)]
        return n >= config.merge_conaming_min and n >= config.merge_conaming * min(self.single[a], self.single[b])


def bridges(best: str, passing: list[tuple[float, str, list[str]]], anchors: list[str],
            events: Mapping[str, Event], config: ClustererConfig, names: CoNaming) -> list[str]:
    """Events besides ``best`` that the post shows to be ``best``'s matter under another name: each names a
    different commonest anchor, the post names both, joins each (its score passes ``merge_similarity``), and
    the two centroids are at least ``merge_centroid`` alike. Two events with the same commonest anchor are
    two matters at one place (they would be one event otherwise), never merged."""
    if config.merge_similarity > 1.0 or not anchors:
        return []
    mine = top_anchor(events[best])
    if mine is None or not shares_anchor(anchors, [mine]):
        return []
    out = []
    for sim, event_id, _ in passing:
        if event_id == best or sim < config.merge_similarity:
            continue
        theirs = top_anchor(events[event_id])
        if theirs is None or same_thing(mine, theirs) or not shares_anchor(anchors, [theirs]):
            continue
        if not names.together(mine, theirs, config):
            continue
        if centroid_cosine(events[best], events[event_id]) >= config.merge_centroid:
            out.append(event_id)
    return out
