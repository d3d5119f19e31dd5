"""The transactional outbox: notifications are rows written with the change that caused them.

``enqueue`` is called inside the caller's transaction (a ticket change and its notifications commit
or roll back together); ``alerts.sender`` delivers pending rows later with retries, so a crash
between the write and the send loses nothing, and the row id (idempotency key) means a notification
is never queued twice.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from alerts.notifiers.base import Notification
from core.db.models import OutboxRow


def enqueue(session: Session, notification: Notification) -> bool:
    """Add a notification to the outbox in ``session``'s transaction; False if its id is queued already."""
    if session.get(OutboxRow, notification.id) is not None:
        return False
    session.add(
        OutboxRow(
            id=notification.id,
            channel=notification.channel,
            target=notification.target,
            kind=notification.kind,
            notification=notification.model_dump(mode="json"),
        )
    )
    return True
