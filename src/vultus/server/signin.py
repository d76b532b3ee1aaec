"""The web sign-in's defences: a CSRF token before any session exists, and a limit on failures.

The sign-in form is the one form posted without a session, so its CSRF token is bound to
a pre-session cookie instead: GET /ui/login sets a random ``vultus_login`` cookie
(HttpOnly, SameSite=Strict) and puts an HMAC of it under the app's secret in the form;
POST /ui/login is refused (403) unless the two fit. Another site can neither read the
cookie nor make the field.

Failed attempts are counted in memory per client address and per account name: after
``MAX_FAILURES`` within ``WINDOW_SECONDS`` every attempt from that client or for that
account is refused (429) until the oldest failure leaves the window, correct ones too, so
that guessing cannot go on. An attempt is counted *before* its secret is checked, under
the limiter's lock (:meth:`FailureLimiter.reserve`), and the count is given back when the
secret was right: attempts sent in parallel cannot all pass the check before any failure
is recorded. A restart forgets the counts, which an attacker cannot cause.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

__all__ = ["LOGIN_COOKIE", "MAX_FAILURES", "WINDOW_SECONDS", "FailureLimiter", "LoginCsrf", "Reservation",
           "name_key", "same_token"]

LOGIN_COOKIE = "vultus_login"
MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
#: Keys tracked at most; the ones with the oldest failures are dropped first beyond it.
MAX_KEYS = 10_000


def same_token(expected: str, given: str | None) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time.

    Compared as UTF-8 bytes: :func:`hmac.compare_digest` raises on a non-ASCII ``str``,
    and a form field may hold any text.
    """
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"),
                               (given or "").encode("utf-8", "surrogatepass"))


def name_key(name: str) -> str:
    """The limiter's key for an account name: a digest, so that a huge name is not kept whole."""
    return "name:" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class LoginCsrf:
    """Makes and checks the sign-in form's token for a pre-session cookie."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    @staticmethod
    def new_cookie() -> str:
        """A fresh random pre-session cookie value."""
        return secrets.token_urlsafe(24)

    def token_for(self, cookie: str) -> str:
        """The form field that goes with ``cookie``."""
        return hmac.new(self._secret, cookie.encode(), hashlib.sha256).hexdigest()

    def check(self, cookie: str | None, token: str | None) -> bool:
        """Whether ``token`` is the one made for ``cookie``."""
        if not cookie or not token or len(cookie) > 100:
            return False
        return same_token(self.token_for(cookie), token)


class FailureLimiter:
    """Counts failed sign-ins per key (``client:ADDRESS``, ``name:NAME``) in a sliding window."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS):
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, keys: list[str]) -> float | None:
        """Seconds until one of ``keys`` may try again, or None when none is blocked."""
        now = time.monotonic()
        with self._lock:
            waits = [times[0] + self.window - now for key in keys
                     if len(times := self._recent(key, now)) >= self.max_failures]
        return max(waits) if waits else None

    def reserve(self, keys: list[str]) -> "Reservation":
        """Count one attempt under each of ``keys`` unless one of them is blocked.

        The check and the count are one step under the lock. When the reservation's ``wait``
        is not None the attempt is refused and nothing was counted; otherwise the attempt
        counts as failed until :meth:`release` gives it back.
        """
        now = time.monotonic()
        with self._lock:
            waits = [times[0] + self.window - now for key in keys
                     if len(times := self._recent(key, now)) >= self.max_failures]
            if waits:
                return Reservation(keys, now, max(waits))
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > MAX_KEYS:
                for key in sorted(self._failures, key=lambda k: self._failures[k][-1])[: len(self._failures) - MAX_KEYS]:
                    del self._failures[key]
        return Reservation(keys, now, None)

    def release(self, reservation: "Reservation") -> None:
        """Give back a reservation's count: its attempt succeeded."""
        if reservation.wait is not None:
            return
        with self._lock:
            for key in reservation.keys:
                times = self._failures.get(key)
                if times is not None and reservation.at in times:
                    times.remove(reservation.at)
                    if not times:
                        del self._failures[key]


class Reservation:
    """One attempt counted by :meth:`FailureLimiter.reserve`; ``wait`` is set when it was refused."""

    __slots__ = ("keys", "at", "wait")

    def __init__(self, keys: list[str], at: float, wait: float | None):
        self.keys = keys
        self.at = at
        self.wait = wait
