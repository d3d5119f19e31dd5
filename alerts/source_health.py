"""Source health: notice when a source goes silent or falls far below its own usual volume.

A crawler that breaks, an expired API account or a stuck import shows up as a source whose hourly
count collapses. Sources have strong daily rhythms (weibo at 03:00 is a trickle), so each source keeps
an hour-of-day profile: for every local hour slot an EWMA of that slot's counts over past days. The
expected volume of the last ``window_hours`` complete hours is the sum of their slots' profiles; an
alert is raised when that expectation is large enough to judge (``min_expected``) and what arrived is at
most ``drop_ratio`` of it. A normal night dip is in the profile, so it is expected and never alerts.

Learning stops for a source while it is alerting: an outage must not teach the baseline that silence
is normal. A slot judges only after ``min_days`` observations of it.

Two ways to feed it (use one, not both):

- live, in the process that ingests: ``observe(source, at, n)`` with arrival times (a back-fill of old
  posts is not a healthy crawler);
- from the post store, in whichever process runs the scheduler: ``sync_from_store(post_store, now)``
  counts each complete hour by source (by publication time) once. This works in scale mode, where
  posts arrive through many processes.

Then ``check(now)`` and ``enqueue_source_alerts`` in a transaction: one notification per source and
outage (the id derives from the source and the hour the outage began, so repeated checks, or two
schedulers, enqueue it once). ``run_source_health`` does sync, check and enqueue in one call.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from alerts.notifiers.base import Notification
from alerts.outbox import enqueue

if TYPE_CHECKING:
    from core.db.session import Database
    from core.store.base import PostStore

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
SOURCE_ZH = {"weibo": "微博", "wechat": "微信", "douyin": "抖音", "news": "新闻", "forum": "论坛",
             "hotline": "12345热线", "mailbox": "市长信箱"}


@dataclass(frozen=True)
class SourceAlert:
    """A source that delivers far less than usual."""

    source: str
    observed: int  # posts in the judged window
    expected: float  # what the profile expected in that window
    since: datetime  # when the outage began (the last post seen, or the first judged hour of a drop)
    message: str  # Chinese, for the office robot

    @property
    def silent(self) -> bool:
        """Nothing at all arrived in the window."""
        return self.observed == 0


@dataclass
class _SourceState:
    counts: dict[datetime, int] = field(default_factory=dict)  # UTC hour start -> posts
    profile: list[float | None] = field(default_factory=lambda: [None] * 24)  # local hour slot -> EWMA
    seen_days: list[int] = field(default_factory=lambda: [0] * 24)
    learned_until: datetime | None = None  # hours before this are folded into the profile
    last_seen: datetime | None = None
    alert_since: datetime | None = None  # set while alerting: when the outage began


def _hour(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("source health needs timezone-aware times")
    return at.replace(minute=0, second=0, microsecond=0)


class SourceHealth:
    """Per-source hourly counts against an hour-of-day EWMA profile (see module docstring)."""

    def __init__(self, *, window_hours: int = 2, drop_ratio: float = 0.2, min_expected: float = 20.0,
                 alpha: float = 0.3, min_days: int = 3, tz: str = "Asia/Shanghai") -> None:
        if window_hours < 1 or not 0.0 <= drop_ratio < 1.0 or not 0.0 < alpha <= 1.0:
            raise ValueError("window_hours >= 1, 0 <= drop_ratio < 1 and 0 < alpha <= 1 are needed")
        self.window_hours = window_hours
        self.drop_ratio = drop_ratio
        self.min_expected = min_expected
        self.alpha = alpha
        self.min_days = min_days
        self.tz = ZoneInfo(tz)
        self._sources: dict[str, _SourceState] = {}
        self._lock = threading.Lock()
        self._synced_until: datetime | None = None

    def observe(self, source: str, at: datetime, n: int = 1) -> None:
        """Count ``n`` posts of ``source`` arriving at ``at``."""
        hour = _hour(at)
        with self._lock:
            state = self._sources.setdefault(source, _SourceState())
            if state.learned_until is not None and hour < state.learned_until:
                return  # a straggler for an hour already learned: too late to matter
            state.counts[hour] = state.counts.get(hour, 0) + n
            if n > 0 and (state.last_seen is None or at > state.last_seen):
                state.last_seen = at

    def sync_from_store(self, post_store: PostStore, now: datetime, *, backfill_days: int = 8,
                        sources: tuple[str, ...] = ()) -> int:
        """Count every complete hour not yet counted, by source, from the post store; returns hours read.

        The first call reads ``backfill_days`` of history, so a restarted scheduler judges at once.
        ``sources`` lists sources to watch even when an hour has none of their posts (an hour with no
        post at all of a source is otherwise indistinguishable from a source never seen).
        """
        from core.store.base import PostQuery

        current = _hour(now)
        start = self._synced_until or current - timedelta(days=backfill_days)
        hours = 0
        hour = start
        while hour < current:
            counts = post_store.overview(PostQuery(since=hour, until=hour + HOUR - timedelta(microseconds=1),
                                                   limit=1)).by_source
            for source in set(counts) | set(sources):
                # An hourly total: posts were seen up to the end of that hour.
                self.observe(source, hour + HOUR - timedelta(seconds=1), int(counts.get(source, 0)))
            hour += HOUR
            hours += 1
        self._synced_until = max(current, start)
        return hours

    def expected(self, source: str, hour: datetime) -> float | None:
        """The profile's expectation for the UTC hour starting at ``hour``; None while still learning."""
        with self._lock:
            state = self._sources.get(source)
            return None if state is None else self._slot_expectation(state, hour)

    def _slot(self, hour: datetime) -> int:
        return hour.astimezone(self.tz).hour

    def _slot_expectation(self, state: _SourceState, hour: datetime) -> float | None:
        slot = self._slot(hour)
        value = state.profile[slot]
        return value if value is not None and state.seen_days[slot] >= self.min_days else None

    def _learn(self, state: _SourceState, upto: datetime) -> None:
        """Fold complete hours before ``upto`` into the profile (skipping the judged window while alerting)."""
        start = state.learned_until or min(state.counts, default=upto)
        hour = start
        while hour < upto:
            n = state.counts.pop(hour, 0)
            slot = self._slot(hour)
            old = state.profile[slot]
            state.profile[slot] = float(n) if old is None else (1 - self.alpha) * old + self.alpha * n
            state.seen_days[slot] += 1
            hour += HOUR
        state.learned_until = max(upto, start)

    def _skip(self, state: _SourceState, upto: datetime) -> None:
        """Drop complete hours before ``upto`` without learning them (they belong to an outage)."""
        for hour in [h for h in state.counts if h < upto]:
            del state.counts[hour]
        state.learned_until = max(upto, state.learned_until or upto)

    def check(self, now: datetime) -> list[SourceAlert]:
        """Judge every source on the last ``window_hours`` complete hours; learn from the hours before."""
        current = _hour(now)
        window_start = current - self.window_hours * HOUR
        alerts: list[SourceAlert] = []
        with self._lock:
            for source, state in self._sources.items():
                if state.learned_until is None:
                    state.learned_until = min(state.counts, default=window_start)
                if state.alert_since is None:
                    self._learn(state, window_start)
                else:
                    self._skip(state, window_start)
                expected = 0.0
                observed = 0
                judged = True
                hour = window_start
                while hour < current:
                    e = self._slot_expectation(state, hour)
                    if e is None:
                        judged = False
                        break
                    expected += e
                    observed += state.counts.get(hour, 0)
                    hour += HOUR
                if not judged or expected < self.min_expected or observed > self.drop_ratio * expected:
                    if state.alert_since is not None:
                        log.info("source %s recovered: %d posts in the last %d h", source, observed,
                                 self.window_hours)
                        state.alert_since = None
                    continue
                if state.alert_since is None:
                    silent_since = state.last_seen if observed == 0 else None
                    state.alert_since = silent_since if silent_since is not None else window_start
                alerts.append(SourceAlert(
                    source=source, observed=observed, expected=expected, since=state.alert_since,
                    message=self._message(source, observed, expected, state.alert_since, state.last_seen)))
        return alerts

    def _message(self, source: str, observed: int, expected: float, since: datetime,
                 last_seen: datetime | None) -> str:
        name = SOURCE_ZH.get(source, source)
        local = since.astimezone(self.tz).strftime("%m-%d %H:%M")
        if observed == 0:
            last = last_seen.astimezone(self.tz).strftime("%m-%d %H:%M") if last_seen else "未知"
            return (f"数据源「{name}」已静默：近 {self.window_hours} 小时未收到任何数据（通常约 {expected:.0f} 条），"
                    f"最后一条数据在 {last}，请检查采集程序或接口。")
        return (f"数据源「{name}」数据量骤降：近 {self.window_hours} 小时仅收到 {observed} 条，"
                f"通常约 {expected:.0f} 条（{observed / expected:.0%}），自 {local} 起，请检查采集程序或接口。")


