"""What a run would do, without doing it: ``batchveo plan`` and ``run --dry-run``.

A plan validates the manifests exactly as a run would, compares them with what
the database already holds (read only: nothing is written, nothing is sent),
and estimates seconds of video and cost from the price table.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchveo.models import Prices, estimate_params_cost_usd
from batchveo.spec import JobSpec
from batchveo.store import COMMITTED_STATES

_CHUNK = 500


@dataclass
class Plan:
    jobs: int = 0
    new: int = 0
    already: Counter[str] = field(default_factory=Counter)
    """Jobs of the manifests already in the database, by their state there."""
    to_submit: int = 0
    video_s: int = 0
    cost_usd: float = 0.0
    over_budget: int = 0
    committed_usd: float = 0.0
    """Estimated cost already committed in the database (submitted or made)."""
    by_model: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "new": self.new,
            "already_loaded": dict(self.already),
            "to_submit": self.to_submit,
            "video_seconds": self.video_s,
            "estimated_cost_usd": round(self.cost_usd, 2),
            "over_budget": self.over_budget,
            "already_committed_usd": round(self.committed_usd, 2),
            "by_model": dict(self.by_model),
        }


def _stored(db: Path, ids: list[str]) -> tuple[dict[str, str], float]:
    """The stored state of each id, and the estimated cost already committed."""
    if not db.exists():
        return {}, 0.0
    out: dict[str, str] = {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(COMMITTED_STATES))
        sql = f"SELECT COALESCE(SUM(cost_usd), 0) FROM jobs WHERE state IN ({marks})"
        committed = float(conn.execute(sql, COMMITTED_STATES).fetchone()[0])
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, state FROM jobs WHERE id IN ({marks})"
            out.update(conn.execute(sql, chunk).fetchall())
    except sqlite3.OperationalError:
        return {}, 0.0  # a database with no job table yet
    finally:
        conn.close()
    return out, committed


def make_plan(
    specs: list[JobSpec],
    db: Path,
    *,
    prices: Prices | None = None,
    budget_usd: float | None = None,
    resubmit_uncertain: bool = False,
) -> Plan:
    stored, committed = _stored(db, [s.id for s in specs])
    plan = Plan(jobs=len(specs), committed_usd=committed)
    sendable = {"pending"} | ({"uncertain"} if resubmit_uncertain else set())
    for spec in specs:
        state = stored.get(spec.id)
        if state is None:
            plan.new += 1
        else:
            plan.already[state] += 1
        if state is not None and state not in sendable:
            continue
        cost = estimate_params_cost_usd(spec.model, spec.params, prices)
        if budget_usd is not None and committed + plan.cost_usd + cost > budget_usd + 1e-9:
            plan.over_budget += 1
            continue
        plan.to_submit += 1
        plan.video_s += int(spec.params.get("durationSeconds", 8))
        plan.cost_usd += cost
        plan.by_model[spec.model] += 1
    return plan
