"""The ``batchveo`` command line: the only module that prints or exits.

Exit codes are ``batchveo.exitcodes.ExitCode``.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import json
import os
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from batchveo.errors import BatchveoError, StaleTransition, StoreError, UserError
from batchveo.exitcodes import ExitCode
from batchveo.states import JobState
from batchveo.store import Job, Store

if TYPE_CHECKING:
    from batchveo.run.plan import Plan


T = TypeVar("T")

db_option = click.option(
    "--db",
    "db_path",
    envvar="BATCHVEO_DB",
    default="batchveo.db",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The job database (env BATCHVEO_DB).",
)


MAX_PROBLEMS_SHOWN = 50
"""One bad default can make every row of a 100k manifest wrong: show a screenful."""


def _fail(message: str, code: int = ExitCode.USAGE) -> NoReturn:
    lines = message.splitlines() or [message]
    if len(lines) > MAX_PROBLEMS_SHOWN:
        more = len(lines) - MAX_PROBLEMS_SHOWN
        lines = [*lines[:MAX_PROBLEMS_SHOWN], f"... and {more} more problem(s)"]
    for line in lines:
        click.echo(f"batchveo: {line}" if not line.startswith("batchveo:") else line, err=True)
    sys.exit(code)


_SQLITE_BUGS = (
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.InternalError,
    sqlite3.NotSupportedError,
)
"""SQLite errors that mean batchveo misused it (not the file's or the disk's fault)."""


def _run(
    coro_fn: Callable[[], Awaitable[T]], db_path: Path | None = None, *, races: bool = False
) -> T:
    """Run one command's coroutine, turning the user's mistakes into one clear line and exit 2.

    Anything else (a ``StoreError`` other than ``DatabaseUnusable``, any other exception) is
    a bug and goes on to the boundary of ``main``: exit 70. ``races``: the command writes
    rows a run may move at the same moment, so a stale transition is that race (exit 3),
    not a bug; the store wrote nothing of it.
    """
    from batchveo.lock import Locked

    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except Locked as e:
        _fail(str(e), ExitCode.LOCKED)
    except UserError as e:  # DatabaseUnusable too: the user's file, not our bug
        _fail(str(e), ExitCode.USAGE)
    except StaleTransition as e:
        if not races:
            raise
        _fail(
            f"another process changed the database meanwhile ({e}); nothing was changed:"
            " run the command again",
            ExitCode.LOCKED,
        )
    except StoreError:
        raise  # a bug: main's boundary reports it
    except sqlite3.DatabaseError as e:
        if isinstance(e, _SQLITE_BUGS):
            raise
        where = f"{db_path}: " if db_path is not None else ""
        _fail(f"{where}cannot use the database: {e}", ExitCode.USAGE)
    except BatchveoError as e:
        _fail(str(e), ExitCode.FAILURES)


# -- the boundary: a bug is not bad input ------------------------------------------------

CRASH_DIR_NAME = "batchveo"
"""Tracebacks go to ``$XDG_STATE_HOME/batchveo/`` (default ``~/.local/state/batchveo/``),
one file per crash, readable by the user only: a cron job's log stays one line."""
MAX_CRASH_SUMMARY_CHARS = 300
"""The one line about an internal error is cut here; the whole message is in the file."""


