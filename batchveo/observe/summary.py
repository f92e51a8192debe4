"""What ``status`` and the notifications say about a database.

Plain data, so the CLI can print it as a table or as JSON and tests can assert
on it without parsing text. Each batch says how many videos its answered jobs asked
for, got and had kept back by the safety filter (``samples``: Vertex jobs may ask for up
to four and get fewer), and ``routes`` lists each route the jobs were loaded with and
their states (``the run's`` for parts left to the run's flags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchveo import lock
from batchveo.models import RETENTION_S
from batchveo.routes import PROVIDER_WIRE, Route, Wire
from batchveo.states import JobState
from batchveo.store import Store

AT_RISK_S = 12 * 3600
"""A generated video with less than this left before the server deletes it is at risk."""
_NO_SAMPLES = {"jobs": 0, "requested": 0, "returned": 0, "filtered": 0, "partial": 0}
"""A batch none of whose jobs was answered with a count of videos (every Gemini-format
batch: one video per job, or none)."""


def _money(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def _state_counts(counts: dict[str, int]) -> dict[str, int]:
    return {s.value: counts.get(s.value, 0) for s in JobState}


def empty_status_data() -> dict[str, Any]:
    """What ``status`` says of a database that does not exist yet: the same shape as
    ``status_data``, every count zero (a monitor's first look must parse as usual)."""
    return {
        "total": 0,
        "states": _state_counts({}),
        "cost_usd": {"spent": 0.0, "committed": 0.0, "estimate": True},
        "batches": {},
        "at_risk": [],
        "uncertain": [],
        "routes": [],
        "reviews": _review_data({}, []),
        "chains": [],
    }


FLAGGED_LISTED = 50
"""Flagged takes ``status`` names (lowest score first); the rest are counted."""
_REVIEW_OUTCOMES = ("passed", "flagged", "error", "skipped")


def _review_data(
    per_batch: dict[str, dict[str, Any]],
    flagged: list[tuple[str, str, float | None]],
    takes: dict[str, dict[str, Any]] | None = None,
    notes: dict[str, str] | None = None,
    due: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The reviews' counts (overall and per batch), their cost, the flagged takes (with what
    became of their retake, ``notes``), and the retakes made and chosen (``takes``:
    ``Takes.retake_counts``); ``due``: the done takes of reviewed batches still waiting
    for their review (a budget held them back, a run was cut short)."""
    takes, due = takes or {}, due or {}
    empty = {**dict.fromkeys(_REVIEW_OUTCOMES, 0), "cost_usd": 0.0}
    per_batch = {**{b: empty for b in sorted(due) if b not in per_batch}, **per_batch}
    data: dict[str, Any] = {k: sum(b[k] for b in per_batch.values()) for k in _REVIEW_OUTCOMES}
    # A review costs a fraction of a cent: four decimals, not two.
    data["cost_usd"] = round(sum(b["cost_usd"] for b in per_batch.values()), 4)
    data["retakes"] = sum(t["retakes"] for t in takes.values())
    data["chosen_retakes"] = sum(t["chosen"] for t in takes.values())
    data["due"] = sum(due.values())
    data["batches"] = {
        name: {
            **{k: b[k] for k in _REVIEW_OUTCOMES},
            "cost_usd": round(b["cost_usd"], 4),
            "retakes": takes.get(name, {}).get("retakes", 0),
            "chosen_retakes": takes.get(name, {}).get("chosen", 0),
            "due": due.get(name, 0),
        }
        for name, b in per_batch.items()
    }
    notes = notes or {}
    data["flagged_takes"] = [
        {"id": job_id, "batch": batch, "score": score, "retake": notes.get(job_id)}
        for job_id, batch, score in flagged
    ]
    return data


def route_label(route: Route | None) -> str:
    """``vertex (my-proj, us-central1)``, ``gptproto``; ``the run's`` where the load left a
    part (or, for jobs loaded before routes, all of them) to the run's flags."""
    if route is None:
        return "the run's"
    provider = route.provider or "the run's provider"
    if route.provider is not None and PROVIDER_WIRE.get(route.provider) is not Wire.VERTEX:
        return provider
    parts = [route.project or "the run's project", route.location or "the run's region"]
    parts += [route.storage_uri] if route.storage_uri else []
    return f"{provider} ({', '.join(parts)})"


def _route_row(route: Route | None, counts: dict[str, int]) -> dict[str, Any]:
    """One route of ``status``: its label, its stored parts (None: the run's), its jobs."""
    r = route or Route()
    return {
        "route": route_label(route),
        "provider": r.provider,
        "project": r.project,
        "location": r.location,
        "storage_uri": r.storage_uri,
        "total": sum(counts.values()),
        "states": _state_counts(counts),
    }


async def database_status(db_path: Path) -> dict[str, Any]:
    """What ``batchveo status`` says of ``db_path``: ``status_data``, the file, the run.

    A database not created yet is an empty one, and stays uncreated (a monitor or a cron
    health check may look before anything was loaded). The lock file is read, never
    locked: a starting run is never in the way.
    """
    holder = lock.holder(db_path)
    exists = db_path.exists()
    if exists:
        async with await Store.open(db_path) as store:
            data = await status_data(store)
    else:
        data = empty_status_data()
    data["database"] = {"path": str(db_path), "exists": exists}
    data["active_run"] = (
        {k: holder.get(k) for k in ("pid", "started_at", "host")}
        if holder and lock.is_alive(holder)
        else None
    )
    return data


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
    costs = await store.costs()
    samples = await store.sample_counts()
    for batch, b in batches.items():
        c = costs.get(batch, {})
        b["cost_usd"] = {k: _money(c.get(k)) for k in ("spent", "committed", "budget")}
        b["oldest_video_hours_left"] = None
        b["samples"] = samples.get(batch, _NO_SAMPLES)
    generated = await store.briefs([JobState.GENERATED], order="generated_at")
    at_risk = []
    for job in generated:
        left_s = (job.generated_at or now) + retention_s - now
        b = batches[job.batch]
        if b["oldest_video_hours_left"] is None:
            b["oldest_video_hours_left"] = round(left_s / 3600, 1)
        if left_s < at_risk_s:
            at_risk.append(
                {"id": job.id, "batch": job.batch, "hours_left": round(left_s / 3600, 1)}
            )
    uncertain = [
        {"id": j.id, "batch": j.batch, "error": j.error}
        for j in await store.briefs([JobState.UNCERTAIN])
    ]
    flagged = await store.flagged(FLAGGED_LISTED)
    return {
        "total": sum(overall.values()),
        "states": _state_counts(overall),
        "cost_usd": {
            "spent": _money(sum(c["spent"] or 0 for c in costs.values())),
            "committed": _money(sum(c["committed"] or 0 for c in costs.values())),
            "estimate": True,
        },
        "batches": batches,
        "at_risk": at_risk,
        "uncertain": uncertain,
        "routes": [_route_row(r, counts) for r, counts in await store.route_counts()],
        "reviews": _review_data(
            await store.review_counts(),
            flagged,
            await store.retake_counts(),
            await store.retake_notes([job_id for job_id, _, _ in flagged]),
            await store.due_review_counts(sorted(await store.review_settings())),
        ),
        "chains": [
            {"root": c.root, "done": c.done, "total": c.total} for c in await store.chain_counts()
        ],
    }


async def run_summary(
    store: Store,
    *,
    event: str,
    output_folder: str,
    exit_code: int | None = None,
    stop_reason: str | None = None,
    retention_s: float = RETENTION_S,
    max_failures: int = 200,
) -> dict[str, Any]:
    """What a notification says: counts, cost, failures with reasons, where the videos are."""
    data = await status_data(store, retention_s=retention_s)
    failures = [
        {
            "id": j.id,
            "batch": j.batch,
            "state": j.state.value,
            "error_kind": j.error_kind,
            "error": j.error,
        }
        for j in await store.jobs(
            [JobState.FAILED, JobState.EXPIRED, JobState.UNCERTAIN], limit=max_failures
        )
    ]
    return {
        "event": event,
        "batches": sorted(data["batches"]),
        "states": data["states"],
        "total": data["total"],
        "cost_usd": {k: data["cost_usd"][k] for k in ("spent", "committed")},
        "failures": failures,
        "output_folder": output_folder,
        "exit_code": exit_code,
        "stop_reason": stop_reason,
        "at_risk": data["at_risk"],
    }
