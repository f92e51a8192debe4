"""What the terminal shows: rich renderables and the plain text of ``show`` and ``plan``.

The commands decide where (and whether) to print them, rich renderables only through
``observe.text.terminal_console`` (which reads no markup: a batch named ``[/]x`` shows as
written). Every value that comes from a manifest, a database or a server goes through
``visible``: a batch name, an old database, or a server's error text may hold ESC or NUL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from batchveo.observe.text import utc_seconds, visible
from batchveo.states import JobState

if TYPE_CHECKING:
    from batchveo.run.plan import Plan
    from batchveo.store import Event, Job

_STYLE = {
    JobState.DONE: "green",
    JobState.FAILED: "red",
    JobState.EXPIRED: "red",
    JobState.UNCERTAIN: "yellow",
    JobState.CANCELLED: "dim",
}


MAX_LISTED = 50
"""Uncertain jobs the ``status`` table names one by one; the rest are counted (``--json``
lists them all)."""


def status_renderable(data: dict[str, Any]) -> RenderableType:
    states = [s for s in JobState if data["states"].get(s.value, 0)] or [JobState.PENDING]
    table = Table(title=f"{data['total']} job(s)", title_justify="left")
    table.add_column("batch")
    for s in states:
        table.add_column(s.value, justify="right", style=_STYLE.get(s, ""))
    table.add_column("total", justify="right", style="bold")
    for name, b in data["batches"].items():
        table.add_row(visible(name), *[str(b["states"][s.value]) for s in states], str(b["total"]))
    if len(data["batches"]) > 1:
        table.add_row(
            "all", *[str(data["states"][s.value]) for s in states], str(data["total"]), style="bold"
        )
    money = Table(title="estimated cost and expiry", title_justify="left")
    for col in ("batch", "spent", "committed", "budget", "oldest video"):
        money.add_column(col, justify="left" if col == "batch" else "right")
    for name, b in data["batches"].items():
        cost, left = b["cost_usd"], b["oldest_video_hours_left"]
        money.add_row(
            visible(name),
            f"${cost['spent']:,.2f}",
            f"${cost['committed']:,.2f}",
            "-" if cost["budget"] is None else f"${cost['budget']:,.2f}",
            "-" if left is None else f"{left} h left",
        )
    parts: list[RenderableType] = [table, money]
    if (partial := partial_table(data)) is not None:
        parts.append(partial)
    if (routes := routes_table(data)) is not None:
        parts.append(routes)
    parts += review_renderables(data.get("reviews"))
    if chains := data.get("chains"):
        line = ", ".join(
            f"{visible(c['root'])} {c['done']}/{c['total']}" for c in chains[:MAX_LISTED]
        )
        rest = f" and {len(chains) - MAX_LISTED:,} more" if len(chains) > MAX_LISTED else ""
        parts.append(Text(f"Scene chains (hops done/total): {line}{rest}"))
    if data["at_risk"]:
        parts.append(Text("Videos at risk of expiry (download them soon):", style="bold red"))
        for j in data["at_risk"]:
            parts.append(Text(f"  {_job(j)}: {j['hours_left']} h left"))
    if data["uncertain"]:
        parts.append(
            Text(
                "Uncertain jobs (a submit's outcome is unknown; they may have been billed)."
                " Resend with `batchveo retry --state uncertain`:",
                style="bold yellow",
            )
        )
        for j in data["uncertain"][:MAX_LISTED]:
            parts.append(Text(f"  {_job(j)}"))
        if (more := len(data["uncertain"]) - MAX_LISTED) > 0:
            parts.append(Text(f"  ... and {more:,} more (`batchveo export --state uncertain`)"))
    return Group(*parts)


def review_renderables(reviews: dict[str, Any] | None) -> list[RenderableType]:
    """The reviews' counts per batch and the flagged takes: nothing if none was reviewed."""
    if not reviews or not reviews["batches"]:
        return []
    table = Table(title="reviews (a model watched each take)", title_justify="left")
    retakes = bool(reviews.get("retakes"))
    cols = ["batch", "passed", "flagged", "errors", "skipped", "due", "cost"]
    cols += ["retakes", "chosen retakes"] if retakes else []
    for col in cols:
        table.add_column(col, justify="left" if col == "batch" else "right")
    for name, b in reviews["batches"].items():
        counts = [str(b[k]) for k in ("passed", "flagged", "error", "skipped")]
        taken = [str(b["retakes"]), str(b["chosen_retakes"])] if retakes else []
        due = str(b.get("due", 0))
        table.add_row(visible(name), *counts, due, f"${b['cost_usd']:,.4f}", *taken)
    parts: list[RenderableType] = [table]
    if reviews["flagged_takes"]:
        parts.append(Text("Flagged takes (see `batchveo show ID` for the defects):", style="bold"))
        for t in reviews["flagged_takes"]:
            score = "-" if t["score"] is None else f"{t['score']:g}"
            retake = f"; {visible(t['retake'])}" if t.get("retake") else ""
            parts.append(Text(f"  {_job(t)}: score {score}{retake}"))
        if (more := reviews["flagged"] - len(reviews["flagged_takes"])) > 0:
            parts.append(Text(f"  ... and {more:,} more (`batchveo export`)"))
    return parts