def crash_dir(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / CRASH_DIR_NAME


def _scrub(text: str) -> str:
    """``text`` without the API key (nor anything key-like from the environment)."""
    from batchveo.redact import redact

    return redact(text, os.environ)


def _write_crash(text: str) -> Path:
    """The traceback, scrubbed, to a new file only the user can read; its path."""
    import tempfile
    import time

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"crash-{stamp}-{os.getpid()}.txt"
    last: OSError | None = None
    for folder in (crash_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = folder / name
            tmp = folder / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, text.encode("utf-8", "replace"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            return path
        except OSError as e:
            last = e
    raise last or OSError("no folder for the traceback")


def _internal_error(exc: BaseException) -> NoReturn:
    """One line on the terminal, exit 70; the traceback (scrubbed) into a file."""
    try:
        import traceback

        from batchveo import __version__

        text = _scrub(
            f"batchveo {__version__}: {' '.join(sys.argv)}\n"
            + "".join(traceback.format_exception(exc))
        )
        try:
            where = f"details in {_write_crash(text)}"
        except OSError as e:
            where = f"the details could not be written ({e.strerror or e})"
        summary = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        summary = _visible(" ".join(_scrub(summary).split()))
        if len(summary) > MAX_CRASH_SUMMARY_CHARS:
            summary = summary[: MAX_CRASH_SUMMARY_CHARS - 3] + "..."
    except Exception:  # out of memory again, say: still one line and exit 70
        summary, where = type(exc).__name__, "the details could not be written"
    _fail(
        f"internal error (a bug in batchveo, not in your input): {summary}; {where}",
        ExitCode.SOFTWARE,
    )


class _Boundary(click.Group):
    """Every command runs inside this: an exception no command turned into a message is a
    bug, reported as one line and exit 70, never as a traceback on the terminal."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own: usage errors (exit 2), --help, Ctrl-C
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # `batchveo export | head`: click's main handles a closed pipe
            _internal_error(e)
        except Exception as e:  # MemoryError included
            _internal_error(e)


async def _open_store(db_path: Path, *, must_exist: bool = False) -> Store:
    if must_exist and not db_path.exists():
        raise UserError(f"{db_path}: no such database (load a manifest first)")
    return await Store.open(db_path)


_UNSAFE_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
"""C0 and C1 controls, DEL, line separators and the bidirectional overrides: the
characters that can move the cursor, retitle or clear a terminal, or reorder a line."""


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c in "\n\r\t":
        return repr(c)[1:-1]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def _visible(text: str) -> str:
    """``text`` with every unsafe character escaped, visibly (``\x1b`` becomes ``\\x1b``):
    a prompt or a server's error text printed to a terminal can never act on it."""
    return _UNSAFE_CHARS.sub(_escape_char, text)


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group(cls=_Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchveo")
def main() -> None:
    """Turn manifests of prompts and images into Veo 3.1 videos, unattended."""


# -- load ---------------------------------------------------------------------


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch", help="Batch name (default: each manifest's file name).")
@click.option("--replace", is_flag=True, help="Overwrite jobs whose spec changed (not submitted).")
@db_option
def load(manifests: tuple[Path, ...], batch: str | None, replace: bool, db_path: Path) -> None:
    """Validate manifests and add their jobs to the database (idempotent)."""

    async def go() -> str:
        from batchveo.run.runner import load_into_store

        result = await load_into_store(db_path, list(manifests), batch=batch, replace=replace)
        return result.summary()

    click.echo(_run(go, db_path, races=True))


# -- status -----------------------------------------------------------------


async def _status_data(db_path: Path) -> dict[str, Any]:
    """The status of ``db_path``; a database not created yet is an empty one, and stays
    uncreated (a monitor or a cron health check may look before anything was loaded)."""
    from batchveo import lock
    from batchveo.observe.summary import empty_status_data, status_data

    holder = lock.holder(db_path)  # read, never locked: a starting run is never in the way
    exists = db_path.exists()
    if exists:
        async with await _open_store(db_path, must_exist=True) as store:
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


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable counts.")
@db_option
def status(as_json: bool, db_path: Path) -> None:
    """Counts per state, per batch and overall; jobs at risk; uncertain jobs."""
    data = _run(lambda: _status_data(db_path), db_path)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if not data["database"]["exists"]:
        click.echo(f"{db_path}: no database yet (nothing loaded): 0 jobs")
        return
    from rich.console import Console

    from batchveo.cli.display import status_renderable

    Console(soft_wrap=True).print(status_renderable(data))
    if data["active_run"]:
        click.echo(f"a run (pid {data['active_run']['pid']}) is active on {db_path}")


# -- show ---------------------------------------------------------------------


@main.command()
@click.argument("job_id")
@db_option
def show(job_id: str, db_path: Path) -> None:
    """One job with its full event history."""

    async def go() -> tuple[Job, list[Any]]:
        async with await _open_store(db_path, must_exist=True) as store:
            job = await store.get(job_id)
            if job is None:
                raise UserError(f"{db_path}: no job {job_id!r}")
            return job, await store.history(job)

    job, events = _run(go, db_path)
    # Every value is escaped: an old database, or a server's error text, may hold ESC or NUL.
    for key, value in job.as_dict().items():
        if value in (None, [], {}, ""):
            continue
        if key.endswith("_at"):
            value = _fmt_time(value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        click.echo(f"{key:>16}: {_visible(str(value))}")
    click.echo("history:")
    for e in events:
        src = e.from_state or "-"
        detail = f"  ({_visible(e.detail)})" if e.detail else ""
        click.echo(f"  {_fmt_time(e.at)}  {src:>10} -> {e.to_state:<10} #{e.attempt}{detail}")


# -- export -------------------------------------------------------------------

EXPORT_FIELDS = (
    "id",
    "batch",
    "state",
    "prompt",
    "model",
    "params",
    "inputs",
    "operation",
    "files",
    "error_kind",
    "error",
    "attempts",
    "cost_usd",
    "created_at",
    "submitted_at",
    "generated_at",
    "finished_at",
)


def _export_row(job: Job) -> dict[str, Any]:
    d = job.as_dict()
    return {k: d[k] for k in EXPORT_FIELDS}


@main.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in JobState]))
@click.option("--batch")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@db_option
def export(
    fmt: str, states: tuple[str, ...], batch: str | None, output: Path | None, db_path: Path
) -> None:
    """One row per job: spec, state, operation, files with sha256, errors, timestamps."""

    async def go() -> list[Job]:
        async with await _open_store(db_path, must_exist=True) as store:
            wanted = [JobState(s) for s in states] if states else None
            return await store.jobs(wanted, batch=batch)

    jobs = _run(go, db_path)
    if output is None:
        _write_export(sys.stdout, jobs, fmt)
        return
    try:
        with _replacing(output) as out:
            _write_export(out, jobs, fmt)
    except OSError as e:
        _fail(f"{output}: cannot write the export: {e.strerror or e}")


def _write_export(out: IO[str], jobs: list[Job], fmt: str) -> None:
    if fmt == "jsonl":
        for job in jobs:
            out.write(json.dumps(_export_row(job), ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS))
    writer.writeheader()
    for job in jobs:
        row = _export_row(job)
        for k in ("params", "inputs", "files"):
            row[k] = json.dumps(row[k], ensure_ascii=False)
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP, "CSV Injection")."""


def _csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, made plain text by a leading
    single quote (OWASP's advice); a prompt or a server's error text is never a formula.
    Numbers stay numbers; JSONL keeps every text exact."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@contextmanager
def _replacing(path: Path) -> Iterator[IO[str]]:
    """A text file that replaces ``path`` whole once written (temp name, fsync, rename),
    or leaves it as it was: an export is never half-written. The folder must exist."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


# -- report -------------------------------------------------------------------


@main.command()
@click.option("--batch", help="Only this batch (default: every batch in the database).")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file (default: report.html beside the downloaded videos; "
    "report-BATCH.html with --batch).",
)
@db_option
def report(batch: str | None, out_path: Path | None, db_path: Path) -> None:
    """Write one self-contained HTML page to look at a night: videos, prompts, failures."""
    from batchveo.report import ReportSummary, build_report, default_report_path

    async def go() -> ReportSummary:
        async with await _open_store(db_path, must_exist=True) as store:
            path = out_path or await default_report_path(store, batch=batch)
            return await build_report(store, path, batch=batch)

    summary = _run(go, db_path)
    states = ", ".join(f"{n} {s}" for s, n in summary.states.items()) or "no jobs"
    click.echo(f"wrote {summary.path} ({summary.jobs} jobs: {states})")
    if summary.attention:
        click.echo(f"batchveo: {summary.attention} job(s) need attention", err=True)
    if summary.missing_files:
        click.echo(
            f"batchveo: {summary.missing_files} downloaded file(s) are no longer on disk", err=True
        )


# -- retry / cancel -------------------------------------------------------------


@main.command()
@click.argument("ids", nargs=-1)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["failed", "uncertain", "expired", "cancelled"]),
    help="Which jobs to send back to pending (default: failed).",
)
@db_option
def retry(ids: tuple[str, ...], states: tuple[str, ...], db_path: Path) -> None:
    """Send failed (or uncertain, expired) jobs back to pending for the next run.

    Retrying an uncertain job may pay for it twice: it may already have been
    generated by a submit whose answer was lost.
    """

    async def go() -> tuple[list[str], int]:
        async with await _open_store(db_path, must_exist=True) as store:
            wanted = [JobState(s) for s in states] or [JobState.FAILED]
            moved = await store.requeue(wanted, list(ids) or None)
            generated = {j.id for j in await store.jobs([JobState.GENERATED])}
            return moved, len(generated.intersection(moved))

    moved, again = _run(go, db_path, races=True)
    click.echo(f"{len(moved) - again} job(s) back to pending")
    if again:
        click.echo(f"{again} job(s) back to generated: their videos are downloaded again")


