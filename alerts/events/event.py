"""An event as the clusterer holds it (time-decayed centroid, place counts), the assignment it hands back,
and the merge of two events that turn out to be one matter."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field

from alerts.events.places import shares_anchor
from alerts.events.vectors import Vector

PRIMARY_SHARE = 2  # a post's first-named anchor must be one the event names at least half as often as its commonest
DOMINANT_SHARE = 5  # an anchor named at least 1/5 as often as the event's commonest one is one of its own


def event_id_for(first_post_id: str) -> str:
    """The id of the event a post opens: derived from its id so replays agree."""
    return "ev-" + first_post_id[:16]


@dataclass(frozen=True)
class Assignment:
    """Where the clusterer put a post and why (``reason``: repost, near_dup, text or new). ``absorbed``: events
    this post showed to be the same matter as its own, merged into it (their posts now belong to ``event_id``)."""

    event_id: str
    near_dup_of: str | None
    is_new_event: bool
    similarity: float
    reason: str = "new"
    anchor: str | None = None
    absorbed: tuple[str, ...] = ()


@dataclass(slots=True)
class Event:
    centroid: Vector = field(default_factory=dict)
    norm: float = 0.0
    updated: float = float("-inf")  # time the centroid's decay refers to
    last: float = float("-inf")  # latest member's time
    first: float = float("inf")  # earliest member's time
    size: int = 0
    anchors: Counter[str] = field(default_factory=Counter)
    districts: Counter[str] = field(default_factory=Counter)
    towns: Counter[str] = field(default_factory=Counter)
    slow: bool = False  # has a citizen's letter or call: may be revived for longer
    own: set[str] = field(default_factory=set)  # names of events merged into this one: its own names too


def dominant(anchors: Counter[str]) -> list[str]:
    """The anchors an event is about: named at least a fifth as often as its commonest one. A post judged
    against every anchor an event ever met would find a match in any large event, and chain into it."""
    if not anchors:
        return []
    top = max(anchors.values())
    return sorted(a for a, n in anchors.items() if DOMINANT_SHARE * n >= top)


def primary_fits(anchors: list[str], main: list[str], ev: Event, strict: bool = False) -> bool:
    """Does the post's first-named anchor belong to the event (or name the event's commonest anchor)? A
    shared secondary name (a property firm, a mis-cut "服务有限公司") must not carry a post about another
    compound into the event, or templates filled in for many compounds chain into one. The main anchors of
    events merged into this one are its own."""
    if not anchors or not main:
        return True
    most = max(ev.anchors.values())
    tops = [a for a in main if PRIMARY_SHARE * ev.anchors[a] >= most] + sorted(ev.own)
    return shares_anchor(anchors[:1], tops) or (not strict and shares_anchor(tops, anchors))


def absorb(survivor: Event, other: Event, decay: float, keep: int) -> None:
    """Fold ``other`` into ``survivor``: centroids summed at the survivor's decay time, counts added; the
    absorbed event's commonest anchor becomes one of the survivor's own (its writers keep naming it first)."""
    if other.updated > survivor.updated:
        factor = math.exp(-decay * (other.updated - survivor.updated))
        survivor.centroid = {f: w * factor for f, w in survivor.centroid.items()}
        survivor.updated = other.updated
    factor = math.exp(-decay * (survivor.updated - other.updated)) if other.centroid else 1.0
    centroid = survivor.centroid
    for f, w in other.centroid.items():
        centroid[f] = centroid.get(f, 0.0) + factor * w
    if len(centroid) > keep:
        centroid = dict(heapq.nlargest(keep, centroid.items(), key=lambda kv: (kv[1], kv[0])))
    survivor.centroid = centroid
    survivor.norm = math.sqrt(sum(w * w for w in centroid.values()))
    if other.anchors:  # the name the absorbed event went by
        survivor.own.add(min(other.anchors.items(), key=lambda kv: (-kv[1], kv[0]))[0])
    survivor.size += other.size
    survivor.last = max(survivor.last, other.last)
    survivor.first = min(survivor.first, other.first)
    survivor.slow = survivor.slow or other.slow
    survivor.anchors.update(other.anchors)
    survivor.districts.update(other.districts)
    survivor.towns.update(other.towns)
