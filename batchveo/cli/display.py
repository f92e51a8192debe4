"""Rich renderables for the terminal; the CLI decides where (and whether) to print them."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from batchveo.states import JobState

_STYLE = {
    JobState.DONE: "green",
    JobState.FAILED: "red",
    JobState.EXPIRED: "red",
    JobState.UNCERTAIN: "yellow",
    JobState.CANCELLED: "dim",
}


def status_renderable(data: dict[str, Any]) -> RenderableType:
    states = [s for s in JobState if data["states"].get(s.value, 0)] or [JobState.PENDING]
    table = Table(title=f"{data['total']} job(s)", title_justify="left")
    table.add_column("batch")
    for s in states:
        table.add_column(s.value, justify="right", style=_STYLE.get(s, ""))
    table.add_column("total", justify="right", style="bold")
    for name, b in data["batches"].items():
        table.add_row(name, *[str(b["states"][s.value]) for s in states], str(b["total"]))
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
            name,
            f"${cost['spent']:,.2f}",
            f"${cost['committed']:,.2f}",
            "-" if cost["budget"] is None else f"${cost['budget']:,.2f}",
            "-" if left is None else f"{left} h left",
        )
    parts: list[RenderableType] = [table, money]
    if data["at_risk"]:
        parts.append(Text("Videos at risk of expiry (download them soon):", style="bold red"))
        for j in data["at_risk"]:
            parts.append(Text(f"  {j['id']} ({j['batch']}): {j['hours_left']} h left"))
    if data["uncertain"]:
        parts.append(
            Text(
                "Uncertain jobs (a submit's outcome is unknown; they may have been billed)."
                " Resend with `batchveo retry --state uncertain`:",
                style="bold yellow",
            )
        )
        for j in data["uncertain"]:
            parts.append(Text(f"  {j['id']} ({j['batch']})"))
    return Group(*parts)
