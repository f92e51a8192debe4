"""Part 1, ``batchveo load``: time and peak memory of validating and storing a manifest.

Cases: a text-only CSV of ``rows`` (100,000 by default) into a fresh database and its
reload into the same one, the same with an ``id`` column (jobs named as users name them),
``batchveo run`` of the CSV (``--max-jobs 0``: its load, nothing sent) and again, a YAML
of as many jobs, and 1,000-job CSV and YAML manifests cycling over shared images; with
``--million``, a 1,000,000-row CSV and its reload too, with ids and without, and a
1,000,000-job YAML (three minutes or so more). With ``--against DIR`` (a checkout with its
own ``.venv``, say the code before a change) every case runs there first, then here, on its
own databases: before and after side by side, interleaved so that a busy machine weighs on
both alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.gen_manifest import write_csv, write_images, write_yaml
from bench.proc import API_KEY, OUT, ROOT, ChildResult, run_child
from bench.reads import Code
from bench.report import PartResult, mb, secs, table

CSV_MAX_S = 2.0
CSV_MAX_MB = 100.0
YAML_MAX_S = 3.0
YAML_MAX_MB = 100.0
"""As a CSV's: the jobs are handed on as they are composed, the text never held whole
(``manifest/yamljobs.py``; 150 MB before, when every job was held)."""
MILLION = 1_000_000
MILLION_MAX_S = 20.0
MILLION_MAX_MB = 100.0
RUN_MAX_MB = 150.0
"""``run MANIFEST``: the load's memory, and the runner's own (its client, its imports)."""
RUN_LEFT_PENDING = 75
"""The exit code of a run that leaves jobs pending (``--max-jobs 0``)."""
MILLION_YAML_MAX_S = 45.0
"""PyYAML's composer and constructor are Python: some 30 s for a million jobs."""


@dataclass(frozen=True)
class Case:
    name: str
    manifest: Path
    db: str
    """The database's file name (each code has its own folder)."""
    jobs: int
    expect: str
    """What ``load`` must print: the jobs really went in (or, on a reload, did not)."""
    fresh: bool = True
    max_s: float | None = None
    max_mb: float | None = None
    run: bool = False
    """``batchveo run MANIFEST --max-jobs 0`` instead of ``load``: what a cron line's run
    spends on loading its manifest (nothing sent; it exits 75, its jobs pending)."""


def _fresh_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _csv_cases(
    manifest: Path, rows: int, db: str, max_s: float, max_mb: float, what: str = "text"
) -> list[Case]:
    k = _k(rows)
    new, again = f"{rows} new, 0 already loaded", f"0 new, {rows} already loaded"
    return [
        Case(f"csv {k} {what}", manifest, db, rows, new, max_s=max_s, max_mb=max_mb),
        Case(f"csv {k} {what}, reload", manifest, db, rows, again, fresh=False, max_s=max_s,
             max_mb=max_mb),
    ]  # fmt: skip


def _cases(work: Path, rows: int, image_jobs: int, images: int, million: bool) -> list[Case]:
    imgs = write_images(work / "img", images)
    big_csv = write_csv(work / "big.csv", rows)
    big_yaml = write_yaml(work / "big.yaml", rows)
    img_csv = write_csv(work / "images.csv", image_jobs, images=imgs)
    img_yaml = write_yaml(work / "images.yaml", image_jobs, images=imgs)
    n = _k(image_jobs)
    cases = _csv_cases(big_csv, rows, "csv.db", CSV_MAX_S, CSV_MAX_MB)
    ids_csv = write_csv(work / "big_ids.csv", rows, ids=True)
    cases += _csv_cases(ids_csv, rows, "csv_ids.db", CSV_MAX_S, CSV_MAX_MB, "text with ids")
    new, again = f"{rows} new, 0 already loaded", f"0 new, {rows} already loaded"
    cases += [
        Case(f"run MANIFEST, csv {_k(rows)}", big_csv, "run.db", rows, new, max_mb=RUN_MAX_MB,
             run=True),
        Case(f"run MANIFEST again, csv {_k(rows)}", big_csv, "run.db", rows, again, fresh=False,
             max_mb=RUN_MAX_MB, run=True),
    ]  # fmt: skip
    cases += [
        Case(f"yaml {_k(rows)} text", big_yaml, "yaml.db", rows, f"{rows} new, 0 already loaded",
             max_s=YAML_MAX_S, max_mb=YAML_MAX_MB),
        Case(f"csv {n}, {images} shared images", img_csv, "img_csv.db", image_jobs,
             f"{image_jobs} new, 0 already loaded"),
        Case(f"yaml {n}, {images} shared images", img_yaml, "img_yaml.db", image_jobs,
             f"{image_jobs} new, 0 already loaded"),
    ]  # fmt: skip
    if million:
        path = work / "million.csv"
        if not path.exists():  # 80 MB, kept between runs
            write_csv(path, MILLION)
        cases += _csv_cases(path, MILLION, "million.db", MILLION_MAX_S, MILLION_MAX_MB)
        named = work / "million_ids.csv"
        if not named.exists():
            write_csv(named, MILLION, ids=True)
        cases += _csv_cases(named, MILLION, "million_ids.db", MILLION_MAX_S, MILLION_MAX_MB,
                            "text with ids")  # fmt: skip
        big = work / "million.yaml"
        if not big.exists():  # 94 MB, kept between runs
            write_yaml(big, MILLION)
        cases.append(Case("yaml 1000k text", big, "million_yaml.db", MILLION,
                          f"{MILLION} new, 0 already loaded", max_s=MILLION_YAML_MAX_S,
                          max_mb=MILLION_MAX_MB))  # fmt: skip
    return cases


