"""The rule contract (after ElastAlert2): feed data with ``add_data``, drop old state in ``garbage_collect``.

Lifecycle: rules are built from the YAML rules file at start-up, one instance per rule entry, and
live for the worker's life. ``add_data`` gets each analyzed post with its updated event and returns
the matches it produces (possibly none); ``garbage_collect(now)`` is called periodically so windows
never grow without bound. Rules are deterministic for a given input order (replays agree).

Failure: a rule never raises for odd data; a broken rules file fails at load with the file and
entry named.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.records import AnalyzedPost, Event, WarningLevel


class Match(BaseModel):
    """One rule firing for one event."""

    rule: str
    event_id: str
    level: WarningLevel
    reason: str  # human-readable, Chinese, shown on the ticket
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class Rule(ABC):
    """A rule type. Subclasses read their options from ``config``."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config

    @abstractmethod
    def add_data(self, post: AnalyzedPost, event: Event) -> list[Match]:
        """Consider one post (already counted into ``event``); return matches."""

    def garbage_collect(self, now: datetime) -> None:  # noqa: B027 - stateless rules need nothing
        """Forget state older than the rule's window."""
