"""Login throttling that slows password guessing without locking real users out or naming accounts.

Three counters, all in memory (per API process), all answering the same way for existing and unknown
user names, so a refusal says nothing about whether an account exists:

- per (address, account): after ``pair_failures`` failed logins within ``window_s`` that address may not
  try that name again until the oldest failure leaves the window. A stranger elsewhere never touches the
  real user's counter, so wrong passwords from one place cannot lock the account for everyone.
- per account, across addresses (a guessing botnet): after ``account_failures`` failures within the window,
  only addresses that logged in to that account successfully before (``trusted_s``) may keep trying.
- per address (any name): the token bucket in ``api.observability`` in front of the login route.

A correct password clears the pair's counter and trusts the address for the account.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable


def account_key(username: str) -> str:
    """The counter key of a typed user name (case and width folded, so ``Admin`` and ``ａｄｍｉｎ`` count together)."""
    return unicodedata.normalize("NFKC", username).strip().casefold()[:64]


class _Window:
    """Failure times per key within a sliding window; least recently used keys dropped beyond ``max_keys``."""

    def __init__(self, *, window_s: float, max_keys: int) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._times: OrderedDict[object, deque[float]] = OrderedDict()

    def recent(self, key: object, now: float) -> deque[float]:
        times = self._times.pop(key, None) or deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        self._times[key] = times
        while len(self._times) > self.max_keys:
            self._times.popitem(last=False)
        return times

    def clear(self, key: object) -> None:
        self._times.pop(key, None)


class LoginThrottle:
    """Decides whether a login attempt may proceed, and learns from its outcome."""

    def __init__(self, *, pair_failures: int = 5, account_failures: int = 50, window_s: float = 900.0,
                 trusted_s: float = 30 * 86400.0, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if pair_failures < 1 or account_failures < 1 or window_s <= 0:
            raise ValueError("login throttle needs failures >= 1 and a positive window")
        self.pair_failures = pair_failures
        self.account_failures = account_failures
        self.window_s = window_s
        self.trusted_s = trusted_s
        self.clock = clock
        self._pairs = _Window(window_s=window_s, max_keys=max_keys)
        self._accounts = _Window(window_s=window_s, max_keys=max_keys)
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def wait(self, *, address: str, username: str) -> float:
        """Seconds until this address may try this name again (0.0: go ahead)."""
        account = account_key(username)
        now = self.clock()
        with self._lock:
            pair = self._pairs.recent((address, account), now)
            if len(pair) >= self.pair_failures:
                return max(1.0, pair[-self.pair_failures] + self.window_s - now)
            everyone = self._accounts.recent(account, now)
            if len(everyone) >= self.account_failures and not self._is_trusted(address, account, now):
                return max(1.0, everyone[-self.account_failures] + self.window_s - now)
            return 0.0

    def failed(self, *, address: str, username: str) -> None:
        """Count a wrong password (or unknown name: counted exactly the same)."""
        account = account_key(username)
        now = self.clock()
        with self._lock:
            self._pairs.recent((address, account), now).append(now)
            self._accounts.recent(account, now).append(now)

    def succeeded(self, *, address: str, username: str) -> None:
        """Clear this address's failures on the account and trust the address for it."""
        account = account_key(username)
        now = self.clock()
        with self._lock:
            self._pairs.clear((address, account))
            self._trusted.pop((address, account), None)
            self._trusted[(address, account)] = now
            while len(self._trusted) > self._max_keys:
                self._trusted.popitem(last=False)

    def reset(self) -> None:
        """Forget everything (an operator unblocking, or a test starting clean)."""
        with self._lock:
            self._pairs = _Window(window_s=self.window_s, max_keys=self._max_keys)
            self._accounts = _Window(window_s=self.window_s, max_keys=self._max_keys)
            self._trusted.clear()

    def _is_trusted(self, address: str, account: str, now: float) -> bool:
        at = self._trusted.get((address, account))
        return at is not None and now - at < self.trusted_s