def run_load(
    rows: int = 100_000,
    image_jobs: int = 1_000,
    images: int = 10,
    *,
    repeat: int = 1,
    million: bool = False,
    against: Path | None = None,
) -> PartResult:
    """Each case ``repeat`` times (fresh database each time), the fastest run reported."""
    work = OUT / "load"
    work.mkdir(parents=True, exist_ok=True)
    codes = [Code("after", ROOT)]
    if against is not None:
        codes.insert(0, Code("before", against.resolve()))
    part = PartResult("load")
    baseline = run_child(codes[-1].argv("--version"), log_stem=work / "baseline")
    results: list[tuple[Case, Code, ChildResult, bool]] = []
    for case in _cases(work, rows, image_jobs, images, million):
        for code in codes:  # before, then after: interleaved
            runs = [_run_case(work, case, code) for _ in range(max(1, repeat))]
            results.append(max(runs, key=lambda r: (r[3], -r[2].wall_s)))

    part.tables.append(_table(baseline, results, codes))
    for case, code, res, ok in results:
        if code.name != "after":
            continue
        if case.max_s is not None:
            fast = ok and res.wall_s < case.max_s
            part.check(f"{case.name}: wall", secs(res.wall_s), f"< {case.max_s:.0f} s", fast)
        if case.max_mb is not None:
            small = ok and res.max_rss_mb < case.max_mb
            part.check(
                f"{case.name}: peak RSS", mb(res.max_rss_mb), f"< {case.max_mb:.0f} MB", small
            )
        if case.max_s is None and case.max_mb is None:
            part.check(f"{case.name}: output", repr(case.expect), "printed, exit 0", ok)
    part.data = {
        "against": str(against) if against else None,
        "baseline_startup": baseline.summary(),
        "cases": [
            {"name": c.name, "code": code.name, "jobs": c.jobs, "manifest": str(c.manifest),
             "output_ok": ok}
            | r.summary()
            | {"stdout": r.stdout.strip()[-300:], "stderr": r.stderr.strip()[-300:]}
            for c, code, r, ok in results
        ],
    }  # fmt: skip
    return part


def _run_case(work: Path, case: Case, code: Code) -> tuple[Case, Code, ChildResult, bool]:
    folder = work / code.name
    folder.mkdir(exist_ok=True)
    db = folder / case.db
    if case.fresh:
        _fresh_db(db)
    stem = folder / case.name.replace(" ", "_").replace(",", "")
    if case.run:
        argv = code.argv("run", case.manifest, "--db", db, "--out", folder / "videos",
                         "--max-jobs", "0", "--base-url", "http://127.0.0.1:9", "-q")  # fmt: skip
        env = {"BATCHVEO_API_KEY": API_KEY}
        res = run_child(argv, log_stem=stem, cwd=code.root, env=env, timeout_s=1800.0)
        ok = res.returncode == RUN_LEFT_PENDING and f"loaded: {case.expect}" in res.stderr
        return case, code, res, ok
    res = run_child(
        code.argv("load", case.manifest, "--db", db), log_stem=stem, cwd=code.root,
        timeout_s=1800.0,
    )  # fmt: skip
    return case, code, res, res.returncode == 0 and case.expect in res.stdout


def _table(
    baseline: ChildResult, results: list[tuple[Case, Code, ChildResult, bool]], codes: list[Code]
) -> str:
    headers = ["batchveo load", "jobs"]
    for c in codes:
        headers += [f"{c.name} wall" if len(codes) > 1 else "wall", "cpu", "peak RSS", "jobs/s",
                    "output"]  # fmt: skip
    rows: dict[str, list[str]] = {}
    start = ["start-up only (--version)", "-"]
    for _ in codes:
        start += [secs(baseline.wall_s), secs(baseline.cpu_s), mb(baseline.max_rss_mb), "-",
                  "ok" if baseline.returncode == 0 else "WRONG"]  # fmt: skip
    rows["--version"] = start
    for case, _, res, ok in results:
        row = rows.setdefault(case.name, [case.name, f"{case.jobs:,}"])
        rate = f"{case.jobs / res.wall_s:,.0f}" if res.wall_s else "-"
        verdict = "ok" if ok else f"WRONG (exit {res.returncode})"
        row += [secs(res.wall_s), secs(res.cpu_s), mb(res.max_rss_mb), rate, verdict]
    title = "LOAD (each a fresh process"
    title += ", before and after interleaved)" if len(codes) > 1 else ")"
    return table(title, headers, list(rows.values()))
