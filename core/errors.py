"""Typed errors shared across stages. Each says whether retrying can help."""

from __future__ import annotations


class YuqingError(Exception):
    """Base of all yuqing errors."""


class RecordError(YuqingError):
    """One input record is invalid; it goes to the dead-letter store with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendUnavailable(YuqingError):
    """A server (Kafka, Elasticsearch, PostgreSQL, SMTP, webhook) did not answer in time; retry later."""


class ConflictError(YuqingError):
    """An optimistic-version check failed: someone else changed the row first; re-read and retry."""


class NotFound(YuqingError):
    """The thing asked for does not exist (or the caller may not know it exists)."""


class Forbidden(YuqingError):
    """The caller's role or unit may not do this."""


class InvalidTransition(YuqingError):
    """A ticket action that the state machine does not allow from the current state."""


class SendError(YuqingError):
    """A notification could not be delivered."""

    retryable: bool = False


class RetryableSendError(SendError):
    """Delivery failed for a passing reason (rate limit, busy, timeout): retry with backoff."""

    retryable = True


class PermanentSendError(SendError):
    """Delivery can never succeed as is (bad key, robot removed, rejected format): stop retrying."""

    retryable = False
