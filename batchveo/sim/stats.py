"""What the simulator counts, for the tests and ``GET /__sim/stats``.

The tests' oracle of what the service saw: requests by endpoint and outcome (a status, or
``reset`` for a dropped connection), submits received and accepted per prompt ("never paid
twice" is ``submits_by_prompt``, both formats), a key or a bearer token sent where it does
not belong (``key_leaks``, ``key_in_url``, ``bearer_leaks``), and high-water marks such as
``max_concurrent_ops`` (the most in one quota scope: the Gemini format's, or one Vertex
project and region). ``vertex`` holds what only Vertex has (``VertexService.snapshot``):
submits per project and region, samples requested/returned/filtered, partial and empty
results, objects written, tokens issued and assertions refused. Reviews (``generateContent``,
``review``) are counted per video reviewed, by its digest (``reviews_by_video``), and in
``reviews``; the Files API's uploads finished in ``files_uploaded``, its deletions in
``files_deleted``. ``extensions`` and ``chains`` count scene chains' hops (``chains.Chains``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from batchveo.sim.chains import Chains

GEMINI_ENDPOINTS = ("submit", "poll", "download", "review", "upload", "file")
VERTEX_ENDPOINTS = (
    "vertex_submit",
    "vertex_poll",
    "vertex_operation",
    "vertex_review",
    "gcs",
    "token",
)
ENDPOINTS = (*GEMINI_ENDPOINTS, "storage", *VERTEX_ENDPOINTS)
"""``storage`` is the signed storage URL a redirected download points to (either format);
``vertex_operation`` a GET on an operation name (404 on Vertex); ``gcs`` the simulator's
own Cloud Storage; ``token`` the OAuth token endpoint; ``review`` and ``vertex_review``
each format's ``generateContent``; ``upload`` the Files API's upload starts and uploads,
``file`` its GETs and DELETEs of a file."""
COUNTERS: tuple[str, ...] = (
    "polls_after_done",
    "key_leaks",
    "bearer_leaks",
    "key_in_url",
    "quota_violations",
    "max_concurrent_ops",
    "max_submits_in_window",
    "truncated_downloads",
    "early_404s",
    "per_day_quota_429s",
    "reviews",
    "files_uploaded",
    "files_deleted",
)
ACCEPTED_TIMES_KEPT = 10_000
"""The most recent accepted submits' times kept for ``accepted_submit_times`` (pacing tests)."""


class Stats:
    """Counts since the simulator started."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, int]] = {k: {} for k in ENDPOINTS}
        self.received: dict[str, int] = {}
        self.accepted: dict[str, int] = {}
        self.reviews: dict[str, int] = {}
        """Reviews answered (a verdict or a refusal), by the reviewed video's digest."""
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._times: deque[float] = deque(maxlen=ACCEPTED_TIMES_KEPT)
        self.chains = Chains()

    def answered(self, endpoint: str, outcome: str) -> None:
        counts = self.requests[endpoint]
        counts[outcome] = counts.get(outcome, 0) + 1

    def receive(self, prompt: str) -> None:
        self.received[prompt] = self.received.get(prompt, 0) + 1

    def accept(self, prompt: str, now: float) -> int:
        """Count an accepted submit of ``prompt``; returns how many it makes for that prompt."""
        count = self.accepted[prompt] = self.accepted.get(prompt, 0) + 1
        self._times.append(now)
        return count

    def reviewed(self, video_digest: str) -> None:
        self.reviews[video_digest] = self.reviews.get(video_digest, 0) + 1
        self.counters["reviews"] += 1

    def high_water(self, counter: str, value: int) -> None:
        self.counters[counter] = max(self.counters[counter], value)

    def snapshot(
        self, operations: dict[str, int], running: int, vertex: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Everything, as ``GET /__sim/stats`` shows it (copies: safe to keep)."""
        return {
            "vertex": vertex or {},
            "requests": {kind: dict(counts) for kind, counts in self.requests.items()},
            "submits_by_prompt": dict(self.accepted),
            "received_by_prompt": dict(self.received),
            "reviews_by_video": dict(self.reviews),
            "operations": dict(operations),
            **self.counters,
            "running_ops": running,
            "accepted_submit_times": list(self._times),
            **self.chains.snapshot(),
        }
