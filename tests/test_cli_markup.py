"""Hostile text in what the command line shows: shown literally, never acted on.

A batch name, a job id, a prompt, a path or a server's error text may hold rich markup
(``[red]``, ``[/]``, ``[link=...]``), emoji codes (``:thumbs_up:``) or terminal control
characters (``\\x1b[2J``). Whatever command shows it, it must exit as usual and show the
text as it is: markup printed as written (not colouring the rest, not vanishing, not
crashing the command), control characters escaped visibly (``\\x1b``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from batchveo.cli import main
from batchveo.observe.progress import LiveProgress
from batchveo.states import JobState
from batchveo.store import Store, TransitionEvent
from tests.helpers import make_spec
from tests.pipeline_helpers import KEY, fast_sim

S = JobState
BATCH = "[/]x[red]y [link=http://evil]y[/link] :thumbs_up:"
JOB = "[red]x[link=evil]y"  # a manifest's id may hold brackets, never '/'
PROMPT = "[/]p [red]x [link=http://evil]y[/link] :thumbs_up:"
ERROR = "[/]e [red]x [link=http://evil]y[/link]"
CONTROL = "e\x1b[2Jv\x1b]0;owned\x07"
CONTROL_SHOWN = r"e\x1b[2Jv\x1b]0;owned\x07"
RAW = {chr(c) for c in range(32)} - {"\n"} | {"\x7f", "\x9b"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHVEO_API_KEY", KEY)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("BATCHVEO_DB", "BATCHVEO_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def invoke(*args: str) -> Result:
    """The command as a user runs it, on a terminal wide enough that no table cell wraps."""
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "250"})


def raw_controls(text: str) -> set[str]:
    return RAW & set(text)


def make_db(db: Path, batch: str = BATCH) -> None:
    """Three jobs of ``batch``: JOB uncertain, "f" failed with ERROR, "p" pending."""

    async def go() -> None:
        async with await Store.open(db) as store:
            await store.add_jobs(
                [
                    make_spec(JOB, PROMPT, batch=batch),
                    make_spec("f", PROMPT, batch=batch),
                    make_spec("p", PROMPT, batch=batch),
                ]
            )
            for job in await store.claim_pending(2):
                if job.id == JOB:
                    await store.transition(job.id, S.SUBMITTING, S.UNCERTAIN, error=ERROR)
                else:
                    await store.transition(
                        job.id, S.SUBMITTING, S.FAILED, error_kind="bad_request", error=ERROR,
                        detail=ERROR,
                    )  # fmt: skip

    asyncio.run(go())


# -- status: the one command that prints through rich ------------------------------------


def test_status_shows_hostile_batch_names_and_job_ids_as_written() -> None:
    make_db(Path("jobs.db"))
    result = invoke("status", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert f"│ {BATCH} │" in result.stdout  # both tables, exactly as written
    assert result.stdout.count(BATCH) == 3
    assert f"  {JOB} ({BATCH})" in result.stdout  # the uncertain job's line


def test_status_escapes_control_characters_of_a_batch_name_visibly() -> None:
    make_db(Path("jobs.db"), batch=CONTROL)
    result = invoke("status", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert not raw_controls(result.stdout), repr(result.stdout)
    assert f"  {JOB} ({CONTROL_SHOWN})" in result.stdout


def test_every_part_of_status_shows_outside_text_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parts a small database does not reach (expiry, chains, partial results, routes,
    reviews and retakes), each given hostile text."""
    from batchveo.observe import summary

    make_db(Path("jobs.db"))
    data: dict[str, Any] = json.loads(invoke("status", "--json", "--db", "jobs.db").stdout)
    evil = f"{BATCH} {CONTROL}"
    b = data["batches"].pop(BATCH)
    b["samples"] = {"partial": 1, "requested": 2, "returned": 1, "filtered": 1}
    data["batches"] = {evil: b, "other": copy.deepcopy(b)}
    data["at_risk"] = [{"id": JOB, "batch": evil, "hours_left": 3}]
    data["uncertain"] = [{"id": CONTROL, "batch": evil}]
    data["chains"] = [{"root": evil, "done": 1, "total": 2}]
    data["routes"] = [
        {"route": evil, "states": data["states"], "total": 3},
        {"route": "gptproto", "states": data["states"], "total": 3},
    ]
    counts = {"passed": 0, "flagged": 1, "error": 0, "skipped": 0, "cost_usd": 0.01}
    data["reviews"] = {
        **counts,
        "retakes": 1,
        "chosen_retakes": 0,
        "due": 0,
        "batches": {evil: {**counts, "retakes": 1, "chosen_retakes": 0, "due": 0}},
        "flagged_takes": [{"id": JOB, "batch": evil, "score": 2, "retake": evil}],
    }

    async def hostile(db_path: Path) -> dict[str, Any]:
        return data

    monkeypatch.setattr(summary, "database_status", hostile)
    result = invoke("status", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert not raw_controls(out), repr(out)
    shown = f"{BATCH} {CONTROL_SHOWN}"
    assert out.count(f"│ {shown} │") == 5  # states, money, partial results, routes, reviews
    assert f"│ {shown} │" in out.split("\nroutes\n")[1]
    assert f"  {JOB} ({shown}): 3 h left" in out
    assert f"  {CONTROL_SHOWN} ({shown})" in out
    assert f"Scene chains (hops done/total): {shown} 1/2" in out
    assert f"  {JOB} ({shown}): score 2; {shown}" in out


def test_the_terminal_console_reads_no_markup_and_no_emoji_codes() -> None:
    from batchveo.observe.text import terminal_console

    console = terminal_console(width=200, force_terminal=True, color_system="truecolor")
    with console.capture() as seen:
        console.print(f"{BATCH} {PROMPT}")
    assert f"{BATCH} {PROMPT}" in _plain(seen.get())
    assert "\x1b]8;" not in seen.get()  # no hyperlink made


def _plain(text: str) -> str:
    """``text`` without rich's own SGR colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# -- the plain-text commands: show, plan, export, retry, cancel, load, report ---------------


def test_show_prints_hostile_ids_prompts_and_server_texts_as_written() -> None:
    make_db(Path("jobs.db"))
    for job_id in (JOB, "f"):
        result = invoke("show", job_id, "--db", "jobs.db")
        assert result.exit_code == 0, result.output
        assert f"              id: {job_id}\n" in result.stdout
        assert f"           batch: {BATCH}\n" in result.stdout
        assert f"          prompt: {PROMPT}\n" in result.stdout
        assert f"           error: {ERROR}\n" in result.stdout


def test_plan_names_a_hostile_batch_as_written() -> None:
    Path("m.yaml").write_text(
        f"defaults:\n  budget: 100\njobs:\n  - id: {json.dumps(JOB)}\n"
        f"    prompt: {json.dumps(PROMPT)}\n"
    )
    result = invoke("plan", "m.yaml", "--batch", BATCH, "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert f"budget of batch {BATCH}: $100.00" in result.stdout
    result = invoke("plan", "m.yaml", "--batch", CONTROL, "--db", "jobs.db")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "batchveo: m.yaml: --batch has the control character U+001B at character 2\n"
    )


def test_load_names_a_hostile_batch_as_written_and_stores_it_exactly() -> None:
    Path("m.yaml").write_text(f"jobs:\n  - id: {json.dumps(JOB)}\n    prompt: hi\n")
    result = invoke("load", "m.yaml", "--batch", BATCH, "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"1 new, 0 already loaded (batch {BATCH})\n"
    data = json.loads(invoke("status", "--json", "--db", "jobs.db").stdout)
    assert list(data["batches"]) == [BATCH]


@pytest.mark.parametrize("name", [CONTROL, "tab\there", " "])
def test_load_refuses_a_batch_name_with_control_characters_writing_nothing(name: str) -> None:
    Path("m.yaml").write_text("jobs:\n  - id: a\n    prompt: hi\n")
    result = invoke("load", "m.yaml", "--batch", name, "--db", "jobs.db")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("batchveo: m.yaml: --batch ") and result.stderr[-1] == "\n"
    assert len(result.stderr.splitlines()) == 1 and not raw_controls(result.stderr)
    assert not Path("jobs.db").exists()


def test_load_refuses_a_manifest_whose_file_name_cannot_name_a_batch() -> None:
    name = "night\x1b[2J.yaml"
    Path(name).write_text("jobs:\n  - id: a\n    prompt: hi\n")
    result = invoke("load", name, "--db", "jobs.db")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "batchveo: night\\x1b[2J.yaml: the batch name (the file's name) has the control"
        " character U+001B at character 6 (rename the file or pass --batch NAME)\n"
    )
    assert not Path("jobs.db").exists()
    assert invoke("load", name, "--batch", "night", "--db", "jobs.db").exit_code == 0


def test_export_keeps_hostile_texts_exact() -> None:
    make_db(Path("jobs.db"))
    result = invoke("export", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows[JOB]["batch"] == BATCH and rows[JOB]["prompt"] == PROMPT
    assert rows["f"]["error"] == ERROR


def test_retry_and_cancel_name_hostile_jobs_as_written() -> None:
    make_db(Path("jobs.db"))
    result = invoke("retry", JOB, "p", CONTROL, "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert (
        f"{JOB} is uncertain, not failed: left as it is"
        f" (`batchveo retry --state uncertain {JOB}` reopens it)\n"
    ) in result.stderr
    assert "p is pending: nothing to retry\n" in result.stderr
    assert f"{CONTROL_SHOWN}: no such job\n" in result.stderr
    assert not raw_controls(result.output), repr(result.output)
    result = invoke("cancel", JOB, "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert f"not cancelled: {JOB}: it is uncertain" in result.stderr


def test_report_names_a_hostile_out_path_as_written() -> None:
    make_db(Path("jobs.db"))
    for name in (f"{JOB} :thumbs_up:.html", f"{CONTROL}.html"):
        result = invoke("report", "--out", name, "--db", "jobs.db")
        assert result.exit_code == 0, result.output
        shown = name.replace(CONTROL, CONTROL_SHOWN)
        assert result.stdout.startswith(f"wrote {shown} (3 jobs: ")
        assert not raw_controls(result.output), repr(result.output)
        assert Path(name).exists()


# -- run: its summary and its progress --------------------------------------------------


async def test_a_run_stopped_by_a_hostile_server_text_says_it_as_written(tmp_path: Path) -> None:
    """The service's own words end the run (an account refused): the last line quotes
    them, markup and all, and no control character of theirs reaches the terminal."""
    Path("m.yaml").write_text(f"jobs:\n  - id: {json.dumps(JOB)}\n    prompt: hi\n")
    async with fast_sim(precondition_failure=f"{ERROR} {CONTROL}") as sim:
        env = dict(os.environ, BATCHVEO_API_KEY=KEY, BATCHVEO_BASE_URL=sim.url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "batchveo", "run", "m.yaml", "--batch", BATCH,
            "--rpm", "0",
            "--db", "jobs.db", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = (b.decode() for b in await asyncio.wait_for(proc.communicate(), 60))
    assert proc.returncode == 4, err
    assert not raw_controls(out + err), repr(err)
    assert f"loaded: 1 new, 0 already loaded (batch {BATCH})\n" in err
    [last] = [line for line in err.splitlines() if line.startswith("batchveo: stopped: ")]
    assert ERROR in last and "owned" in last
    assert f"| last error: {JOB}: HTTP 400 FAILED_PRECONDITION: {ERROR} e [2Jv" in err  # progress


def test_the_live_progress_shows_a_hostile_error_as_written() -> None:
    console = Console(width=200, force_terminal=True, color_system="truecolor")
    progress = LiveProgress(console)
    event = TransitionEvent(
        job_id=JOB, batch=BATCH, from_state="submitting", to_state="failed", at=0.0,
        attempt=1, detail=None, operation=None, error_kind="bad_request",
        error=f"{ERROR} {CONTROL}",
    )  # fmt: skip
    progress.on_transition(event)
    with console.capture() as seen:
        console.print(progress.renderable())
    shown = _plain(seen.get())
    assert f"{JOB}: {ERROR}" in shown
    assert not raw_controls(shown), repr(shown)


def test_a_console_of_its_own_would_have_read_the_markup() -> None:
    """The hostile strings above are hostile: rich's defaults act on them."""
    console = Console(width=200)
    with console.capture() as seen:
        console.print(BATCH.replace("[/]", ""))
    assert BATCH.replace("[/]", "") not in seen.get()


def test_text_for_a_person_has_one_way_out_each() -> None:
    """The rule holds by construction: one console factory, one echo; a new command that
    printed another way would show hostile text raw."""
    root = Path(__file__).resolve().parent.parent / "batchveo"
    consoles, echoes = [], []
    for path in sorted(root.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(root)}:{n}"
            if re.search(r"\bConsole\(", line) and "def " not in line:
                consoles.append(where)
            if "click.echo(" in line and not line.rstrip().endswith("# data"):
                echoes.append(where)
    assert [c.split(":")[0] for c in consoles] == ["observe/text.py"]
    assert [e.split(":")[0] for e in echoes] == ["cli/boundary.py"]
