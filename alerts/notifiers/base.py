"""The notifier contract: deliver one notification, say whether a failure is worth retrying.

Lifecycle: built once by ``core.wiring`` from settings; ``send`` is called by the outbox sender,
one notification at a time, possibly again for the same ``Notification.id`` after a crash, so
implementations that can pass an idempotency key to the far side do so.

Failure: ``RetryableSendError`` (timeouts, rate limits, busy) makes the outbox retry with backoff;
``PermanentSendError`` (bad key, rejected message) stops retries and marks the target broken.
Errors never carry secrets (keys, passwords, full webhook URLs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, Field


class Notification(BaseModel):
    """One message to one target on one channel. ``id`` is the idempotency key."""

    id: str
    channel: str  # wecom | email | webhook
    target: str  # unit id, "office", or an address
    kind: str  # ticket.created | ticket.level | ticket.remind | ticket.overdue | ticket.escalated | ...
    subject: str
    markdown: str = ""
    text: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)
    mentions: list[str] = Field(default_factory=list)  # WeChat Work user ids or mobiles


class Notifier(ABC):
    """Sends notifications on one channel."""

    channel: str = "base"

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver, or raise RetryableSendError / PermanentSendError."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
