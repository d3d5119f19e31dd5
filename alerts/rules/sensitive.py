"""SensitiveTermsRule: sensitive terms (死亡、爆炸、群体性 ...) warn at once, and a crowd escalates.

Options (all optional; the defaults are the lists below)::

    groups:                     # each group has a level for a single post that mentions it
      - {name: 伤亡, level: yellow, terms: [死亡, 遇难, 身亡, 跳楼]}
    ignore_phrases: [未造成人员伤亡, 无人员伤亡]   # negated contexts removed from the text before matching
    crowd: {orange: 10, red: 50}  # distinct authors in the event who mentioned any term → at least this level
    window_hours: 72             # forget an event's authors after this long without a new mention
    max_events: 20000            # bound on events tracked at once (least recently mentioned dropped first)

Authors are counted per event by ``author_hash``; a post without one counts as its own author, so
anonymous hotline orders are not merged into one person. Only authors who used a sensitive term count:
a big calm event with one alarming post stays at the single-post level.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts.expr import normalise_text
from alerts.rules._config import (
    RuleConfigError,
    aware,
    check_config,
    level,
    level_map,
    level_zh,
    moment_of,
    number,
)
from alerts.rules.base import Match, Rule
from alerts.rules.watchlist import post_text
from core.records import AnalyzedPost, Event, WarningLevel

log = logging.getLogger(__name__)

DEFAULT_GROUPS: list[dict[str, Any]] = [
    {"name": "人员伤亡", "level": "yellow", "terms": ["死亡", "遇难", "身亡", "丧生", "跳楼", "溺亡", "伤亡"]},
    {"name": "事故灾难", "level": "yellow", "terms": ["爆炸", "坍塌", "倒塌", "起火", "火灾", "泄漏", "塌方"]},
    {"name": "食品药品与公共卫生", "level": "yellow", "terms": ["食物中毒", "中毒", "疫情", "传染病", "假疫苗"]},
    {"name": "群体性事件", "level": "yellow",
     "terms": ["群体性", "聚集", "维权", "拆迁冲突", "堵路", "围堵", "集体上访", "讨薪"]},
]
DEFAULT_IGNORE = ["未造成人员伤亡", "无人员伤亡", "无人死亡", "无人员死亡", "没有人员伤亡", "未发生泄漏"]
DEFAULT_CROWD = {"orange": 10, "red": 50}


@dataclass
class _EventState:
    authors: OrderedDict[str, None] = field(default_factory=OrderedDict)
    last: datetime | None = None


@dataclass(frozen=True)
class _Group:
    name: str
    level: WarningLevel
    terms: tuple[tuple[str, str], ...]  # (normalised, as written)


class SensitiveTermsRule(Rule):
    """Any sensitive term → the group's level; more distinct authors in the event → higher."""

    OPTIONS = ("groups", "ignore_phrases", "crowd", "window_hours", "max_events")

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        cfg = check_config(config, self.OPTIONS)
        super().__init__(name, cfg)
        self.groups = self._groups(cfg.get("groups", DEFAULT_GROUPS))
        ignore = cfg.get("ignore_phrases", DEFAULT_IGNORE)
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise RuleConfigError(f"ignore_phrases must be a list of text, got {ignore!r}")
        # Longest first so that 无人员死亡 is removed before 无人死亡 could split it.
        self.ignore = sorted({p for p in (normalise_text(x) for x in ignore) if p}, key=len, reverse=True)
        self.crowd = level_map(cfg.get("crowd", DEFAULT_CROWD), "crowd")
        self.window = timedelta(hours=number(cfg, "window_hours", 72, minimum=0.01))
        self.max_events = int(number(cfg, "max_events", 20000, minimum=1))
        # Counting beyond the highest crowd threshold changes nothing, so per-event state stays small.
        self._cap = int(max(self.crowd.values())) if self.crowd else 1
        self._events: OrderedDict[str, _EventState] = OrderedDict()

    @staticmethod
    def _groups(raw: Any) -> tuple[_Group, ...]:
        if not isinstance(raw, list) or not raw:
            raise RuleConfigError("groups must be a non-empty list of {name, level, terms}")
        groups: list[_Group] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise RuleConfigError(f"groups[{i}] must be a mapping {{name, level, terms}}, got {item!r}")
            unknown = sorted(set(item) - {"name", "level", "terms"})
            if unknown:
                raise RuleConfigError(f"groups[{i}]: unknown option(s) {', '.join(map(str, unknown))}")
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise RuleConfigError(f"groups[{i}]: name must be non-empty text")
            terms = item.get("terms")
            if not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms):
                raise RuleConfigError(f"groups[{i}] ({name}): terms must be a non-empty list of text")
            pairs = tuple((normalise_text(t), t) for t in terms if normalise_text(t))
            if not pairs:
                raise RuleConfigError(f"groups[{i}] ({name}): every term is empty after normalisation")
            groups.append(_Group(name, level(item.get("level", "yellow"), f"groups[{i}] ({name}).level"), pairs))
        return tuple(groups)

    def _hits(self, text: str) -> list[tuple[_Group, list[str]]]:
        for phrase in self.ignore:
            if phrase in text:
                text = text.replace(phrase, "\n")
        out: list[tuple[_Group, list[str]]] = []
        for group in self.groups:
            found = [shown for norm, shown in group.terms if norm in text]
            if found:
                out.append((group, found))
        return out

    def add_data(self, post: AnalyzedPost, event: Event) -> list[Match]:
        """Record the author if the post has a sensitive term; fire at max(group level, crowd level)."""
        hits = self._hits(post_text(post))
        if not hits:
            return []
        at = moment_of(post, event)
        state = self._events.get(event.id)
        if state is None:
            state = self._events[event.id] = _EventState()
        self._events.move_to_end(event.id)
        author = post.author_hash or f"post:{post.id}"
        if author not in state.authors and len(state.authors) < self._cap:
            state.authors[author] = None
        state.last = at if state.last is None else max(state.last, at)
        while len(self._events) > self.max_events:
            self._events.popitem(last=False)

        authors = len(state.authors)
        lvl = max(group.level for group, _ in hits)
        crowd_level: WarningLevel | None = None
        for crowd_lvl, needed in self.crowd.items():
            if authors >= needed:
                crowd_level = crowd_lvl
        terms = list(dict.fromkeys(t for _, found in hits for t in found))
        group_names = [group.name for group, _ in hits]
        reason = f"敏感词「{'、'.join(terms)}」（{'、'.join(group_names)}），本事件 {authors} 位不同作者提及"
        if crowd_level is not None and crowd_level > lvl:
            lvl = crowd_level
            reason += f"，达到 {self.crowd[crowd_level]:g} 位（{level_zh(crowd_level)}阈值）"
        else:
            reason += f"（{level_zh(lvl)}）"
        return [
            Match(
                rule=self.name,
                event_id=event.id,
                level=lvl,
                reason=reason,
                at=at,
                details={"terms": terms, "groups": group_names, "authors": authors},
            )
        ]

    def garbage_collect(self, now: datetime) -> None:
        """Forget events with no sensitive mention within the window."""
        cutoff = aware(now) - self.window
        stale = [eid for eid, st in self._events.items() if st.last is None or st.last < cutoff]
        for eid in stale:
            del self._events[eid]
        if stale:
            log.debug("%s: forgot %d quiet events", self.name, len(stale))
