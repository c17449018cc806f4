"""Token buckets per key (a client address): `per_minute` actions, refilled evenly over a
minute, so a burst of `per_minute` is allowed and then one every 60/per_minute seconds. Pure
and thread-safe; the clock is injectable for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - when) * self.rate)

    def blocked(self, key: str) -> float:
        """Seconds until `key` may act again; 0 when it may act now (nothing is taken)."""
        with self._lock:
            tokens = self._tokens(key, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: str) -> float:
        """Take one action for `key`: 0 when allowed (and counted), else the seconds to wait."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(key, now)
            if tokens < 1:
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > self.max_keys:
                self._forget_full(now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        """Bound the memory a flood of addresses can take: drop the buckets that refilled (they
        behave as new ones), then the oldest."""
        for key in [k for k in self._buckets if self._tokens(k, now) >= self.capacity]:
            del self._buckets[key]
        oldest = sorted(self._buckets, key=lambda k: self._buckets[k][1])
        for key in oldest[: max(0, len(self._buckets) - self.max_keys)]:
            del self._buckets[key]
