"""Which outbound channels ticket notifications go to, chosen from the settings of the process.

``alerts.tickets.service.notify`` used to write every ticket notification for WeChat Work only, so a
configured webhook never received anything. The container calls ``configure`` with what is enabled;
notifications are then queued once per target on every chosen channel: WeChat Work robots when enabled, the
signed webhook when configured, and WeChat Work alone when neither is (the old default: rows wait in the
outbox until a robot is configured).
"""

from __future__ import annotations

import threading

DEFAULT = ("wecom",)
_lock = threading.Lock()
_channels: tuple[str, ...] = DEFAULT


def choose(*, wecom: bool, webhook: bool) -> tuple[str, ...]:
    """The ticket channels for these settings."""
    chosen = tuple(name for name, on in (("wecom", wecom), ("webhook", webhook)) if on)
    return chosen or DEFAULT


def configure(*, wecom: bool, webhook: bool) -> tuple[str, ...]:
    """Set this process's ticket channels (called when the container is built); returns them."""
    global _channels
    with _lock:
        _channels = choose(wecom=wecom, webhook=webhook)
        return _channels


def ticket_channels() -> tuple[str, ...]:
    """The channels ticket notifications are queued on."""
    return _channels
