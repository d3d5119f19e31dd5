"""Online event clustering: each post joins the event whose time-decayed centroid its TF-IDF vector is
closest to, or opens a new one.

For each post, in this order:

1. **repost** — ``repost_of`` names an original already placed: join the original's event (the strongest
   evidence there is; the repost's own words do not move the centroid, see ``repost_weight``);
2. **near-duplicate** — MinHash/LSH over recent posts (copies, light edits): join that post's event;
3. **text** — cosine of the post's character n-gram TF-IDF vector (IDF learned from the stream) to the
   centroids of the candidate events an inverted index retrieves; places are features: a shared specific
   anchor adds ``anchor_bonus``, disjoint districts subtract ``district_penalty``, and two different
   specific anchors are incompatible. The best event at or above ``threshold`` wins;
4. otherwise the post opens a new event whose id derives from its own id (replays agree).

Centroids are sums of member vectors decayed with a half-life, so an event follows its story as it moves
and an event quiet for ``window_hours`` takes no more posts by text. Memory is bounded by time and by
``max_posts``. Not thread-safe: one instance per event-stage worker, used under the worker's lock.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from alerts.events.config import ClustererConfig
from alerts.events.event import Assignment, Event, absorb, dominant, event_id_for, primary_fits
from alerts.events.index import FeatureIndex, NearDupIndex
from alerts.events.merge import CoNaming, bridges
from alerts.events.minhash import EMPTY_SIGNATURE_VALUE, minhash_signature
from alerts.events.places import anchor_keys, compatible, focus_text, shares_anchor, town_keys
from alerts.events.vectors import StreamIdf, Vector, char_features, cosine, tfidf, top_features
from core.records import AnalyzedPost, Entities, post_id
from core.store.base import SignatureRow

log = logging.getLogger(__name__)

REPLAY_MEMORY = 10_000  # assignments remembered for retried batches (far more than one batch)
__all__ = ["Assignment", "EventClusterer", "event_id_for"]


def _ts(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def _text_of(post: AnalyzedPost | SignatureRow) -> str:
    title = getattr(post, "title", "") or ""
    body = getattr(post, "text_norm", "") or getattr(post, "text", "") or ""
    return f"{title}\n{body}" if title and not body.startswith(title) else body


class EventClusterer:
    """Repost following, near-duplicate LSH and cosine to time-decayed TF-IDF centroids."""

    def __init__(self, config: ClustererConfig | None = None, **overrides: object) -> None:
        base = config or ClustererConfig()
        self.config = base.model_copy(update=overrides) if overrides else base
        if overrides:
            self.config = ClustererConfig.model_validate(self.config.model_dump())
        c = self.config
        self.idf = StreamIdf(c.idf_prior_docs, c.idf_halflife_docs)
        self._events: dict[str, Event] = {}
        self._alias: dict[str, str] = {}  # absorbed event -> the event it was merged into
        self._features = FeatureIndex(c.postings_per_feature)
        self._near = NearDupIndex(c.num_perm, c.bands)
        self._post_event: dict[str, tuple[str, float]] = {}  # post -> (event, ts), for reposts
        self._post_heap: list[tuple[float, str]] = []
        self._assigned: OrderedDict[str, Assignment] = OrderedDict()
        self._latest = float("-inf")
        self._since_gc = 0
        self._decay = math.log(2.0) / (c.centroid_halflife_hours * 3600.0)
        self._names = CoNaming()
        self._bridged: list[str] = []  # events the current post showed to be its own event's matter

    # ---- public API -------------------------------------------------------------------------------

    def assign(self, post: AnalyzedPost) -> Assignment:
        """Choose the post's event (repost > near-duplicate > nearest centroid > new) and index the post."""
        replayed = self._assigned.get(post.id)
        if replayed is not None:
            return replayed
        ts = _ts(post.published_at)
        counts = char_features(_text_of(post), self.config)
        self.idf.observe(counts)
        vec = tfidf(counts, self.idf, self.config)
        sig = self._signature(post)
        anchors = anchor_keys(post.entities, focus_text(post))
        self._names.observe(anchor_keys(post.entities))
        districts = list(dict.fromkeys(post.entities.districts))
        places = (districts, town_keys(post.entities))
        assignment = self._match_known(post.id) or self._match_repost(post, ts)
        followed = assignment is not None
        self._bridged = []
        if assignment is None:
            assignment = (
                self._match_near_dup(post.id, sig, ts, anchors)
                or self._match_text(vec, ts, anchors, places, len(counts), *self._window(post))
                or Assignment(event_id=event_id_for(post.id), near_dup_of=None, is_new_event=True, similarity=0.0)
            )
            if post.repost_of:  # the original is unseen: it will join where its repost went
                self._remember(post_id(post.source, post.repost_of), assignment.event_id, ts)
        if self._bridged:
            assignment = self._merge(assignment, self._bridged)
        weight = self.config.repost_weight if followed else 1.0
        slow = post.source.value in self.config.slow_sources
        self._index(post.id, assignment.event_id, ts, vec, sig, anchors, places, weight, slow)
        self._assigned[post.id] = assignment
        if len(self._assigned) > REPLAY_MEMORY:
            self._assigned.popitem(last=False)
        self._since_gc += 1
        if self._since_gc >= self.config.gc_every or len(self._post_event) > self.config.max_posts:
            self.garbage_collect(datetime.fromtimestamp(self._latest, UTC))
        return assignment

    def resolve(self, event_id: str) -> str:
        """The event an event id stands for now (itself, or the event it was merged into)."""
        while event_id in self._alias:
            event_id = self._alias[event_id]
        return event_id

    @property
    def latest_published(self) -> datetime | None:
        """The latest publication time indexed so far (the stream's clock), or None before the first post."""
        return None if self._latest == float("-inf") else datetime.fromtimestamp(self._latest, UTC)

    def garbage_collect(self, now: datetime) -> int:
        """Forget entries too old to match any post published from ``now`` on; return how many posts went."""
        c = self.config
        self._since_gc = 0
        t = _ts(now)
        dropped = self._near.expire(t - c.near_dup_window_hours * 3600.0, c.max_posts)
        cutoff = t - c.repost_window_days * 86400.0
        while self._post_heap and (self._post_heap[0][0] < cutoff or len(self._post_event) > c.max_posts):
            ts, pid = heapq.heappop(self._post_heap)
            entry = self._post_event.get(pid)
            if entry is not None and entry[1] == ts:
                del self._post_event[pid]
        # Events stay while a repost may still follow into them, or a retelling may still revive them.
        quiet_hours = max(c.window_hours, c.slow_window_hours, (c.repost_window_days + c.revive_window_days) * 24.0)
        keep_after = t - quiet_hours * 3600.0
        # Citizens' letters recur for years at one place (a school's forced internships, every term).
        keep_slow = t - max(quiet_hours * 3600.0, c.slow_revive_days * 86400.0)
        stale = {e for e, ev in self._events.items() if ev.last < (keep_slow if ev.slow else keep_after)}
        excess = len(self._events) - len(stale) - c.max_posts
        if excess > 0:
            live = (e for e in self._events if e not in stale)
            stale.update(heapq.nsmallest(excess, live, key=lambda e: (self._events[e].last, e)))
        for event_id in stale:
            del self._events[event_id]
        gone = {a for a in self._alias if self.resolve(a) not in self._events}
        for a in gone:
            del self._alias[a]
        self._features.drop(stale | gone | set(self._alias))
        return dropped

    def rebuild(self, rows: Iterable[AnalyzedPost | SignatureRow]) -> int:
        """Restore the index after a restart from stored posts (or signature rows with their ``text_norm``),
        replayed in publication order as first assigned; return how many were indexed."""
        items = sorted(rows, key=lambda r: (_ts(r.published_at), r.post_id if isinstance(r, SignatureRow) else r.id))
        n = 0
        for row in items:
            pid = row.post_id if isinstance(row, SignatureRow) else row.id
            if not row.event_id:
                continue
            counts = char_features(_text_of(row), self.config)
            self.idf.observe(counts)
            vec = tfidf(counts, self.idf, self.config)
            raw = row.signature
            sig = np.asarray(raw, dtype=np.int64) if raw else np.empty(0, dtype=np.int64)
            if sig.size and np.all(sig == EMPTY_SIGNATURE_VALUE):
                sig = np.empty(0, dtype=np.int64)
            entities = getattr(row, "entities", None)
            anchors: list[str] = []
            places: tuple[list[str], list[str]] = ([], [])
            if isinstance(entities, Entities):
                focus = (getattr(row, "title", "") or _text_of(row)[:120]).replace(" ", "")
                anchors = anchor_keys(entities, focus)
                places = (list(dict.fromkeys(entities.districts)), town_keys(entities))
            weight = self.config.repost_weight if getattr(row, "repost_of", None) else 1.0
            source = getattr(row, "source", "")
            slow = str(getattr(source, "value", source)) in self.config.slow_sources
            self._index(pid, row.event_id, _ts(row.published_at), vec, sig, anchors, places, weight, slow)
            n += 1
        if items and self._latest > float("-inf"):
            self.garbage_collect(datetime.fromtimestamp(self._latest, UTC))
        log.info("event clusterer rebuilt from %d stored posts", n)
        return n

    def stats(self) -> dict[str, int]:
        """Sizes of the in-memory structures (for metrics and the memory-bound test)."""
        return {
            "signatures": len(self._near),
            "posts": len(self._post_event),
            "events": len(self._events),
            "centroid_features": sum(len(e.centroid) for e in self._events.values()),
            "features": len(self._features),
            "idf_features": len(self.idf.df),
        }

    # ---- matching ---------------------------------------------------------------------------------

    def _match_known(self, pid: str) -> Assignment | None:
        """A post already placed keeps its event; so does a late original whose repost came first."""
        known = self._post_event.get(pid)
        if known is None:
            return None
        return Assignment(event_id=self.resolve(known[0]), near_dup_of=None, is_new_event=False, similarity=1.0,
                          reason="repost")

    def _match_repost(self, post: AnalyzedPost, ts: float) -> Assignment | None:
        if not post.repost_of:
            return None
        original = post_id(post.source, post.repost_of)
        known = self._post_event.get(original)
        if known is None:
            return None
        return Assignment(event_id=self.resolve(known[0]), near_dup_of=original, is_new_event=False,
                          similarity=1.0, reason="repost")

    def _match_near_dup(self, pid: str, sig: np.ndarray, ts: float, anchors: list[str]) -> Assignment | None:
        c = self.config
        # One template filled in for two schools ("…今天开放日") is two matters, however alike the text.
        hit = self._near.best(pid, sig, ts, c.near_dup_window_hours * 3600.0, c.near_dup_threshold,
                              lambda other: compatible(anchors, other))
        if hit is None:
            return None
        cand, sim = hit
        return Assignment(event_id=self.resolve(self._near.sigs[cand][1]), near_dup_of=cand, is_new_event=False,
                          similarity=round(sim, 4), reason="near_dup")

    def _window(self, post: AnalyzedPost) -> tuple[float, float, float]:
        """Seconds an event may be quiet and still take this post by its words, and the cosine that joins:
        citizens' letters about one matter arrive days apart, each in the writer's own words, while a social
        story's posts arrive minutes apart and its retellings copy whole phrases."""
        c = self.config
        if post.source.value in c.slow_sources:
            return c.slow_window_hours * 3600.0, c.slow_threshold, c.slow_revive_days * 86400.0
        return c.window_hours * 3600.0, c.threshold, c.revive_window_days * 86400.0

    def _match_text(self, vec: Vector, ts: float, anchors: list[str], places: tuple[list[str], list[str]],
                    n_features: int, window: float, long_threshold: float, revive: float) -> Assignment | None:
        c = self.config
        if not vec:
            return None
        districts, towns = places
        # Sharing the place's name says "same place", not "same matter": those bigrams do not count below.
        named = {n[i : i + 2] for n in (*anchors, *districts, *towns) for i in range(len(n) - 1)}
        # ... nor do its characters count as words of the matter (see matter_floor).
        place_features = [f for f in vec if f in named or (len(f) == 1 and any(f in b for b in named))]
        query = top_features(vec, c.query_features)
        # A short reaction shares a few characters with its story at best, so its cosine is small by nature;
        # a substantial post about the same story shares whole phrases, and must to join.
        threshold = long_threshold if n_features >= c.short_post_features else c.short_post_threshold
        bigrams = [f for f in vec if len(f) > 1 and f not in named]
        best: tuple[float, str, str | None] | None = None
        passing: list[tuple[float, str, list[str]]] = []
        for event_id in dict.fromkeys(self.resolve(e) for e in self._features.candidates(vec, query, c.candidates)):
            ev = self._events.get(event_id)
            if ev is None:
                continue
            dormant = ts - ev.last > window
            main = dominant(ev.anchors)
            # Two districts' 明德小学 are two schools: names only meet inside a shared (or unknown) district.
            elsewhere = bool(districts) and bool(ev.districts) and set(districts).isdisjoint(ev.districts)
            shared = not elsewhere and bool(anchors) and shares_anchor(anchors, main)
            # A quiet event is revived by a retelling weeks later (nearly the same text), or by a post about
            # the same specific anchor (a compound's residents write for weeks, rarely in the same words);
            # otherwise it must not collect chance matches.
            too_old = ts - ev.last > revive
            if dormant and (too_old or (not shared and n_features < c.short_post_features)):
                continue
            if not shared and not compatible(anchors, main):
                continue
            if not primary_fits(anchors, main, ev):
                # A post is about the place it names first: a letter about 翠湖湾 that also names a property
                # firm the event met at 新港城 is another compound's matter, not this one.
                continue
            centroid = ev.centroid
            same_town = not elsewhere and bool(towns) and not set(towns).isdisjoint(ev.towns)
            same_district = bool(districts) and not elsewhere and bool(ev.districts)
            hot = (shared or same_town or same_district) and ts - ev.last <= c.hot_minutes * 60.0
            # Shared single characters are chance; a story shares names and phrases (bigrams) besides the
            # place's name. While the event is busy at the post's place, place and hour are evidence enough
            # for a specific anchor (an eyewitness: "拉了警戒线" at 青石镇工业园), nearly so for a town; a
            # district is too big a place for that, it only earns the hour's bonus.
            needed_bigrams = 0 if hot and shared else 1 if hot and same_town else c.min_shared_bigrams
            if sum(1 for f in bigrams if f in centroid) < needed_bigrams:
                continue
            sim = cosine(vec, centroid, ev.norm)
            # The place's own name says "same place", not "same matter": the place's bonuses need words of
            # the matter besides it (a compound's everyday complaints are not its water cut).
            matter = sim - sum(vec[f] * centroid[f] for f in place_features if f in centroid) / ev.norm
            # An eyewitness at the very place a breaking matter is about (the post's first-named anchor is the
            # event's own) needs no more: "拉了警戒线" at 青石镇工业园 within the half hour.
            eyewitness = hot and shared and primary_fits(anchors[:1], main, ev, strict=True)
            if ts - ev.last > c.revive_window_days * 86400.0 and matter < c.slow_revive_matter:
                continue  # a matter quiet for months is revived by its own words, not by its place's name
            if matter < c.matter_floor and not eyewitness:
                shared = hot = same_town = False
                if dormant or (anchors and main):
                    continue
            anchor = None
            if shared:
                sim += c.anchor_bonus
                anchor = anchors[0]
            elif elsewhere:
                sim -= c.district_penalty
            if same_town:
                # A town names many matters, so it is only a nudge: an eyewitness in the town's own words.
                sim += c.town_bonus
            if hot:
                # Within minutes, one place rarely has two matters: a breaking matter is told in many words
                # ("闷响", "冒黑烟", "要不要疏散") that share little but the place and the hour.
                sim += c.hot_place_bonus
            needed = max(threshold, c.revive_threshold) if dormant and not shared else threshold
            if sim >= needed and not dormant:
                passing.append((sim, event_id, main))
            if sim >= needed and (best is None or sim > best[0]):
                best = (sim, event_id, anchor)
        if best is None:
            return None
        self._bridged = bridges(best[1], passing, anchors, self._events, c, self._names)
        return Assignment(event_id=best[1], near_dup_of=None, is_new_event=False, similarity=round(best[0], 4),
                          reason="text", anchor=best[2])

    def _merge(self, assignment: Assignment, others: list[str]) -> Assignment:
        """Merge the events a post bridged into one: the largest (then the oldest) keeps its id."""
        ids = [assignment.event_id, *others]
        survivor = min(ids, key=lambda e: (-self._events[e].size, self._events[e].first, e))
        ev = self._events[survivor]
        absorbed = tuple(sorted(e for e in ids if e != survivor))
        for other in absorbed:
            absorb(ev, self._events.pop(other), self._decay, self.config.centroid_features)
            self._alias[other] = survivor
        self._features.add(survivor, top_features(ev.centroid, self.config.index_features), ev.last)
        log.info("events %s merged into %s", ", ".join(absorbed), survivor)
        return replace(assignment, event_id=survivor, absorbed=absorbed)

    # ---- indexing ---------------------------------------------------------------------------------

    def _signature(self, post: AnalyzedPost) -> np.ndarray:
        sig = post.signature
        if len(sig) != self.config.num_perm:
            sig = minhash_signature(_text_of(post), num_perm=self.config.num_perm)
        arr = np.asarray(sig, dtype=np.int64)
        return np.empty(0, dtype=np.int64) if np.all(arr == EMPTY_SIGNATURE_VALUE) else arr

    def _remember(self, pid: str, event_id: str, ts: float) -> None:
        self._post_event[pid] = (event_id, ts)
        heapq.heappush(self._post_heap, (ts, pid))

    def _index(self, pid: str, event_id: str, ts: float, vec: Vector, sig: np.ndarray, anchors: list[str],
               places: tuple[list[str], list[str]], weight: float, slow: bool = False) -> None:
        c = self.config
        self._latest = max(self._latest, ts)
        self._remember(pid, event_id, ts)
        ev = self._events.get(event_id)
        if ev is None:
            ev = self._events[event_id] = Event(updated=ts)
        ev.size += 1
        ev.last = max(ev.last, ts)
        ev.first = min(ev.first, ts)
        ev.slow = ev.slow or slow
        ev.anchors.update(anchors)
        ev.districts.update(places[0])
        ev.towns.update(places[1])
        if sig.size:
            self._near.add(pid, sig, event_id, ts, tuple(anchors))
        if weight <= 0.0 or not vec:
            return
        # Decay relative to the newest member: a late post weighs less, a newer one fades the old ones.
        if ts > ev.updated:
            factor = math.exp(-self._decay * (ts - ev.updated))
            if factor < 1.0:
                for f in ev.centroid:
                    ev.centroid[f] *= factor
            ev.updated = ts
        else:
            weight *= math.exp(-self._decay * (ev.updated - ts))
        centroid = ev.centroid
        for f, w in vec.items():
            centroid[f] = centroid.get(f, 0.0) + weight * w
        if len(centroid) > c.centroid_features:
            keep = heapq.nlargest(c.centroid_features, centroid.items(), key=lambda kv: (kv[1], kv[0]))
            ev.centroid = centroid = dict(keep)
        ev.norm = math.sqrt(sum(w * w for w in centroid.values()))
        self._features.add(event_id, top_features(vec, c.index_features), ts)