@main.command()
@click.argument("ids", nargs=-1)
@click.option("--batch", help="Cancel the pending jobs of this batch.")
@click.option("--all", "all_", is_flag=True, help="Cancel every pending job.")
@db_option
def cancel(ids: tuple[str, ...], batch: str | None, all_: bool, db_path: Path) -> None:
    """Cancel pending jobs. Running operations cannot be cancelled on this API."""
    if not (ids or batch or all_):
        _fail("say which jobs: IDs, --batch B or --all")

    async def go() -> tuple[list[str], list[Job]]:
        async with await _open_store(db_path, must_exist=True) as store:
            moved = await store.cancel(list(ids) or None, batch=batch)
            busy: list[Job] = []
            if ids:
                for jid in ids:
                    job = await store.get(jid)
                    if job is not None and job.state is not JobState.CANCELLED:
                        busy.append(job)
            return moved, busy

    moved, busy = _run(go, db_path, races=True)
    click.echo(f"{len(moved)} job(s) cancelled")
    for job in busy:
        why = (
            "its operation is running on the server and this API cannot cancel it"
            if job.state in (JobState.SUBMITTING, JobState.RUNNING)
            else f"it is {job.state.value}, only pending jobs can be cancelled"
        )
        click.echo(f"not cancelled: {job.id}: {why}", err=True)


