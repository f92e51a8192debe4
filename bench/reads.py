"""Part 4 (issue 14), what reads every job: ``export``, ``report`` and ``status`` at scale.

Each size is a finished night of N jobs (``bench.gen_db``: made in seconds by one SQL
statement in the real schema of the code measured, then kept under ``bench/out/reads``;
not timed). On it, each a fresh process (``bench.proc``):

* ``export --format jsonl -o FILE`` and ``--format csv``: the file must hold N rows;
* ``report --out DIR/report.html``: it must say it wrote N jobs; its first page's size
  and the number of page files are shown (the first page is what a browser opens);
* ``status --json`` (its total must be N) and ``status`` (the table a person reads), the
  fastest of ``STATUS_RUNS``.

Targets: export below 100 MB and report below 150 MB at every size, status below 0.5 s at
the largest (1M by default). With ``--against DIR`` (a checkout of another batchveo with
its own ``.venv``, say the code before a change) every case runs there first, then here,
each on a database made by its own code's schema: the figures side by side, interleaved so
that a busy machine weighs on both alike. Outputs are deleted once checked.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.proc import OUT, ROOT, ChildResult, run_child
from bench.report import PartResult, mb, secs, table

SIZES = (100_000, 1_000_000)
STATUS_RUNS = 3
"""``status`` takes a few tenths of a second: a busy machine, or a page cache just emptied
by the case before, weighs on it most, so the fastest of this many runs is kept."""
EXPORT_MAX_MB = 100.0
REPORT_MAX_MB = 150.0
STATUS_MAX_S = 0.5


@dataclass(frozen=True)
class Code:
    """A checkout of batchveo whose commands are measured."""

    name: str
    root: Path

    @property
    def python(self) -> str:
        venv = self.root / ".venv" / "bin" / "python"
        return str(venv) if self.root != ROOT and venv.exists() else sys.executable

    def argv(self, *args: str | Path) -> list[str]:
        return [self.python, "-m", "batchveo", *(str(a) for a in args)]


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    output: str | None
    """The file or folder it writes under the work folder (None: only stdout)."""


CASES = (
    Case("export jsonl", ("export", "--format", "jsonl", "-o"), "export.jsonl"),
    Case("export csv", ("export", "--format", "csv", "-o"), "export.csv"),
    Case("report", ("report", "--out"), "report/report.html"),
    Case("status --json", ("status", "--json"), None),
    Case("status", ("status",), None),
)


@dataclass
class Measured:
    code: Code
    case: Case
    jobs: int
    run: ChildResult
    ok: bool
    note: str


def night_db(code: Code, folder: Path, jobs: int) -> Path:
    """The night of ``jobs`` in ``code``'s schema (made by ``gen_db`` run by that code)."""
    made = run_child(
        [code.python, str(ROOT / "bench" / "gen_db.py"), str(folder), str(jobs)],
        log_stem=folder / f"gen_{code.name}_{jobs}",
        cwd=code.root,
        timeout_s=1800.0,
    )
    if made.returncode != 0:
        raise RuntimeError(f"gen_db failed for {code.name}: {made.stderr[-500:]}")
    return Path(made.stdout.split(" in ")[0].strip())


