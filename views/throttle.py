"""Throttling of password guesses with the ``limits`` library (fixed windows, counted in Redis when the app
has one, so every web process and machine counts together; in memory otherwise).

Only failures are counted: a school's computer room shares one address and its successful logins must never
be slowed. If Redis stops answering, counting goes on in this process's memory until it is back — a login
never fails because of the throttle's storage.
"""
from __future__ import annotations

import logging

from flask import current_app
from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

log = logging.getLogger(__name__)


class Throttle:
    def __init__(self, uri: str):
        self.uri = uri
        options = {"socket_connect_timeout": 1, "socket_timeout": 1} if uri.startswith("redis") else {}
        self.storage = storage_from_string(uri, **options)
        self.fallback = MemoryStorage()
        self._limiter = FixedWindowRateLimiter(self.storage)
        self._fallback = FixedWindowRateLimiter(self.fallback)

    def _call(self, name: str, limit: str, key: tuple[str, ...]) -> bool:
        item = parse(limit)
        try:
            return getattr(self._limiter, name)(item, "cqe", *key)
        except Exception as exc:  # noqa: BLE001 - storage down: count in memory meanwhile
            log.warning("throttle storage %s unavailable (%s); counting in memory", self.uri.split("@")[-1], exc)
            return getattr(self._fallback, name)(item, "cqe", *key)

    def allowed(self, limit: str, *key: str) -> bool:
        """Whether one more failure would still be within the limit (does not count)."""
        return self._call("test", limit, key)

    def failed(self, limit: str, *key: str) -> None:
        """Count one failure."""
        self._call("hit", limit, key)

    def attempt(self, limit: str, *key: str) -> bool:
        """Count one attempt, whatever its outcome, and say whether it is within the limit (the public results
        lookup counts every try per address, views/lookup.py)."""
        return self._call("hit", limit, key)

    def reset(self) -> None:
        self.fallback.reset()
        try:
            self.storage.reset()
        except Exception:  # noqa: BLE001
            pass


def init_throttle(app) -> None:
    app.extensions["cqe_throttle"] = Throttle(app.config.get("CQE_THROTTLE_STORAGE") or "memory://")


def throttle() -> Throttle:
    return current_app.extensions["cqe_throttle"]
