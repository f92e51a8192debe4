"""What ``status`` (and later the report and notifications) say about a database.

Plain data, so the CLI can print it as a table or as JSON and tests can assert
on it without parsing text.
"""

from __future__ import annotations

from typing import Any

from batchveo.models import RETENTION_S
from batchveo.states import JobState
from batchveo.store import Store

AT_RISK_S = 12 * 3600
"""A generated video with less than this left before the server deletes it is at risk."""


def _state_counts(counts: dict[str, int]) -> dict[str, int]:
    return {s.value: counts.get(s.value, 0) for s in JobState}


async def status_data(
    store: Store, *, retention_s: float = RETENTION_S, at_risk_s: float = AT_RISK_S
) -> dict[str, Any]:
    now = store.clock()
    per_batch = await store.counts()
    overall: dict[str, int] = {}
    batches: dict[str, Any] = {}
    for batch, counts in per_batch.items():
        for state, n in counts.items():
            overall[state] = overall.get(state, 0) + n
        batches[batch] = {"total": sum(counts.values()), "states": _state_counts(counts)}
    generated = await store.jobs([JobState.GENERATED], order="generated_at")
    at_risk = []
    for job in generated:
        left_s = (job.generated_at or now) + retention_s - now
        if left_s < at_risk_s:
            at_risk.append(
                {"id": job.id, "batch": job.batch, "hours_left": round(left_s / 3600, 1)}
            )
    uncertain = [
        {"id": j.id, "batch": j.batch, "error": j.error}
        for j in await store.jobs([JobState.UNCERTAIN])
    ]
    return {
        "total": sum(overall.values()),
        "states": _state_counts(overall),
        "batches": batches,
        "at_risk": at_risk,
        "uncertain": uncertain,
    }