# -- money ------------------------------------------------------------------------


def _read_prices(path: Path | None) -> dict[str, dict[str, float]] | None:
    """A price file (YAML or JSON): ``{model: usd_per_s}`` or ``{model: {res: usd_per_s}}``."""
    if path is None:
        return None
    import yaml

    from batchveo.models import parse_prices

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return parse_prices(data, str(path))
    except OSError as e:
        raise UserError(f"{path}: cannot read the price file: {e.strerror}") from None
    except (yaml.YAMLError, ValueError) as e:
        raise UserError(str(e) if isinstance(e, ValueError) else f"{path}: not YAML/JSON") from None


prices_option = click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your own prices (YAML/JSON: model -> USD per second, or per resolution).",
)


def _plan_text(plan: Plan) -> str:
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
            f"budget of batch {_visible(name)}: ${b['budget_usd']:,.2f}"
            f" (${b['committed_usd']:,.2f} already committed)"
        )
    if plan.over_budget:
        why = [f"{plan.over_run_budget} over --budget"] if plan.over_run_budget else []
        why += [
            f"{n} over the budget of batch {_visible(name)}"
            for name, n in plan.over_batch_budget.items()
        ]
        lines.append(f"would stay pending:  {plan.over_budget} over budget ({', '.join(why)})")
    lines.append("nothing was sent and nothing was written")
    return "\n".join(lines)


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch", help="Batch name (default: each manifest's file name).")
@click.option("--budget", "budget_usd", type=click.FloatRange(min=0), help="Budget in USD.")
@click.option(
    "--resubmit-uncertain", is_flag=True, help="Plan as `run --resubmit-uncertain` would."
)
@click.option("--json", "as_json", is_flag=True)
@prices_option
@db_option
def plan(
    manifests: tuple[Path, ...],
    batch: str | None,
    budget_usd: float | None,
    resubmit_uncertain: bool,
    as_json: bool,
    prices_path: Path | None,
    db_path: Path,
) -> None:
    """Validate MANIFESTS and show what a run would submit and cost; sends nothing.

    The budgets (each manifest's ``budget:`` and --budget) apply exactly as in a run.
    """
    from batchveo.manifest import read_manifests
    from batchveo.run.plan import make_plan

    async def go() -> Plan:
        prices = _read_prices(prices_path)
        loaded = read_manifests(manifests, batch=batch)
        return make_plan(
            loaded.specs, db_path, budgets=loaded.budgets, prices=prices,
            budget_usd=budget_usd, resubmit_uncertain=resubmit_uncertain,
        )  # fmt: skip

    result = _run(go, db_path)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else _plan_text(result))


