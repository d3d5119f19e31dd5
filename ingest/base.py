"""The source contract: yield raw records (bytes) with where they came from.

Lifecycle: an adapter is iterated once; in follow mode it keeps yielding as the source grows until
``stop()`` is called. Adapters never parse beyond splitting records: validation lives in
``ingest.validate`` so every source gets the same checks and the same dead-letter reasons.

Failure: an unreadable source (missing file, permission) raises ``OSError`` at iteration start;
a bad record is never an exception here, it is yielded as is and fails validation.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RawRecord:
    """One undecoded record and where it came from (``file.jsonl:17``, ``http``, ...)."""

    data: bytes
    origin: str
    source_hint: str | None = None  # the source to assume when the record does not say


class SourceAdapter(ABC):
    """Produces raw records."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask a following adapter to finish after the current record."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether stop() was called."""
        return self._stop.is_set()

    @abstractmethod
    def __iter__(self) -> Iterator[RawRecord]:
        """Yield raw records in source order."""
