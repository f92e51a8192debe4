"""The simulator's quotas: requests per minute, submits per day, operations at once.

Only accepted submits count toward ``rpm_limit``, ``rpd_limit`` and ``balance_submits``
(polls too toward ``rpm_limit`` with ``count_polls_in_rpm``). ``rpm_limit`` is a sliding
window of ``rate_window_s``. ``rpd_limit`` is a per-day quota: past it, submits get a 429
whose QuotaFailure names PerDay, until the next quota day (``day_s`` long, counted from the
simulator's start; Google resets at midnight Pacific). ``max_concurrent_ops`` counts the
operations still generating. A quota 429 gives the real time to a free slot.

The Gemini format has one set of quotas for the whole simulator (a key's project). Vertex
counts per project and per region: the Vertex service keeps one ``Quotas`` per
(project, location), named as Vertex names them (``VERTEX_NAMES``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from batchveo.sim.config import SimConfig
from batchveo.sim.ops import Operations


@dataclass(frozen=True)
class QuotaNames:
    """How one service names its quotas in a ``QuotaFailure`` violation."""

    metric: str
    per_minute: str
    per_day: str
    concurrent_metric: str
    concurrent: str
    location_dim: str
    model_dim: str


GEMINI_NAMES = QuotaNames(
    metric="generativelanguage.googleapis.com/predict_long_running_requests",
    per_minute="PredictLongRunningRequestsPerMinutePerProjectPerModel",
    per_day="PredictLongRunningRequestsPerDayPerProjectPerModel",
    concurrent_metric="generativelanguage.googleapis.com/concurrent_operations",
    concurrent="ConcurrentPredictLongRunningOperationsPerProject",
    location_dim="location",
    model_dim="model",
)
VERTEX_METRIC = "aiplatform.googleapis.com/online_prediction_requests_per_base_model"
VERTEX_NAMES = QuotaNames(
    metric=VERTEX_METRIC,
    per_minute="OnlinePredictionRequestsPerMinutePerProjectPerRegionPerBaseModel",
    per_day="OnlinePredictionRequestsPerDayPerProjectPerRegionPerBaseModel",
    # Not published for Veo: the simulator's own name for its max_concurrent_ops.
    concurrent_metric=(
        "aiplatform.googleapis.com/online_prediction_concurrent_requests_per_base_model"
    ),
    concurrent="ConcurrentOnlinePredictionRequestsPerProjectPerRegionPerBaseModel",
    location_dim="region",
    model_dim="base_model",
)


@dataclass(frozen=True)
class Violation:
    """A quota a request would break: the QuotaFailure violation, and when it frees up."""

    quota: dict[str, Any]
    delay_s: float
    per_day: bool = False


class Quotas:
    """What the limits count, since the simulator started."""

    def __init__(
        self, start: float, names: QuotaNames = GEMINI_NAMES, location: str = "global"
    ) -> None:
        self.names = names
        self.location = location
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
        names = self.names
        dims = {names.location_dim: self.location, names.model_dim: model}
        day, today = self._today(cfg, now)
        if ops is not None and cfg.rpd_limit is not None and today >= cfg.rpd_limit:
            # Not a wait-a-minute 429: the day's quota is spent (Google names it PerDay).
            delay = self._day_start + (day + 1) * cfg.day_s - now
            quota = _quota(names.metric, names.per_day, dims)
            return Violation({**quota, "quotaValue": str(cfg.rpd_limit)}, delay, per_day=True)
        if cfg.rpm_limit is not None and len(rpm) >= cfg.rpm_limit:
            delay = rpm[0] + cfg.rate_window_s - now if rpm else cfg.rate_window_s
            quota = _quota(names.metric, names.per_minute, dims)
            return Violation({**quota, "quotaValue": str(cfg.rpm_limit)}, delay)
        if ops is not None and cfg.max_concurrent_ops is not None:
            if ops.running(now) < cfg.max_concurrent_ops:
                return None
            done_at = ops.next_done_at()
            delay = done_at - now if done_at is not None else cfg.retry_after_s
            quota = _quota(names.concurrent_metric, names.concurrent, dims)
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
