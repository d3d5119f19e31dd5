"""The synthetic stream behind ``yuqing demo``: realistic background posts plus incidents that burst.

Background: posts from every source (weibo, wechat, douyin, news, forum, 12345 hotline, mailbox) about the
government topics (就学, 就医, 住房保障/物业, 安全生产, ...) across the districts of A市, arriving as a Poisson
stream of ``rate_per_min``; mostly neutral or positive chatter, about a quarter everyday complaints, and
hotline/mailbox work orders with a demand (诉求).

Incidents: each starts with one original post, then grows (rate ramps up over ``ramp_s`` to
``peak_per_min``, holds, decays) with reposts (``repost_of`` the original), copy-paste variants, fresh
eyewitness posts, hotline calls and, midway, one official statement. Engagement rises with the heat.
Incident records carry ``incident`` (the name) and every record ``demo_topic``: ground truth for tests and
benchmarks; after validation both are in ``Post.raw``.

A few posts contain personal data (phones, ID numbers, names) to exercise masking, and a few contain
HTML/script to exercise escaping. The stream is deterministic for a (seed, start) pair; ``start`` is part
of every external id, so two demo runs never collide in the idempotent stores.

The default schedule starts the first incident (a chemical-plant smell and explosion rumour in A7县)
5 s after ``start`` and brings it to 90 posts/min by 25 s, so a real-time run sees a burst within 40 s.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core.records import utcnow
from ingest import demo_text as words
from ingest.base import RawRecord
from ingest.replay import paced
from ingest.validate import SHANGHAI

SOURCE_PREFIX = {"weibo": "wb", "wechat": "wx", "douyin": "dy", "news": "nw", "forum": "bbs", "hotline": "rx",
                 "mailbox": "mb"}
# Where incident posts come from: mostly social media, some forum and douyin, hotline handled apart.
# News outlets only carry the official statement; rumours and eyewitness posts are social media.
INCIDENT_SOURCES = (("weibo", 62), ("douyin", 20), ("forum", 12), ("wechat", 6))


@dataclass(frozen=True)
class Incident:
    """An injected matter: what is said, where, and when it starts (seconds after the stream start)."""

    name: str
    topic: str
    district: str
    start_s: float
    peak_per_min: float
    originals: tuple[str, ...]
    followups: tuple[str, ...]
    hotline: tuple[str, ...] = ()
    official: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    ramp_s: float = 20.0
    hold_s: float = 240.0
    decay_s: float = 300.0
    place: str = ""

    @property
    def end_s(self) -> float:
        """When the incident has died down."""
        return self.start_s + self.ramp_s + self.hold_s + self.decay_s

    def rate_per_s(self, t: float) -> float:
        """Posts per second at ``t`` seconds after the stream start (quadratic ramp, hold, linear decay)."""
        x = t - self.start_s
        peak = self.peak_per_min / 60.0
        if x < 0 or t > self.end_s:
            return 0.0
        if x < self.ramp_s:
            return peak * (x / self.ramp_s) ** 2
        if x < self.ramp_s + self.hold_s:
            return peak
        return peak * max(0.0, 1 - (x - self.ramp_s - self.hold_s) / self.decay_s)


def default_incidents() -> list[Incident]:
    """The four stock incidents, spread over the first quarter hour."""
    schedule = {  # name -> (start_s, peak_per_min)
        "a7-chemical-plant": (5.0, 90.0),
        "a3-school-food-poisoning": (150.0, 50.0),
        "a2-property-water-cut": (360.0, 40.0),
        "a5-wage-arrears": (600.0, 30.0),
    }
    incidents = []
    for name, (start_s, peak) in schedule.items():
        spec: dict[str, Any] = words.INCIDENTS[name]
        incidents.append(Incident(
            name=name, topic=spec["topic"], district=spec["district"], start_s=start_s, peak_per_min=peak,
            originals=tuple(spec["originals"]), followups=tuple(spec["followups"]),
            hotline=tuple(spec["hotline"]), official=tuple(spec["official"]), tags=tuple(spec["tags"]),
            place=spec["slots"]["place"],
        ))
    return incidents


def _weighted(rng: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _id_card(rng: random.Random) -> str:
    """A made-up 18-digit resident ID with a valid check digit (so checksum-aware maskers fire)."""
    birth = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    body = f"4390{rng.randint(10, 99)}{birth:%Y%m%d}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(0, 99_999_999):08d}"


def _name(rng: random.Random) -> str:
    return rng.choice(words.SURNAMES) + rng.choice(words.GIVEN)


def _nick(rng: random.Random) -> str:
    return rng.choice(words.NICK_HEAD) + rng.choice(words.NICK_TAIL) + str(rng.randint(1, 9999))


def _clause(text: str, limit: int = 24) -> str:
    """The first clause of a sentence, for titles."""
    for stop in "，。！？；,":
        text = text.split(stop, 1)[0]
    return text[:limit]


class _Writer:
    """Builds records for one process (background or one incident) from its own RNG and counter."""

    def __init__(self, stream: DemoStream, rng: random.Random, tag: str) -> None:
        self.stream = stream
        self.rng = rng
        self.tag = tag
        self.count = 0

    def external_id(self, source: str) -> str:
        self.count += 1
        return f"{SOURCE_PREFIX[source]}-{self.stream.run_id}-{self.tag}{self.count:06d}"

    def slots(self, district: str | None = None) -> dict[str, Any]:
        rng = self.rng
        d = district or rng.choice(words.DISTRICTS)
        return {
            "d": d, "street": rng.choice(words.STREETS[d]), "compound": rng.choice(words.COMPOUNDS),
            "road": rng.choice(words.ROADS), "school": rng.choice(words.SCHOOLS),
            "hospital": rng.choice(words.HOSPITALS), "company": rng.choice(words.COMPANIES),
            "prop": rng.choice(words.PROPERTY_COMPANIES), "market": rng.choice(words.MARKETS),
            "park": rng.choice(words.PARKS), "n": rng.randint(2, 9), "days": rng.randint(3, 60),
            "money": rng.choice((860, 1200, 2400, 3800, 6500, 12000, 35000, 180000)),
            "bus": rng.randint(1, 399),
        }

    def engagement(self, source: str, heat: float = 0.0) -> dict[str, int]:
        if source in ("hotline", "mailbox"):
            return {"reposts": 0, "comments": 0, "likes": int(self.rng.random() < 0.3) * self.rng.randint(1, 9),
                    "dislikes": int(self.rng.random() < 0.1)}
        scale = math.exp(self.rng.gauss(1.2, 1.1)) * (1 + 40 * heat)
        return {"reposts": int(scale * self.rng.uniform(0.1, 0.8)), "comments": int(scale * self.rng.uniform(0.2, 1)),
                "likes": int(scale * self.rng.uniform(1, 4)), "dislikes": int(scale * self.rng.uniform(0, 0.1))}

    def decorate(self, text: str, slots: dict[str, Any]) -> str:
        """Sometimes add personal data or HTML, as real posts do."""
        rng = self.rng
        if rng.random() < self.stream.pii_share:
            pii = rng.choice(words.PII_SNIPPETS).format(phone=_phone(rng), name=_name(rng), idcard=_id_card(rng))
            text = f"{text}{pii}。"
        if rng.random() < self.stream.html_share:
            text = f"{text}{rng.choice(words.HTML_SNIPPETS)}"
        return text

    def record(self, *, source: str, when: datetime, text: str, topic: str, title: str = "",
               author: str | None = None, heat: float = 0.0, place_hints: list[str] | None = None,
               repost_of: str | None = None, incident: str | None = None) -> dict[str, Any]:
        external_id = self.external_id(source)
        # Always with the +08:00 offset: consumers that pace by this string must not guess the zone.
        stamp = when.astimezone(SHANGHAI).isoformat(timespec="seconds")
        rec: dict[str, Any] = {"source": source, "external_id": external_id}
        if title:
            rec["title"] = title
        rec["text"] = text
        if source in ("news", "wechat", "weibo", "douyin", "forum"):
            rec["url"] = f"https://{source}.example.org/a/{external_id}"
        if author is not None:
            rec["author"] = author
        rec["published_at"] = stamp
        rec["engagement"] = self.engagement(source, heat)
        if repost_of is not None:
            rec["repost_of"] = repost_of
        if place_hints:
            rec["place_hints"] = place_hints
        rec["demo_topic"] = topic
        if incident is not None:
            rec["incident"] = incident
        return rec

    def author_for(self, source: str) -> str | None:
        rng = self.rng
        if source == "hotline":
            return _name(rng)
        if source == "mailbox":
            return f"U{rng.randint(10_000_000, 99_999_999)}"
        if source == "news":
            return rng.choice(("A市日报", "A市融媒体中心", "西地省新闻网", "A市晚报"))
        if source == "wechat":
            return rng.choice(("A市发布", "A市生活圈", "A市教育", f"{rng.choice(words.DISTRICTS)}身边事"))
        return _nick(rng)


class DemoStream:
    """An endless, time-ordered stream of post dicts in the project's JSONL shape (see module docstring)."""

    def __init__(self, *, seed: int = 7, start: datetime | None = None, rate_per_min: float = 120.0,
                 incidents: list[Incident] | None = None, pii_share: float = 0.05,
                 html_share: float = 0.01, repeat_every_s: float | None = None) -> None:
        if rate_per_min < 0:
            raise ValueError(f"rate_per_min must be >= 0, got {rate_per_min}")
        self.seed = seed
        self.start = (start or utcnow()).replace(microsecond=0)
        if self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=SHANGHAI)
        self.rate_per_min = rate_per_min
        self.incidents = default_incidents() if incidents is None else list(incidents)
        self.pii_share = pii_share
        self.html_share = html_share
        # A long-running demo re-plays the incident schedule every period (names get "#2", "#3", ...).
        self.repeat_every_s = repeat_every_s
        longest = max((i.end_s - i.start_s for i in self.incidents), default=0.0)
        if repeat_every_s is not None and repeat_every_s <= longest:
            raise ValueError(f"repeat_every_s must exceed the longest incident ({longest:.0f} s)")
        self.run_id = f"{seed}x{int(self.start.timestamp()):x}"

    # --- processes: each yields (seconds after start, record) in its own time order -----------------
    def _background(self) -> Iterator[tuple[float, dict[str, Any]]]:
        if self.rate_per_min <= 0:
            return
        rng = random.Random(f"{self.seed}:background")
        w = _Writer(self, rng, "b")
        topics = list(words.TOPICS)
        t = 0.0
        while True:
            t += rng.expovariate(self.rate_per_min / 60.0)
            source = _weighted(rng, words.SOURCE_WEIGHTS)
            topic = rng.choice(topics)
            yield t, self._background_post(w, source, topic, self.start + timedelta(seconds=t))

    def _background_post(self, w: _Writer, source: str, topic: str, when: datetime) -> dict[str, Any]:
        rng = w.rng
        parts = words.TOPICS[topic]
        slots = w.slots()
        d = slots["d"]
        author = w.author_for(source)
        pick = rng.randrange(len(parts["issue"]))
        issue, demand = parts["issue"][pick].format_map(slots), parts["demand"][pick]
        if source == "hotline":
            text = f"{rng.choice(words.HOTLINE_OPENERS)}{issue}。诉求：{demand}。"
            if rng.random() < 0.3:
                text += f"来电人：{author}，联系电话：{_phone(rng)}。"
            text = w.decorate(text, slots)
            return w.record(source=source, when=when, title=f"反映{_clause(issue, 30)}", text=text,
                            topic=topic, author=author, place_hints=[d, slots["street"]])
        if source == "mailbox":
            extra = rng.choice(parts["complaint"]).format_map(slots) if rng.random() < 0.4 else ""
            text = (f"{rng.choice(words.MAILBOX_OPENERS)}我是{d}{slots['street']}的居民，{issue}。{extra}"
                    f"{demand}，{rng.choice(words.MAILBOX_CLOSERS)}")
            return w.record(source=source, when=when, title=_clause(issue, 30), text=w.decorate(text, slots),
                            topic=topic, author=author, place_hints=[d])
        complaint = source != "news" and rng.random() < 0.25
        kind = "news" if source == "news" else "complaint" if complaint else "chatter"
        sentence = rng.choice(parts[kind]).format_map(slots)
        title = ""
        if source == "news":
            text = rng.choice(words.NEWS_OPENERS).format_map(slots) + sentence
            title = _clause(sentence, 28)
        elif source == "wechat":
            more = rng.choice(parts["chatter"]).format_map(slots)
            text = f"{sentence}{more}" if more != sentence else sentence
            title = f"{d}｜{_clause(sentence, 22)}"
        elif source == "forum":
            title = rng.choice(words.FORUM_TITLES).format_map(slots) + _clause(sentence, 16)
            text = sentence + rng.choice(("大家怎么看？", "有同感的吗？", "", "求解答。"))
        else:
            text = sentence + rng.choice(words.WEIBO_TAILS).format_map(slots)
        hints = [d] if source == "news" or rng.random() < 0.3 else None
        return w.record(source=source, when=when, title=title, text=w.decorate(text, slots), topic=topic,
                        author=author, place_hints=hints)

    def _repeating(self, index: int, inc: Incident) -> Iterator[tuple[float, dict[str, Any]]]:
        yield from self._incident(index, inc, 0)
        if self.repeat_every_s is None:
            return
        for k in itertools.count(1):
            again = replace(inc, name=f"{inc.name}#{k + 1}", start_s=inc.start_s + k * self.repeat_every_s)
            yield from self._incident(index, again, k)

    def _incident(self, index: int, inc: Incident, occurrence: int) -> Iterator[tuple[float, dict[str, Any]]]:
        rng = random.Random(f"{self.seed}:incident:{inc.name}")
        w = _Writer(self, rng, f"i{index}-{occurrence}-")
        slots = w.slots(inc.district)
        peak = inc.peak_per_min / 60.0
        if peak <= 0 or not inc.originals:
            return
        t = inc.start_s
        original_text = rng.choice(inc.originals)
        original = w.record(source="weibo", when=self.start + timedelta(seconds=t), text=original_text,
                            topic=inc.topic, author=_nick(rng), incident=inc.name)
        yield t, original
        official_at = inc.start_s + inc.ramp_s + inc.hold_s * 0.6
        official_done = not inc.official
        while True:
            t += rng.expovariate(peak)
            if t > inc.end_s:
                return
            rate = inc.rate_per_s(t)
            if rng.random() >= rate / peak:
                continue  # thinning: candidate arrivals at peak rate, kept in proportion to the current rate
            heat = rate / peak
            when = self.start + timedelta(seconds=t)
            if not official_done and t >= official_at:
                official_done = True
                yield t, w.record(source="news", when=when, title=_clause(inc.official[0], 28),
                                  text=rng.choice(inc.official), topic=inc.topic, author="A市融媒体中心",
                                  heat=heat, place_hints=[inc.district], incident=inc.name)
                continue
            kind = rng.choices(("repost", "variant", "followup", "hotline"), weights=(35, 25, 32, 8))[0]
            if kind == "hotline" and inc.hotline:
                text = w.decorate(rng.choice(inc.hotline), slots)
                yield t, w.record(source="hotline", when=when, title=f"关于{inc.place}的诉求", text=text,
                                  topic=inc.topic, author=_name(rng), place_hints=[inc.district],
                                  incident=inc.name)
                continue
            source = "weibo" if kind == "repost" else _weighted(rng, INCIDENT_SOURCES)
            tag = rng.choice(inc.tags) if inc.tags and rng.random() < 0.4 else ""
            repost_of = None
            if kind == "repost":
                text = f"{rng.choice(words.REPOST_COMMENTS)}//@{original['author']}:{original_text}"
                repost_of = original["external_id"]
            elif kind == "variant":
                text = rng.choice(words.VARIANT_PREFIXES) + original_text.rstrip("？?。！") + rng.choice(
                    words.VARIANT_SUFFIXES)
            else:
                text = rng.choice(inc.followups)
            text = w.decorate(f"{text}{tag}", slots)
            title = _clause(text, 24) if source in ("news", "wechat", "forum") else ""
            yield t, w.record(source=source, when=when, title=title, text=text, topic=inc.topic,
                              author=_nick(rng), heat=heat,
                              repost_of=repost_of, incident=inc.name)

    # --- public iteration ----------------------------------------------------------------------------
    def timed(self) -> Iterator[tuple[datetime, dict[str, Any]]]:
        """Yield (published_at, record) in time order, merging background and incidents."""
        processes: list[Iterator[tuple[float, dict[str, Any]]]] = [self._background()]
        processes += [self._repeating(i, inc) for i, inc in enumerate(self.incidents)]
        heap: list[tuple[float, int, dict[str, Any]]] = []
        for index, proc in enumerate(processes):
            first = next(proc, None)
            if first is not None:
                heapq.heappush(heap, (first[0], index, first[1]))
        while heap:
            t, index, rec = heapq.heappop(heap)
            # Whole seconds, as in the record's published_at string.
            yield (self.start + timedelta(seconds=t)).replace(microsecond=0), rec
            following = next(processes[index], None)
            if following is not None:
                heapq.heappush(heap, (following[0], index, following[1]))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Yield post dicts in time order, forever (or until every process ends when rate_per_min is 0)."""
        for _, rec in self.timed():
            yield rec

    def raw_records(self) -> Iterator[RawRecord]:
        """The stream as RawRecords (UTF-8 JSON), so it takes the same validation path as a file."""
        for n, rec in enumerate(self, start=1):
            yield RawRecord(data=json.dumps(rec, ensure_ascii=False).encode("utf-8"), origin=f"demo:{n}")

    def live(self, *, speed: float = 1.0, clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> Iterator[RawRecord]:
        """RawRecords released in real time (``speed``x), for a live demo started with ``start=now``."""
        timed = paced(self.timed(), speed=speed, clock=clock, sleep=sleep, key=lambda pair: pair[0])
        for n, (_, rec) in enumerate(timed, start=1):
            yield RawRecord(data=json.dumps(rec, ensure_ascii=False).encode("utf-8"), origin=f"demo:{n}")


def write_jsonl(path: Path | str, *, count: int | None = None, duration: float | timedelta | None = None,
                **stream_kwargs: Any) -> int:
    """Write the demo stream to a JSONL file, up to ``count`` records and/or ``duration`` seconds; return lines."""
    if count is None and duration is None:
        raise ValueError("write_jsonl needs count= or duration=, the stream is endless")
    if isinstance(duration, timedelta):
        duration = duration.total_seconds()
    stream = DemoStream(**stream_kwargs)
    end = stream.start + timedelta(seconds=duration) if duration is not None else None
    written = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for when, rec in stream.timed():
            if (count is not None and written >= count) or (end is not None and when > end):
                break
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            written += 1
    return written