# -- run -------------------------------------------------------------------------

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType[float]):
    """``90s``, ``14m``, ``1h``, ``2d`` or plain seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        try:
            if text and text[-1] in _UNITS_S:
                seconds = float(text[:-1]) * _UNITS_S[text[-1]]
            else:
                seconds = float(text)
        except ValueError:
            self.fail(f"{value!r} is not a duration like 90s, 14m, 1h or 2d", param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds


DURATION = Duration()


def _provider_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--base-url",
        envvar="BATCHVEO_BASE_URL",
        help="Send every request to this server (e.g. a simulator). Env BATCHVEO_BASE_URL.",
    )(f)
    f = click.option(
        "--provider",
        type=click.Choice(["gptproto", "gemini"]),
        default="gptproto",
        show_default=True,
        envvar="BATCHVEO_PROVIDER",
    )(f)
    return f


@main.command()
@click.argument("manifests", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out", "out_dir", default="videos", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--rpm",
    default=10.0,
    show_default=True,
    envvar="BATCHVEO_RPM",
    type=click.FloatRange(min=0),
    help="Submits per minute (0: unpaced).",
)
@click.option(
    "--max-inflight",
    default=10,
    show_default=True,
    envvar="BATCHVEO_MAX_INFLIGHT",
    type=click.IntRange(min=1),
    help="Operations submitting or running at once.",
)
@click.option("--max-attempts", default=5, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--poll-interval",
    default="10s",
    show_default=True,
    type=DURATION,
    envvar="BATCHVEO_POLL_INTERVAL",
)
@click.option(
    "--first-poll", default="10s", show_default=True, type=DURATION, envvar="BATCHVEO_FIRST_POLL"
)
@click.option("--max-runtime", type=DURATION, help="Stop claiming near this limit (90s, 14m, 1h).")
@click.option("--max-jobs", type=click.IntRange(min=0), help="Submit at most N new jobs this run.")
@click.option(
    "--retention",
    default="2d",
    show_default=True,
    type=DURATION,
    help="How long the service keeps a video.",
)
@click.option(
    "--resubmit-uncertain",
    is_flag=True,
    help="Send uncertain jobs again (they may be billed twice).",
)
@click.option("--batch", help="Batch name for the manifests (default: file names).")
@click.option("--replace", is_flag=True, help="Overwrite changed jobs not yet submitted.")
@click.option(
    "--budget",
    "budget_usd",
    type=click.FloatRange(min=0),
    help="Never submit past this estimated total (USD) for the database.",
)
@prices_option
@click.option("--dry-run", is_flag=True, help="Validate and show the plan; send nothing.")
@click.option(
    "--watch",
    "watch_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep running and load every new manifest dropped in this folder.",
)
@click.option(
    "--watch-interval",
    default="10s",
    show_default=True,
    type=DURATION,
    help="How often --watch looks for new manifests.",
)
@click.option(
    "--until-idle",
    "until_idle",
    is_flag=True,
    help="Stop when every job is finished (the default, unless --watch).",
)
@click.option(
    "--rate-polls",
    is_flag=True,
    help="Polls count against --rpm too (for providers whose quota counts them).",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append one JSON object per line per event (for tools).",
)
@click.option(
    "--notify",
    "notify_url",
    help="POST a JSON summary here at the end, on account errors and when videos near expiry.",
)
@click.option("--on-complete", help="Run this shell command with the JSON summary on stdin.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output; only the final line.")
@click.option("-v", "--verbose", is_flag=True, help="Progress lines every 10 s, not every 60 s.")
@click.option("--submitters", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--downloaders", default=4, show_default=True, type=click.IntRange(min=1))
@_provider_options
@db_option
def run(
    manifests: tuple[Path, ...],
    out_dir: Path,
    rpm: float,
    max_inflight: int,
    max_attempts: int,
    poll_interval: float,
    first_poll: float,
    max_runtime: float | None,
    max_jobs: int | None,
    retention: float,
    resubmit_uncertain: bool,
    batch: str | None,
    replace: bool,
    budget_usd: float | None,
    prices_path: Path | None,
    dry_run: bool,
    watch_dir: Path | None,
    watch_interval: float,
    until_idle: bool,
    rate_polls: bool,
    log_file: Path | None,
    notify_url: str | None,
    on_complete: str | None,
    quiet: bool,
    verbose: bool,
    submitters: int,
    downloaders: int,
    provider: str,
    base_url: str | None,
    db_path: Path,
) -> None:
    """Load MANIFESTS (if any) and drive every job of the database to the end.

    Exit 0: all done; 1: all finished, some failed/expired/uncertain; 2: bad input;
    3: another run holds the database; 4: account error; 75: stopped with work left.
    """
    from batchveo.api import VeoClient, resolve_api_key, resolve_provider
    from batchveo.run.context import RunConfig
    from batchveo.run.runner import Runner, RunResult, add_specs

    config = RunConfig(
        out_dir=out_dir,
        rpm=rpm,
        max_inflight=max_inflight,
        max_attempts=max_attempts,
        first_poll_s=first_poll,
        poll_interval_s=max(poll_interval, 0.001),
        max_runtime_s=max_runtime,
        retention_s=retention,
        resubmit_uncertain=resubmit_uncertain,
        submitters=submitters,
        downloaders=downloaders,
        max_jobs=max_jobs,
        budget_usd=budget_usd,
        polls_count_against_rpm=rate_polls,
        watch_dir=watch_dir,
        watch_interval_s=max(watch_interval, 0.01),
    )
    if watch_dir is not None and until_idle:
        _fail("--watch keeps running for new manifests; it cannot be combined with --until-idle")
    if watch_dir is not None and not watch_dir.is_dir():
        _fail(f"{watch_dir}: no such folder to watch")

    if dry_run:
        if not manifests:
            _fail("--dry-run needs the manifests to plan")
        click.get_current_context().invoke(
            plan, manifests=manifests, batch=batch, budget_usd=budget_usd, as_json=False,
            prices_path=prices_path, db_path=db_path, resubmit_uncertain=resubmit_uncertain,
        )  # fmt: skip
        return

    async def go() -> RunResult:
        from batchveo import lock
        from batchveo.manifest import read_manifests
        from batchveo.models import estimate_params_cost_usd

        prices = _read_prices(prices_path)
        loaded_set = await asyncio.to_thread(read_manifests, manifests, batch=batch)
        if not manifests and not watch_dir and not db_path.exists():
            raise UserError(f"{db_path}: no such database; give a manifest to run")
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"--out {out_dir}: a file is there, not a folder")
        from batchveo.files import check_output_folder

        check_output_folder(out_dir)  # before loading: a read-only --out writes nothing
        prov = resolve_provider(provider, base_url)
        key = resolve_api_key(prov.name)
        with lock.acquire(db_path) as held:
            if held.previous and held.previous.get("pid"):
                click.echo(
                    f"batchveo: took over the lock left by a dead run (pid {held.previous['pid']})",
                    err=True,
                )
            async with await Store.open(db_path) as store:
                if manifests:
                    loaded = await add_specs(
                        store, loaded_set.specs, manifests, replace=replace,
                        budgets=loaded_set.budgets,
                    )  # fmt: skip
                    click.echo(f"loaded: {loaded.summary()}", err=True)
                if prices:
                    await store.reprice(
                        lambda j: estimate_params_cost_usd(j.model, j.params, prices)
                    )
                async with VeoClient(prov, key) as client:
                    from batchveo.observe.monitor import RunMonitor

                    watch = RunMonitor(
                        store, config, key, log_file=log_file, notify_url=notify_url,
                        on_complete=on_complete, quiet=quiet, verbose=verbose, say=_say,
                        stream=sys.stderr, max_problems=MAX_PROBLEMS_SHOWN,
                    )  # fmt: skip
                    await watch.start()
                    runner = Runner(store, client, config, observer=watch.on_run_event)
                    _install_signal_handlers(runner)
                    try:
                        result = await runner.run()
                    finally:
                        await watch.stop()
                    await watch.finished(result)
                    return result

    result = _run(go, db_path)
    click.echo(f"batchveo: {result.summary()}", err=True)
    if result.recovered_uncertain:
        click.echo(
            f"batchveo: {len(result.recovered_uncertain)} job(s) were mid-submit when the last"
            " run stopped and are now uncertain: see `batchveo status`",
            err=True,
        )
    sys.exit(result.exit_code)


def _say(message: str) -> None:
    click.echo(f"batchveo: {message}", err=True)


def _install_signal_handlers(runner: Any) -> None:
    """First SIGINT/SIGTERM: stop gracefully. Second: stop at once (still safe)."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.request_stop, f"stopped by {sig.name}")


