"""Event merging: when one post shows two live events to be one matter, they become one.

Online clustering opens a second event when a matter's first letters name it differently (the employer
"广铁集团" before the compound "伊景园滨河苑" it sells), and the two then grow side by side. A later post that
names the main anchor of each, and joins each on its own merits (its similarity to both passes the join
test), is the evidence that they are one matter; so is it when their centroids have come close. Without
anchors on both sides no merge happens: words alone chain unrelated stories.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerts.events.config import ClustererConfig
from alerts.events.event import Event
from alerts.events.places import shares_anchor
from alerts.events.vectors import cosine


def centroid_cosine(a: Event, b: Event) -> float:
    """Cosine of two events' centroids (each as decayed at its own latest member)."""
    if not a.norm or not b.norm:
        return 0.0
    small, large = (a, b) if len(a.centroid) <= len(b.centroid) else (b, a)
    return cosine(small.centroid, large.centroid, large.norm) / small.norm


def bridges(best: str, passing: list[tuple[float, str, list[str]]], anchors: list[str],
            events: Mapping[str, Event], config: ClustererConfig) -> list[str]:
    """Events besides ``best`` that the post shows to be ``best``'s matter: the post joins each (its score
    passes ``merge_similarity``), names the main anchors of both, and the two centroids are at least
    ``merge_centroid`` alike."""
    if config.merge_similarity > 1.0 or not anchors:
        return []
    mains = {e: main for _, e, main in passing}
    if not shares_anchor(anchors, mains.get(best, [])):
        return []
    out = []
    for sim, event_id, main in passing:
        if event_id == best or sim < config.merge_similarity or not shares_anchor(anchors, main):
            continue
        if centroid_cosine(events[best], events[event_id]) >= config.merge_centroid:
            out.append(event_id)
    return out
