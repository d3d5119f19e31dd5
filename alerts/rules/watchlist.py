"""WatchlistRule: keyword watch-lists (关键词方案) as boolean expressions, e.g. ``(A3区 | A4区) & 爆炸 & !演习``.

Options::

    expressions:
      - {name: A3A4区安全事故, expr: "(A3区 | A4区) & (爆炸 | 起火 | 泄漏) & !演习", level: orange}

Watch-lists edited in the database (the ``watchlists`` table) replace the set at run time through
``set_expressions``; the replacement is all-or-nothing in strict mode, so a half-valid edit never
leaves a half-applied set. Stateless apart from the current set of expressions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alerts.expr import Expression, normalise_text, parse
from alerts.rules._config import RuleConfigError, check_config, level, level_zh, moment_of
from alerts.rules.base import Match, Rule
from core.records import AnalyzedPost, Event, WarningLevel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watch:
    """One named, parsed watch-list expression."""

    name: str
    expression: Expression
    level: WarningLevel


def _field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, Mapping):
            if name in item:
                return item[name]
        elif hasattr(item, name):
            return getattr(item, name)
    return None


def build_watch(item: Any, index: int) -> Watch | None:
    """A Watch from a dict (``name, expr|expression, level, enabled``) or a WatchlistRow; None when disabled."""
    if _field(item, "enabled") is False:
        return None
    name = _field(item, "name")
    if not isinstance(name, str) or not name.strip():
        raise RuleConfigError(f"expressions[{index}]: name must be non-empty text, got {name!r}")
    source = _field(item, "expr", "expression")
    if not isinstance(source, str):
        raise RuleConfigError(f"expressions[{index}] ({name}): expr must be text, got {source!r}")
    try:
        expression = parse(source)
    except ValueError as exc:
        raise RuleConfigError(f"expressions[{index}] ({name}): {exc}") from None
    raw_level = _field(item, "level")
    lvl = level(2 if raw_level is None else raw_level, f"expressions[{index}] ({name}).level")
    return Watch(name=name.strip(), expression=expression, level=lvl)


def post_text(post: AnalyzedPost) -> str:
    """The post's title and text in the normalised form expressions are matched against."""
    text = post.text_norm.casefold() if post.text_norm else normalise_text(post.full_text)
    if post.title:
        title = normalise_text(post.title)
        if title and title not in text:
            text = f"{title}\n{text}"
    return text


class WatchlistRule(Rule):
    """Fires, at the watch-list's own level, for every post whose text satisfies one of the expressions."""

    OPTIONS = ("expressions",)

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        cfg = check_config(config, self.OPTIONS)
        super().__init__(name, cfg)
        self._lock = threading.Lock()
        self.watches: tuple[Watch, ...] = ()
        items = cfg.get("expressions", [])
        if not isinstance(items, list):
            raise RuleConfigError(f"expressions must be a list of {{name, expr, level}}, got {items!r}")
        self.set_expressions(items)

    def set_expressions(self, items: Iterable[Any], *, strict: bool = True) -> list[str]:
        """Replace the watch-lists; returns the problems found (strict: raise on the first, keep the old set).

        Items are dicts ``{name, expr (or expression), level, enabled}`` or objects with those attributes
        (``core.db.models.WatchlistRow``). Disabled items are skipped. Names must be unique.
        """
        watches: list[Watch] = []
        problems: list[str] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            try:
                watch = build_watch(item, index)
                if watch is not None and watch.name in seen:
                    raise RuleConfigError(f"expressions[{index}]: the name {watch.name!r} is used twice")
            except RuleConfigError as exc:
                if strict:
                    raise
                log.warning("watch-list skipped: %s", exc)
                problems.append(str(exc))
                continue
            if watch is not None:
                seen.add(watch.name)
                watches.append(watch)
        with self._lock:  # the worker thread may be reading while the API thread reloads
            self.watches = tuple(watches)
        return problems

    def add_data(self, post: AnalyzedPost, event: Event) -> list[Match]:
        """One match per watch-list the post satisfies, in list order."""
        watches = self.watches
        if not watches:
            return []
        text = post_text(post)
        matches: list[Match] = []
        for watch in watches:
            if not watch.expression.root.evaluate(text):
                continue
            hits = watch.expression.hits(text, normalised=True)
            shown = "、".join(hits) if hits else "（排除条件满足）"
            matches.append(
                Match(
                    rule=self.name,
                    event_id=event.id,
                    level=watch.level,
                    reason=f"命中关键词方案「{watch.name}」：{shown}（{level_zh(watch.level)}）",
                    at=moment_of(post, event),
                    details={"watchlist": watch.name, "expression": watch.expression.source, "hits": hits},
                )
            )
        return matches
