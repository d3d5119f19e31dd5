"""WatchlistRule: keyword watch-lists (关键词方案) as boolean expressions, e.g. ``(A3区 | A4区) & 爆炸 & !演习``.

Options::

    expressions:
      - {name: A3A4区安全事故, expr: "(A3区 | A4区) & (爆炸 | 起火 | 泄漏) & !演习", level: orange}

Watch-lists edited in the database (the ``watchlists`` table) are applied at run time through
``set_expressions``: they add to the lists of the rules file, and one with the same name as a file
list replaces it (or, disabled, switches it off). Strict mode is all-or-nothing, so a half-valid edit
never leaves a half-applied set. Stateless apart from the current set of expressions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.expr import Expression, normalise_text, parse
from alerts.rules._config import RuleConfigError, check_config, level, level_zh, moment_of
from alerts.rules.base import Match, Rule
from core.db.models import WatchlistRow
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


def build_watch(item: Any, index: int) -> tuple[str, Watch | None]:
    """(name, Watch) from a dict (``name, expr|expression, level, enabled``) or a WatchlistRow; Watch is None
    when the item is disabled (its expression is then not checked: a switched-off draft may be unfinished)."""
    name = _field(item, "name")
    if not isinstance(name, str) or not name.strip():
        raise RuleConfigError(f"expressions[{index}]: name must be non-empty text, got {name!r}")
    name = name.strip()
    enabled = _field(item, "enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise RuleConfigError(f"expressions[{index}] ({name}): enabled must be true or false, got {enabled!r}")
    if enabled is False:
        return name, None
    source = _field(item, "expr", "expression")
    if not isinstance(source, str):
        raise RuleConfigError(f"expressions[{index}] ({name}): expr must be text, got {source!r}")
    try:
        expression = parse(source)
    except ValueError as exc:
        raise RuleConfigError(f"expressions[{index}] ({name}): {exc}") from None
    raw_level = _field(item, "level")
    lvl = level(2 if raw_level is None else raw_level, f"expressions[{index}] ({name}).level")
    return name, Watch(name=name, expression=expression, level=lvl)


def load_watchlist_rows(session: Session) -> list[WatchlistRow]:
    """Every row of the ``watchlists`` table in id order (disabled ones too: they switch file lists off)."""
    return list(session.scalars(select(WatchlistRow).order_by(WatchlistRow.id)))


def post_text(post: AnalyzedPost) -> str:
    """The post's title and text in the normalised form expressions are matched against.

    ``text_norm`` is the analyze stage's normalised ``full_text`` (title included), so it is used as is;
    only a post without it (a record from elsewhere) is normalised here.
    """
    if post.text_norm:
        return post.text_norm.casefold()
    return normalise_text(post.full_text)


class WatchlistRule(Rule):
    """Fires, at the watch-list's own level, for every post whose text satisfies one of the expressions."""

    OPTIONS = ("expressions",)

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        cfg = check_config(config, self.OPTIONS)
        super().__init__(name, cfg)
        self._lock = threading.Lock()
        items = cfg.get("expressions", [])
        if not isinstance(items, list):
            raise RuleConfigError(f"expressions must be a list of {{name, expr, level}}, got {items!r}")
        configured, _ = self._build(items, strict=True)
        self._configured: dict[str, Watch | None] = configured
        self._runtime: dict[str, Watch | None] = {}
        self.watches: tuple[Watch, ...] = self._combine()

    @staticmethod
    def _build(items: Iterable[Any], *, strict: bool) -> tuple[dict[str, Watch | None], list[str]]:
        out: dict[str, Watch | None] = {}
        problems: list[str] = []
        for index, item in enumerate(items):
            try:
                name, watch = build_watch(item, index)
                if name in out:
                    raise RuleConfigError(f"expressions[{index}]: the name {name!r} is used twice")
            except RuleConfigError as exc:
                if strict:
                    raise
                log.warning("watch-list skipped: %s", exc)
                problems.append(str(exc))
                continue
            out[name] = watch
        return out, problems

    def _combine(self) -> tuple[Watch, ...]:
        # Configured lists first (file order), each replaced or switched off by a run-time one of the
        # same name; then the run-time additions in their order.
        merged = {**self._configured, **self._runtime}
        return tuple(w for w in merged.values() if w is not None)

    def set_expressions(self, items: Iterable[Any], *, strict: bool = True) -> list[str]:
        """Replace the run-time watch-lists (from the ``watchlists`` table); returns the problems found.

        Items are dicts ``{name, expr (or expression), level, enabled}`` or objects with those attributes
        (``core.db.models.WatchlistRow``). The lists from the rules file stay in force unless an item has
        the same name: then the item replaces it (``enabled: false`` switches it off). Strict: the first
        problem raises and the previous set stays; lenient: bad items are skipped, logged and returned.
        """
        runtime, problems = self._build(items, strict=strict)
        with self._lock:  # the API thread may reload while the worker thread reads ``watches``
            self._runtime = runtime
            self.watches = self._combine()
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