def _lines(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return n


def best(code: Code, case: Case, db: Path, jobs: int, work: Path, repeat: int) -> Measured:
    """The fastest correct one of ``repeat`` runs (of ``STATUS_RUNS`` for ``status``)."""
    runs = STATUS_RUNS if case.name.startswith("status") else max(1, repeat)
    tried = [measure(code, case, db, jobs, work) for _ in range(runs)]
    return min(tried, key=lambda m: (not m.ok, m.run.wall_s))


def measure(code: Code, case: Case, db: Path, jobs: int, work: Path) -> Measured:
    out = work / code.name / case.output if case.output else None
    if out is not None:
        shutil.rmtree(out.parent if case.name == "report" else out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
    argv = code.argv(*case.args, *([out] if out else []), "--db", db)
    stem = work / f"{code.name}_{jobs}_{case.name.replace(' ', '_').replace('-', '')}"
    res = run_child(argv, log_stem=stem, cwd=code.root, timeout_s=3600.0)
    ok, note = res.returncode == 0, f"exit {res.returncode}"
    if ok and case.name.startswith("export") and out is not None:
        rows = _lines(out) - (case.name == "export csv")
        ok, note = rows == jobs, f"{rows:,} rows"
        out.unlink()
    elif ok and case.name == "report" and out is not None:
        pages = [out, *sorted(out.parent.glob("*/*.html"))]
        ok = f"({jobs} jobs:" in res.stdout
        note = f"first page {out.stat().st_size / 1e6:.1f} MB, {len(pages):,} file(s)"
        shutil.rmtree(out.parent, ignore_errors=True)
    elif ok and case.name == "status --json":
        total = json.loads(res.stdout)["total"]
        ok, note = total == jobs, f"total {total:,}"
    return Measured(code, case, jobs, res, ok, note)


def run_reads(
    sizes: tuple[int, ...] = SIZES, *, against: Path | None = None, repeat: int = 1
) -> PartResult:
    work = OUT / "reads"
    work.mkdir(parents=True, exist_ok=True)
    codes = [Code("after", ROOT)]
    if against is not None:
        codes.insert(0, Code("before", against.resolve()))
    part = PartResult("reads")
    results: list[Measured] = []
    for jobs in sizes:
        dbs = {c.name: night_db(c, work, jobs) for c in codes}
        for case in CASES:
            for code in codes:  # before, then after: interleaved
                results.append(best(code, case, dbs[code.name], jobs, work, repeat))
    part.tables.append(_table(results, codes))
    for m in results:
        if m.code.name != "after":
            continue
        k = f"{m.jobs // 1000:,}k"
        if m.case.name.startswith("export"):
            part.check(
                f"{m.case.name} {k}: peak RSS",
                mb(m.run.max_rss_mb),
                f"< {EXPORT_MAX_MB:.0f} MB",
                m.ok and m.run.max_rss_mb < EXPORT_MAX_MB,
            )
        elif m.case.name == "report":
            part.check(
                f"report {k}: peak RSS",
                mb(m.run.max_rss_mb),
                f"< {REPORT_MAX_MB:.0f} MB",
                m.ok and m.run.max_rss_mb < REPORT_MAX_MB,
            )
        elif m.jobs == max(sizes):
            part.check(
                f"{m.case.name} {k}: wall",
                secs(m.run.wall_s),
                f"< {STATUS_MAX_S} s",
                m.ok and m.run.wall_s < STATUS_MAX_S,
            )
    part.data = {
        "sizes": list(sizes),
        "against": str(against) if against else None,
        "cases": [
            {"code": m.code.name, "case": m.case.name, "jobs": m.jobs, "ok": m.ok, "note": m.note}
            | m.run.summary()
            for m in results
        ],
    }
    part.notes.append(
        "night: 90% done (one file each), 4% failed, 1% uncertain, 1% expired, 2% cancelled,"
        " 2% pending; made by bench/gen_db.py"
    )
    return part


def _table(results: list[Measured], codes: list[Code]) -> str:
    headers = ["case", "jobs"]
    for c in codes:
        headers += [f"{c.name} wall", "cpu", "peak RSS", "output"]
    rows: dict[tuple[str, int], list[str]] = {}
    for m in results:
        row = rows.setdefault((m.case.name, m.jobs), [m.case.name, f"{m.jobs:,}"])
        verdict = m.note if m.ok else f"WRONG ({m.note})"
        row += [secs(m.run.wall_s), secs(m.run.cpu_s), mb(m.run.max_rss_mb), verdict]
    title = "READS (a finished night; each a fresh process"
    title += ", before and after interleaved)" if len(codes) > 1 else ")"
    return table(title, headers, list(rows.values()))
