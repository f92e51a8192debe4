"""The ``batchveo`` command line: the only module that prints or exits.

Exit codes (stable, for cron and scripts):

    0   every job is done
    1   all jobs are terminal but some failed, expired or are uncertain
    2   bad input (manifest, flag, database file): nothing was written
    3   another run holds the database
    4   account error (401, 403, insufficient balance) or unusable model: run stopped
    75  stopped with work left (signal, --max-runtime): run again to continue
"""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from batchveo.errors import BatchveoError, StoreError, UserError
from batchveo.states import JobState
from batchveo.store import Job, Store

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_ACCOUNT = 4
EXIT_STOPPED = 75

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


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    for line in message.splitlines() or [message]:
        click.echo(f"batchveo: {line}" if not line.startswith("batchveo:") else line, err=True)
    sys.exit(code)


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run one command's coroutine, turning user mistakes into one clear line and exit 2."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except UserError as e:
        _fail(str(e), EXIT_USAGE)
    except StoreError as e:
        _fail(str(e), EXIT_USAGE)
    except sqlite3.DatabaseError as e:
        _fail(f"cannot use the database: {e}", EXIT_USAGE)
    except BatchveoError as e:
        _fail(str(e), EXIT_FAILURES)
    raise AssertionError("unreachable")


async def _open_store(db_path: Path, *, must_exist: bool = False) -> Store:
    if must_exist and not db_path.exists():
        raise UserError(f"{db_path}: no such database (load a manifest first)")
    return await Store.open(db_path)


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
        from batchveo.runner import load_into_store

        result = await load_into_store(db_path, list(manifests), batch=batch, replace=replace)
        return result.summary()

    click.echo(_run(go))


# -- status -----------------------------------------------------------------


async def _status_data(db_path: Path) -> dict[str, Any]:
    async with await _open_store(db_path, must_exist=True) as store:
        from batchveo.summary import status_data

        return await status_data(store)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable counts.")
@db_option
def status(as_json: bool, db_path: Path) -> None:
    """Counts per state, per batch and overall; jobs at risk; uncertain jobs."""
    data = _run(lambda: _status_data(db_path))
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from rich.console import Console

    from batchveo.display import status_renderable

    Console(soft_wrap=True).print(status_renderable(data))


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
            return job, await store.events(job_id)

    job, events = _run(go)
    for key, value in job.as_dict().items():
        if value in (None, [], {}, ""):
            continue
        if key.endswith("_at"):
            value = _fmt_time(value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        click.echo(f"{key:>16}: {value}")
    click.echo("history:")
    for e in events:
        src = e.from_state or "-"
        detail = f"  ({e.detail})" if e.detail else ""
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

    jobs = _run(go)
    out = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        if fmt == "jsonl":
            for job in jobs:
                out.write(json.dumps(_export_row(job), ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS))
            writer.writeheader()
            for job in jobs:
                row = _export_row(job)
                for k in ("params", "inputs", "files"):
                    row[k] = json.dumps(row[k], ensure_ascii=False)
                writer.writerow(row)
    finally:
        if output:
            out.close()


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

    async def go() -> list[str]:
        async with await _open_store(db_path, must_exist=True) as store:
            wanted = [JobState(s) for s in states] or [JobState.FAILED]
            return await store.requeue(wanted, list(ids) or None)

    moved = _run(go)
    click.echo(f"{len(moved)} job(s) back to pending")


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

    moved, busy = _run(go)
    click.echo(f"{len(moved)} job(s) cancelled")
    for job in busy:
        why = (
            "its operation is running on the server and this API cannot cancel it"
            if job.state in (JobState.SUBMITTING, JobState.RUNNING)
            else f"it is {job.state.value}, only pending jobs can be cancelled"
        )
        click.echo(f"not cancelled: {job.id}: {why}", err=True)


# -- run -------------------------------------------------------------------------

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):
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
    type=click.FloatRange(min=0),
    help="Submits per minute (0: unpaced).",
)
@click.option(
    "--max-inflight",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Operations submitting or running at once.",
)
@click.option("--max-attempts", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--poll-interval", default="10s", show_default=True, type=DURATION)
@click.option("--first-poll", default="10s", show_default=True, type=DURATION)
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
    from batchveo.context import RunConfig
    from batchveo.runner import Runner, RunResult, add_specs, validate_manifests

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
    )

    async def go() -> RunResult:
        specs = await asyncio.to_thread(validate_manifests, manifests, batch=batch)
        prov = resolve_provider(provider, base_url)
        key = resolve_api_key(prov.name)
        if not manifests and not db_path.exists():
            raise UserError(f"{db_path}: no such database; give a manifest to run")
        async with await Store.open(db_path) as store:
            if manifests:
                loaded = await add_specs(store, specs, manifests, replace=replace)
                click.echo(f"loaded: {loaded.summary()}", err=True)
            async with VeoClient(prov, key) as client:
                runner = Runner(store, client, config)
                _install_signal_handlers(runner)
                return await runner.run()

    result = _run(go)
    click.echo(f"batchveo: {result.summary()}", err=True)
    if result.recovered_uncertain:
        click.echo(
            f"batchveo: {len(result.recovered_uncertain)} job(s) were mid-submit when the last"
            " run stopped and are now uncertain: see `batchveo status`",
            err=True,
        )
    sys.exit(result.exit_code)


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
@click.option("--max-concurrent-ops", type=int)
@click.option("--balance-submits", type=int, help="Insufficient balance after N submits.")
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

    from batchveo.simulator import SimConfig, serve_forever

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
