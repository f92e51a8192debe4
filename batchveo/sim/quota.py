"""The simulator's quotas: requests per minute, submits per day, operations at once.

Only accepted submits count toward ``rpm_limit``, ``rpd_limit`` and ``balance_submits``
(polls too toward ``rpm_limit`` with ``count_polls_in_rpm``). ``rpm_limit`` is a sliding
window of ``rate_window_s``. ``rpd_limit`` is a per-day quota: past it, submits get a 429
whose QuotaFailure names PerDay, until the next quota day (``day_s`` long, counted from the
simulator's start; Google resets at midnight Pacific). ``max_concurrent_ops`` counts the
operations still generating. A quota 429 gives the real time to a free slot.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from batchveo.sim.config import SimConfig
from batchveo.sim.ops import Operations

_METRIC = "generativelanguage.googleapis.com/predict_long_running_requests"


@dataclass(frozen=True)
class Violation:
    """A quota a request would break: the QuotaFailure violation, and when it frees up."""

    quota: dict[str, Any]
    delay_s: float
    per_day: bool = False


class Quotas:
    """What the limits count, since the simulator started."""

    def __init__(self, start: float) -> None:
        self.accepted = 0  # every accepted submit, for balance_submits
        self._rpm: deque[float] = deque()  # what rpm_limit counts (submits, maybe polls)
        self._window: deque[float] = deque()  # accepted submits, for max_submits_in_window
        self._day_start = start
        self._day = (0, 0)  # (quota day since start, accepted submits in it) for rpd_limit

    def check(
        self, cfg: SimConfig, now: float, model: str, ops: Operations | None
    ) -> Violation | None:
        """The quota a submit (``ops`` given) or a poll (``ops`` None) would break now."""
        rpm = self._rpm
        while rpm and rpm[0] <= now - cfg.rate_window_s:
            rpm.popleft()
        dims = {"location": "global", "model": model}
        day, today = self._today(cfg, now)
        if ops is not None and cfg.rpd_limit is not None and today >= cfg.rpd_limit:
            # Not a wait-a-minute 429: the day's quota is spent (Google names it PerDay).
            delay = self._day_start + (day + 1) * cfg.day_s - now
            quota = _quota(_METRIC, "PredictLongRunningRequestsPerDayPerProjectPerModel", dims)
            return Violation({**quota, "quotaValue": str(cfg.rpd_limit)}, delay, per_day=True)
        if cfg.rpm_limit is not None and len(rpm) >= cfg.rpm_limit:
            delay = rpm[0] + cfg.rate_window_s - now if rpm else cfg.rate_window_s
            quota = _quota(_METRIC, "PredictLongRunningRequestsPerMinutePerProjectPerModel", dims)
            return Violation({**quota, "quotaValue": str(cfg.rpm_limit)}, delay)
        if ops is not None and cfg.max_concurrent_ops is not None:
            if ops.running(now) < cfg.max_concurrent_ops:
                return None
            done_at = ops.next_done_at()
            delay = done_at - now if done_at is not None else cfg.retry_after_s
            quota = _quota(
                "generativelanguage.googleapis.com/concurrent_operations",
                "ConcurrentPredictLongRunningOperationsPerProject",
                dims,
            )
            return Violation({**quota, "quotaValue": str(cfg.max_concurrent_ops)}, delay)
        return None

    def count_submit(self, cfg: SimConfig, now: float) -> int:
        """Count an accepted submit; returns how many fall in the current rate window."""
        self.accepted += 1
        day, today = self._today(cfg, now)
        self._day = (day, today + 1)
        self._rpm.append(now)
        window = self._window
        window.append(now)
        while window and window[0] <= now - cfg.rate_window_s:
            window.popleft()
        return len(window)

    def count_poll(self, now: float) -> None:
        """Count a poll toward ``rpm_limit`` (``count_polls_in_rpm``)."""
        self._rpm.append(now)

    def _today(self, cfg: SimConfig, now: float) -> tuple[int, int]:
        """(which quota day ``now`` falls in, accepted submits already counted in it)."""
        day = int((now - self._day_start) // cfg.day_s)
        return day, (self._day[1] if self._day[0] == day else 0)


def _quota(metric: str, quota_id: str, dims: dict[str, str]) -> dict[str, Any]:
    return {"quotaMetric": metric, "quotaId": quota_id, "quotaDimensions": dims}
