"""Per-credential request rates: a token bucket per key, in this replica's memory.

Each replica limits on its own, so behind N replicas a client can make up to N times the
rate; the limit is there to stop a runaway script or a leaked token from flooding the
server, not to meter use exactly.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class RateLimiter:
    """``rate`` requests per second per key, in bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._max_keys = max_keys

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        """Spend one request of ``key``: 0 if allowed, else the seconds until it would be."""
        if not self.enabled:
            return 0.0
        now = time.monotonic()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.rate
        while len(self._buckets) > self._max_keys:  # the least recently seen go first
            self._buckets.popitem(last=False)
        return wait


__all__ = ["RateLimiter"]