def source_alert_notification(alert: SourceAlert, *, channel: str = "wecom", target: str = "office") -> Notification:
    """The admin notification for one alert; its id is stable per source and outage start hour."""
    hour = _hour(alert.since).strftime("%Y%m%d%H")
    title = "数据源静默" if alert.silent else "数据源数据量骤降"
    return Notification(
        id=f"source.silent:{alert.source}:{hour}"[:80], channel=channel, target=target, kind="source.silent",
        subject=f"{title}：{SOURCE_ZH.get(alert.source, alert.source)}",
        markdown=f"**{title}**\n> {alert.message}", text=alert.message,
        payload={"source": alert.source, "observed": alert.observed, "expected": round(alert.expected, 1),
                 "since": alert.since.isoformat()},
    )


def enqueue_source_alerts(session: Session, alerts: list[SourceAlert], *, channel: str = "wecom",
                          target: str = "office") -> int:
    """Queue one notification per alert in ``session``'s transaction; returns how many were new."""
    new = 0
    for alert in alerts:
        if enqueue(session, source_alert_notification(alert, channel=channel, target=target)):
            new += 1
            log.warning("source health: %s", alert.message)
    return new


def run_source_health(*, health: SourceHealth, post_store: PostStore, db: Database, now: datetime,
                      channel: str = "wecom", target: str = "office") -> list[SourceAlert]:
    """Sync from the post store, judge every source, queue notifications; for the scheduler loop."""
    health.sync_from_store(post_store, now)
    alerts = health.check(now)
    if alerts:
        with db.transaction() as session:
            enqueue_source_alerts(session, alerts, channel=channel, target=target)
    return alerts