# -- simulate ----------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--api-key", default="sim-key", show_default=True, help="The key it accepts.")
@click.option("--generation-s", help="MIN,MAX seconds of generation (default 11,60).")
@click.option("--latency-s", help="MIN,MAX seconds added to every response.")
@click.option("--rpm-limit", type=int, help="Accepted submits per window, then 429.")
@click.option("--rate-window-s", type=float, help="The rpm window (default 60).")
@click.option("--rpd-limit", type=int, help="Accepted submits per quota day, then PerDay 429s.")
@click.option("--day-s", type=float, help="Length of a quota day in seconds (default 86400).")
@click.option("--early-404-s", type=float, help="Polls answer 404 this long after a submit.")
@click.option("--max-concurrent-ops", type=int)
@click.option("--balance-submits", type=int, help="Insufficient balance after N submits.")
@click.option("--precondition-failure", help="Answer every submit 400 FAILED_PRECONDITION.")
@click.option("--retention-s", type=float, help="Seconds a video is kept (default 2 days).")
@click.option("--rate-429", type=float)
@click.option("--rate-5xx", type=float)
@click.option("--rate-reset", type=float)
@click.option("--rate-content-policy", type=float)
@click.option("--rate-operation-error", type=float)
@click.option("--rate-filtered", type=float)
@click.option("--rate-truncated-download", type=float)
@click.option("--retry-after-style", type=click.Choice(["header", "retryinfo", "message", "none"]))
@click.option("--poll-methods", type=click.Choice(["get", "post", "both"]))
@click.option("--files-host", help="Host name for download URIs (proves the key is not sent).")
@click.option("--redirect-downloads", is_flag=True, default=None)
@click.option("--seed", type=int)
def simulate(host: str, port: int, **knobs: Any) -> None:
    """Serve a faithful fake of the Veo API, to rehearse a batch for free."""
    import logging

    from batchveo.sim import SimConfig, serve_forever

    try:
        config = SimConfig.from_mapping(knobs)
    except ValueError as e:
        _fail(str(e))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(serve_forever(config, host, port))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        _fail(f"cannot serve on {host}:{port}: {e}")
