"""Scoring event detection against labelled stories: B-cubed precision/recall/F1 over posts, and detection
delay (per true story, minutes from its first post until ``k`` of its posts sit in one event).

``yuqing eval events --posts FILE --truth TRUTH`` replays ``FILE`` (the project's post format, JSONL) in
publication order through ``EventClusterer`` and the bigram baseline, and prints both.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from alerts.events.baseline import BASELINE_THRESHOLD, baseline_clusters
from alerts.events.clusterer import EventClusterer
from alerts.events.config import ClustererConfig
from core.records import AnalyzedPost, Entities, Sentiment, SentimentLabel, Source, Topic, post_id

log = logging.getLogger(__name__)


def bcubed(pred: dict[str, str], truth: dict[str, str]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 of a clustering over the items both mappings know."""
    items = [i for i in pred if i in truth]
    if not items:
        return 0.0, 0.0, 0.0
    joint = Counter((pred[i], truth[i]) for i in items)
    by_pred = Counter(pred[i] for i in items)
    by_true = Counter(truth[i] for i in items)
    p = sum(n * n / by_pred[c] for (c, _), n in joint.items()) / len(items)
    r = sum(n * n / by_true[t] for (_, t), n in joint.items()) / len(items)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def detection_delays(times: dict[str, float], pred: dict[str, str], truth: dict[str, str],
                     k: int = 5) -> tuple[list[float], list[float]]:
    """Per true story with at least ``k`` posts: minutes until ``k`` of its posts share one event, and
    minutes until the story itself has ``k * 2`` posts (its own pace, to compare with)."""
    order = sorted((times[i], i) for i in pred if i in truth)
    first: dict[str, float] = {}
    seen: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    detected: dict[str, float] = {}
    paced: dict[str, float] = {}
    for ts, i in order:
        story = truth[i]
        first.setdefault(story, ts)
        seen[story] += 1
        if seen[story] == 2 * k:
            paced[story] = (ts - first[story]) / 60.0
        together[(story, pred[i])] += 1
        if together[(story, pred[i])] == k and story not in detected:
            detected[story] = (ts - first[story]) / 60.0
    return [detected[s] for s in sorted(detected)], [paced[s] for s in sorted(paced)]


def _p90(values: Sequence[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def read_posts(path: Path, *, entities: Callable[[str], Entities] | None = None) -> list[AnalyzedPost]:
    """Posts of a JSONL file in the project's post format, as the event stage would see them."""
    from analyze.normalize import normalize

    out: list[AnalyzedPost] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            r: dict[str, Any] = json.loads(line)
            source = Source(r.get("source") or "weibo")
            text = r.get("text") or ""
            title = r.get("title") or ""
            full = f"{title}\n{text}" if title else text
            out.append(AnalyzedPost(
                id=post_id(source.value, r["external_id"]), source=source, external_id=r["external_id"],
                title=title, text=text, published_at=datetime.fromisoformat(r["published_at"]),
                author_hash=r.get("author"), repost_of=r.get("repost_of"), text_norm=normalize(full),
                sentiment=Sentiment(label=SentimentLabel.neutral, score=0.5), topic=Topic(l1="unknown"),
                entities=entities(full) if entities is not None else Entities(),
            ))
    return out


def read_truth(path: Path) -> dict[str, str]:
    """external_id -> story id."""
    with path.open(encoding="utf-8") as fh:
        return {r["external_id"]: str(r["event_id"]) for r in (json.loads(x) for x in fh if x.strip())}


def replay(posts: Iterable[AnalyzedPost], clusterer: EventClusterer | None = None,
           *, as_assigned: dict[str, str] | None = None) -> dict[str, str]:
    """external_id -> event id at the end of the stream (merged events resolved), replaying posts in
    (published_at, id) order as the event stage does; ``as_assigned`` gets each post's event when it came."""
    clusterer = clusterer or EventClusterer()
    ordered = sorted(posts, key=lambda p: (p.published_at, p.id))
    assigned = {p.external_id: clusterer.assign(p).event_id for p in ordered}
    if as_assigned is not None:
        as_assigned.update(assigned)
    return {i: clusterer.resolve(e) for i, e in assigned.items()}


def score(posts: list[AnalyzedPost], truth: dict[str, str], config: ClustererConfig | None = None,
          *, baseline: bool = True, k: int = 5) -> dict[str, float]:
    """Figures for the clusterer (and the baseline) on labelled posts."""
    at_arrival: dict[str, str] = {}
    pred = replay(posts, EventClusterer(config), as_assigned=at_arrival)
    p, r, f = bcubed(pred, truth)
    times = {x.external_id: x.published_at.timestamp() for x in posts}
    # Delay as the stage saw it: posts count together from when they were, not from a later merge.
    delays, paced = detection_delays(times, at_arrival, truth, k)
    out = {"events.bcubed_precision": p, "events.bcubed_recall": r, "events.bcubed_f1": f,
           "events.events": float(len(set(pred.values()))),
           "events.stories": float(len({truth[i] for i in pred if i in truth})),
           f"events.delay{k}_median_min": statistics.median(delays) if delays else float("nan"),
           f"events.delay{k}_p90_min": _p90(delays), "events.stories_detected": float(len(delays)),
           f"events.time_to_{2 * k}_median_min": statistics.median(paced) if paced else float("nan")}
    if baseline:
        ordered = sorted(posts, key=lambda x: (x.published_at, x.id))
        links = {x.external_id: x.repost_of for x in ordered if x.repost_of}
        base = baseline_clusters([(x.external_id, x.text_norm) for x in ordered], reposts=links)
        bp, br, bf = bcubed({i: str(c) for i, c in base.items()}, truth)
        out |= {"baseline.threshold": BASELINE_THRESHOLD, "baseline.bcubed_precision": bp,
                "baseline.bcubed_recall": br, "baseline.bcubed_f1": bf,
                "events.f1_over_baseline": f / bf if bf else float("nan")}
    return out


def split_half(posts: list[AnalyzedPost], truth: dict[str, str], half: int) -> list[AnalyzedPost]:
    """The posts of every other story (by story id order): half 0 tunes, half 1 is held out."""
    stories = sorted(set(truth.values()))
    keep = {s for n, s in enumerate(stories) if n % 2 == half}
    return [p for p in posts if truth.get(p.external_id) in keep]


def eval_stream(posts_file: Path, truth_file: Path, *, half: int | None = None,
                config: ClustererConfig | None = None, entities: bool = True, lac: bool = False) -> dict[str, float]:
    """Load, optionally restrict to one half of the stories, and score."""
    extract = None
    if entities:
        from analyze.entities import EntityExtractor

        extract = EntityExtractor.load(use_lac=lac).extract
    truth = read_truth(truth_file)
    posts = read_posts(posts_file, entities=extract)
    if half is not None:
        posts = split_half(posts, truth, half)
    return score(posts, truth, config)


def by_story(pred: dict[str, str], truth: dict[str, str]) -> dict[str, Counter[str]]:
    """story -> how its posts spread over events (for error analysis)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for i, e in pred.items():
        if i in truth:
            out[truth[i]][e] += 1
    return out
