"""Deliver outbox rows: claim, send, record the outcome; retries with backoff; digests under rate limits.

Guarantees:
- a row is claimed (``claimed_by`` token + ``claimed_until`` lease) by one conditional UPDATE before it
  is sent, so two senders never send one row at the same time; a sender that dies mid-batch leaves
  its rows to be picked up when the lease runs out;
- each outcome is committed right after its send (sent rows are never claimed again), so a crash
  re-sends at most the one message that was in flight;
- a robot that answers 93000 is marked broken in ``target_status`` (the dashboard shows it to the
  admin) and its rows stay pending, unclaimed, until the admin repairs it: nothing is lost;
- when more rows wait for one rate-limited robot than it may take now, the surplus goes out as
  digest messages (several notifications in one); rows that still do not fit wait for a free slot.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, exists, or_, select, update

from alerts.notifiers.base import Notification, Notifier
from alerts.notifiers.redact import redact_urls
from alerts.ratelimit import RateLimiter
from core.db.models import OutboxRow, TargetStatusRow
from core.db.session import Database
from core.errors import PermanentSendError, RetryableSendError
from core.records import utcnow

log = logging.getLogger(__name__)


@dataclass
class SendStats:
    """What one ``run_once`` did."""

    claimed: int = 0
    sent: int = 0  # rows marked sent (digested rows included)
    messages: int = 0  # messages actually delivered (a digest counts once)
    digests: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0  # rows put back to wait for a rate-limit slot
    broken_targets: list[str] = field(default_factory=list)


@dataclass
class _Claimed:
    id: str
    channel: str
    target: str
    attempts: int
    notification: dict[str, Any]


class OutboxSender:
    """Sends pending outbox rows through the notifiers, one channel each."""

    def __init__(
        self,
        db: Database,
        notifiers: dict[str, Notifier],
        *,
        limiter: RateLimiter | None = None,
        worker_id: str = "sender",
        max_attempts: int = 8,
        backoff_base_s: float = 5.0,
        backoff_max_s: float = 3600.0,
        batch: int = 50,
        lease_s: float = 120.0,
        digest_max: int = 8,
        rate_limited_channels: Sequence[str] = ("wecom",),
        interval_s: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.notifiers = dict(notifiers)
        self.limiter = limiter or RateLimiter(per_minute=20)
        self.worker_id = worker_id
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.batch = batch
        self.lease = timedelta(seconds=lease_s)
        self.digest_max = max(2, digest_max)
        self.rate_limited = set(rate_limited_channels)
        self.interval_s = interval_s
        self.clock = clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- claiming -------------------------------------------------------------------------------

    def claim(self, now: datetime) -> tuple[str, list[_Claimed]]:
        """Claim up to ``batch`` due pending rows of configured channels and healthy targets."""
        token = f"{self.worker_id[:48]}:{uuid.uuid4().hex[:12]}"
        broken = exists().where(
            TargetStatusRow.channel == OutboxRow.channel,
            TargetStatusRow.target == OutboxRow.target,
            TargetStatusRow.broken.is_(True),
        )
        claimable = and_(
            OutboxRow.state == "pending",
            or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),
        )
        with self.db.transaction() as s:
            ids = list(
                s.scalars(
                    select(OutboxRow.id)
                    .where(claimable, OutboxRow.next_attempt_at <= now,
                           OutboxRow.channel.in_(list(self.notifiers)), ~broken)
                    .order_by(OutboxRow.created_at, OutboxRow.id)
                    .limit(self.batch)
                )
            )
            if not ids:
                return token, []
            # The WHERE is re-checked by the UPDATE itself: of two senders racing, one wins each row.
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(ids), claimable)
                .values(claimed_by=token, claimed_until=now + self.lease)
                .execution_options(synchronize_session=False)
            )
        with self.db.transaction() as s:
            rows = s.scalars(
                select(OutboxRow)
                .where(OutboxRow.claimed_by == token, OutboxRow.state == "pending")
                .order_by(OutboxRow.created_at, OutboxRow.id)
            ).all()
            return token, [_Claimed(r.id, r.channel, r.target, r.attempts, dict(r.notification)) for r in rows]

    # ---- outcomes ---------------------------------------------------------------------------------

    def _update(self, token: str, row_ids: Sequence[str], **values: Any) -> None:
        with self.db.transaction() as s:
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(list(row_ids)), OutboxRow.claimed_by == token)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    def _backoff(self, attempts: int) -> timedelta:
        base = min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, attempts - 1)))
        # Full-ish jitter keeps many rows that failed together from retrying in lockstep.
        return timedelta(seconds=base * (0.5 + self._rng.random() * 0.5))

    def _mark_sent(self, token: str, rows: Sequence[_Claimed], now: datetime, stats: SendStats) -> None:
        for r in rows:
            self._update(token, [r.id], state="sent", sent_at=now, attempts=r.attempts + 1, last_error=None,
                         claimed_by=None, claimed_until=None)
        stats.sent += len(rows)

    def _mark_retry(self, token: str, rows: Sequence[_Claimed], now: datetime, error: str,
                    stats: SendStats) -> None:
        for r in rows:
            attempts = r.attempts + 1
            if attempts >= self.max_attempts:
                log.error("outbox row %s dead after %d attempts: %s", r.id, attempts, error)
                self._update(token, [r.id], state="dead", attempts=attempts, last_error=error[:1000],
                             claimed_by=None, claimed_until=None)
                stats.dead += 1
            else:
                self._update(token, [r.id], attempts=attempts, last_error=error[:1000],
                             next_attempt_at=now + self._backoff(attempts), claimed_by=None, claimed_until=None)
                stats.retried += 1

    def _mark_dead(self, token: str, rows: Sequence[_Claimed], error: str, stats: SendStats) -> None:
        for r in rows:
            log.error("outbox row %s dead: %s", r.id, error)
            self._update(token, [r.id], state="dead", attempts=r.attempts + 1, last_error=error[:1000],
                         claimed_by=None, claimed_until=None)
        stats.dead += len(rows)

    def _release(self, token: str, rows: Sequence[_Claimed], *, next_at: datetime | None = None,
                 error: str | None = None, count_attempt: bool = False) -> None:
        for r in rows:
            values: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
            if next_at is not None:
                values["next_attempt_at"] = next_at
            if error is not None:
                values["last_error"] = error[:1000]
            if count_attempt:
                values["attempts"] = r.attempts + 1
            self._update(token, [r.id], **values)

    def _mark_broken(self, channel: str, target: str, reason: str, now: datetime) -> None:
        with self.db.transaction() as s:
            row = s.get(TargetStatusRow, (channel, target))
            if row is None:
                s.add(TargetStatusRow(channel=channel, target=target, broken=True, reason=reason, since=now))
            else:
                row.broken, row.reason, row.since = True, reason, now

    # ---- sending ------------------------------------------------------------------------------------

    def _deliver(self, token: str, rows: list[_Claimed], note: Notification, now: datetime,
                 stats: SendStats) -> bool:
        """Send one message for ``rows``; False when the target turned out broken."""
        notifier = self.notifiers[note.channel]
        # The slot is stamped with the clock now, not with the run's start: a run of slow sends takes a while,
        # and slots stamped early free up early, so the next run would send inside the robot's own window.
        at = max(now, self.clock())
        if note.channel in self.rate_limited and not self.limiter.acquire(note.target, at):
            self._release(token, rows, next_at=self.limiter.next_free(note.target, at))
            stats.deferred += len(rows)
            return True
        try:
            notifier.send(note)
        except RetryableSendError as exc:
            self._mark_retry(token, rows, now, str(exc), stats)
            return True
        except PermanentSendError as exc:
            if getattr(exc, "target_broken", False):
                self._mark_broken(note.channel, note.target, str(exc), now)
                self._release(token, rows, error=str(exc), count_attempt=True)
                stats.broken_targets.append(f"{note.channel}:{note.target}")
                return False
            if note.kind == "digest":
                # The digest itself was refused: the rows are fine alone, so retry them later.
                self._mark_retry(token, rows, now, f"digest rejected: {exc}", stats)
            else:
                self._mark_dead(token, rows, str(exc), stats)
            return True
        except Exception as exc:
            # A bug or an unexpected library error: keep the row and retry; max_attempts bounds it.
            # The traceback is logged with URLs cut down: an unexpected message might carry a robot key.
            trace = redact_urls("".join(traceback.format_exception(exc)))
            log.error("unexpected error sending outbox row(s) %s:\n%s", [r.id for r in rows], trace)
            self._mark_retry(token, rows, now, redact_urls(f"{type(exc).__name__}: {str(exc)[:200]}"), stats)
            return True
        self._mark_sent(token, rows, now, stats)
        stats.messages += 1
        if note.kind == "digest":
            stats.digests += 1
        return True

    def _plan(
        self, target: str, rows: list[_Claimed], now: datetime
    ) -> tuple[list[_Claimed], list[list[_Claimed]], list[_Claimed]]:
        """Split a rate-limited target's rows into (send alone, digests, wait) by the free slots."""
        free = self.limiter.available(target, now)
        n = len(rows)
        if n <= free:
            return rows, [], []
        if free == 0:
            return [], [], rows
        # d digests of up to digest_max rows plus (free - d) single messages, d as small as possible.
        digests_needed = math.ceil((n - free) / (self.digest_max - 1))
        d = min(free, digests_needed)
        singles = rows[: free - d]
        rest = rows[free - d:]
        chunks = [rest[i: i + self.digest_max] for i in range(0, min(len(rest), d * self.digest_max), self.digest_max)]
        waiting = rest[d * self.digest_max:]
        return singles, chunks, waiting

    def run_once(self, now: datetime | None = None) -> SendStats:
        """Claim due rows and deliver them; return what happened."""
        now = now or self.clock()
        stats = SendStats()
        token, rows = self.claim(now)
        stats.claimed = len(rows)
        groups: dict[tuple[str, str], list[_Claimed]] = {}
        for r in rows:
            groups.setdefault((r.channel, r.target), []).append(r)
        for (channel, target), group in groups.items():
            valid: list[tuple[_Claimed, Notification]] = []
            for r in group:
                try:
                    # The row's channel/target are what was claimed and rate-limited: they win over the JSON.
                    note = Notification.model_validate(r.notification)
                    valid.append((r, note.model_copy(update={"channel": r.channel, "target": r.target})))
                except ValidationError as exc:
                    self._mark_dead(token, [r], f"malformed notification: {exc.errors()[:1]}", stats)
            if channel in self.rate_limited:
                singles, chunks, waiting = self._plan(target, [r for r, _ in valid], now)
            else:
                singles, chunks, waiting = [r for r, _ in valid], [], []
            notes = {r.id: n for r, n in valid}
            if waiting:
                self._release(token, waiting, next_at=self.limiter.next_free(target, now))
                stats.deferred += len(waiting)
            alive = True
            pending_after_break: list[_Claimed] = []
            for r in singles:
                if not alive:
                    pending_after_break.append(r)
                    continue
                alive = self._deliver(token, [r], notes[r.id], now, stats)
            for chunk in chunks:
                if not alive:
                    pending_after_break.extend(chunk)
                    continue
                digest = Notification(
                    id=f"digest:{chunk[0].id}"[:80], channel=channel, target=target, kind="digest",
                    subject=f"预警通知汇总（{len(chunk)} 条）",
                    payload={"items": [notes[r.id].model_dump(mode="json") for r in chunk]},
                )
                log.info("rate limit reached for %s:%s, sending %d notifications as one digest",
                         channel, target, len(chunk))
                alive = self._deliver(token, chunk, digest, now, stats)
            if pending_after_break:
                self._release(token, pending_after_break)
        return stats

    # ---- embedded mode --------------------------------------------------------------------------------

    def start(self) -> None:
        """Run ``run_once`` every ``interval_s`` in a daemon thread until ``stop``."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"outbox-{self.worker_id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(self.clock())
            except Exception:
                log.exception("outbox sender run failed; will retry")
            self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to finish its current batch and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
