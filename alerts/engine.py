"""The rule engine: every rule sees every post; the strongest match for the event wins.

Strongest = highest level; on a tie, the rule earlier in the rules file (and its first match).

Re-firing: the engine never lowers a level (the ticket service keeps one open ticket per event and
only raises it). To keep tickets and robots quiet, the engine suppresses a match that is not above the
level it last returned for the same event. With ``refire_after`` set, the same level is returned again
once that long has passed since it was last returned, as a reminder that the event is still hot (the
ticket service treats it as an update, never a duplicate); the default is no reminders, because chasing
an open ticket is the deadline service's job (催办). Memory of past firings is dropped by
``garbage_collect`` once an event has had no match for ``forget_after``, so an event that flares up again
later warns again; after a restart the memory is empty and the first match per event is returned again,
which the ticket service absorbs as an update. Time is the match's own (data) time, so replays agree.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.rules._config import aware
from alerts.rules.base import Match, Rule
from alerts.rules.watchlist import WatchlistRule
from core.records import AnalyzedPost, Event, WarningLevel

log = logging.getLogger(__name__)
REPLAY_MEMORY = 10_000  # answers remembered for retried batches (far more than one batch)


@dataclass
class _Fired:
    level: WarningLevel
    at: datetime  # when this level was last returned
    seen: datetime  # the latest match (any level) for the event


class RuleEngine:
    """Runs the rules in file order for each post and returns at most one match per post."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        refire_after: timedelta | None = None,
        forget_after: timedelta = timedelta(hours=72),
    ) -> None:
        names = [rule.name for rule in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; used twice: {', '.join(duplicates)}")
        self.rules = list(rules)
        self.refire_after = refire_after
        self.forget_after = forget_after
        self._fired: dict[str, _Fired] = {}
        # The latest answers by post id: a batch retried after a failed database write presents the same posts
        # again; the rules must not count them twice, and the retry must open the tickets the failed try would have.
        self._answered: OrderedDict[tuple[str, str], Match | None] = OrderedDict()
        self.suppressed = 0
        self.rule_errors = 0

    def matches(self, post: AnalyzedPost, event: Event) -> list[Match]:
        """Every rule's matches for this post, in rule order (all rules are fed, whatever the others say)."""
        out: list[Match] = []
        for rule in self.rules:
            try:
                found = rule.add_data(post, event)
            except Exception:
                # A rule must not raise; if one does anyway, the others still run and the post is not lost.
                self.rule_errors += 1
                log.exception("rule %s failed on post %s (event %s); skipped", rule.name, post.id, event.id)
                continue
            out.extend(m for m in found if m.event_id == event.id)
        return out

    @staticmethod
    def strongest(matches: Sequence[Match]) -> Match | None:
        """Highest level; the first one on a tie."""
        best: Match | None = None
        for match in matches:
            if best is None or match.level > best.level:
                best = match
        return best

    def evaluate(self, post: AnalyzedPost, event: Event) -> Match | None:
        """The strongest new match for ``event`` after this post, or None (nothing fired, or suppressed)."""
        key = (post.id, event.id)
        if key in self._answered:
            return self._answered[key]
        answer = self._evaluate(post, event)
        self._answered[key] = answer
        if len(self._answered) > REPLAY_MEMORY:
            self._answered.popitem(last=False)
        return answer

    def _evaluate(self, post: AnalyzedPost, event: Event) -> Match | None:
        best = self.strongest(self.matches(post, event))
        if best is None:
            return None
        at = aware(best.at)
        fired = self._fired.get(event.id)
        if fired is not None:
            fired.seen = max(fired.seen, at)
            if best.level < fired.level:
                self.suppressed += 1
                return None
            if best.level == fired.level and (self.refire_after is None or at - fired.at < self.refire_after):
                self.suppressed += 1
                return None
        self._fired[event.id] = _Fired(level=best.level, at=at, seen=at if fired is None else fired.seen)
        return best

    def set_watchlists(self, items: Iterable[Any], *, strict: bool = False) -> list[str]:
        """Apply run-time watch-lists (e.g. ``load_watchlist_rows(session)``) to every watchlist rule.

        Lenient by default: a bad row in the table is skipped and reported, the others still apply.
        """
        items = list(items)
        problems: list[str] = []
        for rule in self.rules:
            if isinstance(rule, WatchlistRule):
                problems += [f"{rule.name}: {p}" for p in rule.set_expressions(items, strict=strict)]
        return problems

    def last_level(self, event_id: str) -> WarningLevel | None:
        """The level last returned for an event (None if none, or forgotten)."""
        fired = self._fired.get(event_id)
        return fired.level if fired else None

    def garbage_collect(self, now: datetime) -> None:
        """Let every rule drop old state, and forget firings of events quiet for ``forget_after``."""
        for rule in self.rules:
            try:
                rule.garbage_collect(now)
            except Exception:
                self.rule_errors += 1
                log.exception("rule %s failed to garbage-collect", rule.name)
        cutoff = aware(now) - self.forget_after
        for event_id in [eid for eid, f in self._fired.items() if f.seen < cutoff]:
            del self._fired[event_id]