def _job(j: dict[str, Any]) -> str:
    """``ID (BATCH)``, as the lists of ``status`` name a job."""
    return f"{visible(j['id'])} ({visible(j['batch'])})"


def partial_table(data: dict[str, Any]) -> Table | None:
    """Batches with partial results (jobs that got some of their videos, the rest kept back
    by the safety filter, not charged): None when there are none."""
    rows = [
        (name, b["samples"])
        for name, b in data["batches"].items()
        if b.get("samples", {}).get("partial") or b.get("samples", {}).get("filtered")
    ]
    if not rows:
        return None
    table = Table(
        title="partial results (videos kept back by the safety filter are not charged)",
        title_justify="left",
    )
    for col in ("batch", "partly filtered jobs", "videos asked", "returned", "filtered"):
        table.add_column(col, justify="left" if col == "batch" else "right")
    for name, s in rows:
        table.add_row(
            visible(name),
            str(s["partial"]),
            str(s["requested"]),
            str(s["returned"]),
            str(s["filtered"]),
        )
    return table


def routes_table(data: dict[str, Any]) -> Table | None:
    """Jobs per route and state, when the database holds more than one route."""
    routes = data.get("routes") or []
    if len(routes) < 2:
        return None
    states = [s for s in JobState if any(r["states"].get(s.value) for r in routes)]
    table = Table(title="routes", title_justify="left")
    table.add_column("route")
    for s in states:
        table.add_column(s.value, justify="right", style=_STYLE.get(s, ""))
    table.add_column("total", justify="right", style="bold")
    for r in routes:
        table.add_row(
            visible(r["route"]), *[str(r["states"][s.value]) for s in states], str(r["total"])
        )
    return table


def job_lines(job: Job, events: Sequence[Event], chain: Sequence[Job] = ()) -> Iterator[str]:
    """``batchveo show``: the job's fields that are set, then its history, one per line;
    for a job of a scene chain, the chain's hops in order after."""
    for key, value in job.as_dict().items():
        if value in (None, [], {}, ""):
            continue
        if key.endswith("_at"):
            value = utc_seconds(value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        yield f"{key:>16}: {visible(str(value))}"
    yield "history:"
    for e in events:
        src = e.from_state or "-"
        detail = f"  ({visible(e.detail)})" if e.detail else ""
        yield f"  {utc_seconds(e.at)}  {src:>10} -> {e.to_state:<10} #{e.attempt}{detail}"
    if chain:
        done = sum(j.state is JobState.DONE for j in chain)
        yield f"chain {chain[0].id} ({done}/{len(chain)} done):"
        for j in chain:
            mark = "*" if j.id == job.id else " "
            after = f" extends {j.extends}" if j.extends else ""
            yield f" {mark}{j.hop or 1:>3}. {j.id:<20} {j.state.value:<10}{after}"


def plan_text(plan: Plan) -> str:
    """``batchveo plan``: what a run would send and cost, and what the budgets hold back."""
    lines = [
        f"jobs in manifests:   {plan.jobs}",
        f"new:                 {plan.new}",
    ]
    if plan.already:
        detail = ", ".join(f"{n} {s}" for s, n in sorted(plan.already.items()))
        lines.append(f"already loaded:      {sum(plan.already.values())} ({detail})")
    if plan.other_pending:
        lines.append(
            f"other pending:       {plan.other_pending} (in the database, not in these"
            " manifests: sent first)"
        )
    lines += [
        f"would be submitted:  {plan.to_submit}",
        f"seconds of video:    {plan.video_s}",
        f"estimated cost:      ${plan.cost_usd:,.2f} (estimate from the price table)",
    ]
    if plan.budget_usd is not None:
        lines.append(
            f"budget:              ${plan.budget_usd:,.2f} (--budget; ${plan.committed_usd:,.2f}"
            " already committed in the database)"
        )
    for name, b in plan.batch_budgets.items():
        lines.append(
            f"budget of batch {visible(name)}: ${b['budget_usd']:,.2f}"
            f" (${b['committed_usd']:,.2f} already committed)"
        )
    if plan.over_budget:
        why = [f"{plan.over_run_budget} over --budget"] if plan.over_run_budget else []
        why += [
            f"{n} over the budget of batch {visible(name)}"
            for name, n in plan.over_batch_budget.items()
        ]
        lines.append(f"would stay pending:  {plan.over_budget} over budget ({', '.join(why)})")
    if plan.reviews:
        lines.append(
            f"reviews:             {plan.reviews} video(s), estimated"
            f" ${plan.review_cost_usd:,.4f} (a model watching each take)"
        )
        lines.append(
            f"retakes, worst case: ${plan.retakes_worst_usd:,.2f} more (every reviewed job"
            " flagged and retaken as often as its retakes allow; a budget caps it)"
        )
    lines.append("nothing was sent and nothing was written")
    return "\n".join(lines)
