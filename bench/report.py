"""Plain-text tables and the verdict of one benchmark part."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Check:
    """One target: what was measured, the limit, and whether it was met."""

    name: str
    value: str
    target: str
    ok: bool | None
    """None: reported for information, no target."""

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("PASS" if self.ok else "FAIL")


@dataclass
class PartResult:
    """What one part (load, pipeline, pacing) found: tables for people, data for JSON."""

    name: str
    tables: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cleanup: list[Path] = field(default_factory=list)
    """An earlier bench run's folders, to delete once every part is over (not sooner: see
    ``bench.pipeline.delete_trials``)."""

    @property
    def passed(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def check(self, name: str, value: str, target: str, ok: bool | None) -> Check:
        c = Check(name, value, target, ok)
        self.checks.append(c)
        return c

    def checks_table(self) -> str:
        rows = [[c.name, c.value, c.target, c.verdict] for c in self.checks]
        return table(f"{self.name}: targets", ["measure", "value", "target", "result"], rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [
                {"name": c.name, "value": c.value, "target": c.target, "result": c.verdict}
                for c in self.checks
            ],
            "notes": self.notes,
            **self.data,
        }


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A boxed-free aligned table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(cells[0]))
    body = [line(cells[0]), rule, *(line(r) for r in cells[1:])]
    return "\n".join([title, rule, *body])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def secs(value: float) -> str:
    return f"{value:.2f} s"


def mb(value: float) -> str:
    return f"{value:.0f} MB"
