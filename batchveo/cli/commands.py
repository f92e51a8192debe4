"""The commands around a run: load, status, show, export, retry, cancel, plan, simulate
(``run`` is in ``cli.run``, ``review`` in ``cli.review``, ``report`` in ``cli.report``).

Each parses its options, calls the function that does the work (in ``store``,
``observe``, ``report``, ``run``...) through ``boundary.run_async``, and prints what
came back. Heavy modules are imported inside the commands: ``--version`` and ``--help``
must start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from batchveo.cli.boundary import echo, fail, main, run_async
from batchveo.cli.params import db_option, prices_option, route_of, route_options
from batchveo.errors import UserError
from batchveo.states import JobState

if TYPE_CHECKING:
    from batchveo.store import Event, Job, Review, Store, Take


async def open_store(db_path: Path) -> Store:
    """The database of a command that reads or changes jobs: it must exist already."""
    from batchveo.store import Store

    if not db_path.exists():
        raise UserError(f"{db_path}: no such database (load a manifest first)")
    return await Store.open(db_path)


# -- load ---------------------------------------------------------------------


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch", help="Batch name (default: each manifest's file name).")
@click.option("--replace", is_flag=True, help="Overwrite jobs whose spec changed (not submitted).")
@route_options
@db_option
def load(
    manifests: tuple[Path, ...],
    batch: str | None,
    replace: bool,
    provider: str | None,
    project: str | None,
    location: str | None,
    storage_uri: str | None,
    db_path: Path,
) -> None:
    """Validate manifests and add their jobs to the database (idempotent)."""
    # Not from the runner: its imports (aiohttp, the client) cost a load 0.3 s of CPU.
    from batchveo.run.loading import load_into_store

    route = route_of(provider, project, location, storage_uri)
    result = run_async(
        lambda: load_into_store(
            db_path, list(manifests), batch=batch, replace=replace, route=route
        ),
        db_path,
        races=True,
    )
    echo(result.summary())


# -- status / show ---------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable counts.")
@db_option
def status(as_json: bool, db_path: Path) -> None:
    """Counts per state, per batch and overall; jobs at risk; uncertain jobs."""
    from batchveo.observe.summary import database_status

    data = run_async(lambda: database_status(db_path), db_path)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))  # data
        return
    if not data["database"]["exists"]:
        echo(f"{db_path}: no database yet (nothing loaded): 0 jobs")
        return
    from batchveo.cli.display import status_renderable
    from batchveo.observe.text import terminal_console

    terminal_console(soft_wrap=True).print(status_renderable(data))
    if data["active_run"]:
        echo(f"a run (pid {data['active_run']['pid']}) is active on {db_path}")


@main.command()
@click.argument("job_id")
@db_option
def show(job_id: str, db_path: Path) -> None:
    """One job with its full event history."""
    from batchveo.cli.display import job_lines
    from batchveo.cli.review import review_lines, take_lines

    async def go() -> tuple[Job, list[Event], list[Job], Review | None, list[Take]]:
        async with await open_store(db_path) as store:
            job = await store.get(job_id)
            if job is None:
                raise UserError(f"{db_path}: no job {job_id!r}")
            return (
                job,
                await store.history(job),
                await store.chain_members(job),
                await store.review_of(job_id),
                await store.takes_of(job_id),
            )

    job, events, chain, review, takes = run_async(go, db_path)
    for line in [*job_lines(job, events, chain), *review_lines(review), *take_lines(takes)]:
        echo(line)


# -- export -------------------------------------------------------------------


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
    import asyncio

    from batchveo.cli.export import export_database, replacing

    wanted = [JobState(s) for s in states] if states else None

    def stream(out: IO[str]) -> None:
        async def go() -> int:
            async with await open_store(db_path) as store:  # migrated, or refused
                return await asyncio.to_thread(export_database, store.path, out, fmt, wanted, batch)

        run_async(go, db_path)

    if output is None:
        stream(sys.stdout)
        return
    try:
        with replacing(output) as out:
            stream(out)
    except OSError as e:
        fail(f"{output}: cannot write the export: {e.strerror or e}")


# -- retry / cancel -------------------------------------------------------------

RETRYABLE = (JobState.FAILED, JobState.UNCERTAIN, JobState.EXPIRED, JobState.CANCELLED)
"""The finished states a user may send back to pending (``batchveo retry --state``)."""


@main.command()
@click.argument("ids", nargs=-1)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in RETRYABLE]),
    help="Which jobs to send back to pending (default: failed).",
)
@db_option
def retry(ids: tuple[str, ...], states: tuple[str, ...], db_path: Path) -> None:
    """Send failed (or uncertain, expired) jobs back to pending for the next run.

    Retrying an uncertain job may pay for it twice: it may already have been
    generated by a submit whose answer was lost.
    """

    wanted = [JobState(s) for s in states] or [JobState.FAILED]

    async def go() -> tuple[int, int, int, dict[str, JobState | None]]:
        """How many of the jobs moved went back to pending, to generated (downloaded again,
        not paid again), and how many hops of scene chains wait for their parent again; the
        named jobs left as they were, with their state (None: no such job)."""
        async with await open_store(db_path) as store:
            moved = await store.requeue(wanted, list(ids) or None)
            now = list((await store.states_of(moved)).values())
            left = [i for i in dict.fromkeys(ids) if i not in set(moved)]
            found = await store.states_of(left)
            return (
                now.count(JobState.PENDING),
                now.count(JobState.GENERATED),
                now.count(JobState.WAITING),
                {i: found.get(i) for i in left},
            )

    pending, again, hops, left = run_async(go, db_path, races=True)
    for job_id, state in left.items():  # a named job retry did not take: say why, and how
        if state is None:
            echo(f"{job_id}: no such job", err=True)
        elif state in RETRYABLE and state not in wanted:
            echo(
                f"{job_id} is {state.value}, not {'/'.join(w.value for w in wanted)}: left as it"
                f" is (`batchveo retry --state {state.value} {job_id}` reopens it)",
                err=True,
            )
        else:
            echo(f"{job_id} is {state.value}: nothing to retry", err=True)
    echo(f"{pending} job(s) back to pending")
    if again:
        echo(f"{again} job(s) back to generated: their videos are downloaded again")
    if hops:
        echo(f"{hops} hop(s) of their chains reopened: they wait for their parent's video")


@main.command()
@click.argument("ids", nargs=-1)
@click.option("--batch", help="Cancel the pending jobs of this batch.")
@click.option("--all", "all_", is_flag=True, help="Cancel every pending job.")
@db_option
def cancel(ids: tuple[str, ...], batch: str | None, all_: bool, db_path: Path) -> None:
    """Cancel pending jobs (and scene chains' waiting hops). Running operations cannot be
    cancelled on this API."""
    if not (ids or batch or all_):
        fail("say which jobs: IDs, --batch B or --all")

    async def go() -> tuple[list[str], list[Job]]:
        """The jobs cancelled, and those named by id that could not be."""
        async with await open_store(db_path) as store:
            moved = await store.cancel(list(ids) or None, batch=batch)
            busy: list[Job] = []
            for jid in ids:
                job = await store.get(jid)
                if job is not None and job.state is not JobState.CANCELLED:
                    busy.append(job)
            return moved, busy

    moved, busy = run_async(go, db_path, races=True)
    echo(f"{len(moved)} job(s) cancelled")
    for job in busy:
        why = (
            "its operation is running on the server and this API cannot cancel it"
            if job.state in (JobState.SUBMITTING, JobState.RUNNING)
            else f"it is {job.state.value}, only pending (or waiting) jobs can be cancelled"
        )
        echo(f"not cancelled: {job.id}: {why}", err=True)


# -- plan -------------------------------------------------------------------------


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch", help="Batch name (default: each manifest's file name).")
@click.option("--budget", "budget_usd", type=click.FloatRange(min=0), help="Budget in USD.")
@click.option(
    "--resubmit-uncertain", is_flag=True, help="Plan as `run --resubmit-uncertain` would."
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--review", "review_all", is_flag=True, help="Count every batch's reviews.")
@prices_option
@route_options
@db_option
def plan(
    manifests: tuple[Path, ...],
    batch: str | None,
    budget_usd: float | None,
    resubmit_uncertain: bool,
    as_json: bool,
    prices_path: Path | None,
    provider: str | None,
    project: str | None,
    location: str | None,
    storage_uri: str | None,
    db_path: Path,
    review_all: bool = False,
) -> None:
    """Validate MANIFESTS and show what a run would submit and cost; sends nothing.

    The budgets (each manifest's ``budget:`` and --budget) apply exactly as in a run.
    """
    from batchveo.cli.display import plan_text
    from batchveo.run.app import plan_night

    route = route_of(provider, project, location, storage_uri)
    result = run_async(
        lambda: plan_night(
            manifests, db_path, batch=batch, budget_usd=budget_usd, prices_path=prices_path,
            resubmit_uncertain=resubmit_uncertain, route=route, review_all=review_all,
        ),
        db_path,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))  # data
    else:
        echo(plan_text(result))


# -- simulate ----------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--api-key", default="sim-key", show_default=True, help="The key it accepts.")
@click.option(
    "--generation-s",
    help="Seconds of generation: MIN,MAX (uniform; default 11,60) or"
    " lognormal:median=M,sigma=S[,scale=K] (each draw times K: scale=0.1 runs 10x faster).",
)
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
@click.option(
    "--write-vertex-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Vertex: write a service-account key trusted by this simulator to FILE.",
)
@click.option(
    "--vertex-key-project",
    default="batchveo-sim",
    show_default=True,
    help="Vertex: the project of the key --write-vertex-key writes.",
)
@click.option(
    "--vertex-key",
    "vertex_keys",
    multiple=True,
    help="Vertex: trust this service-account key file (repeatable).",
)
@click.option("--token-lifetime-s", type=float, help="Vertex: seconds a token lives (3600).")
@click.option(
    "--storage-upload-base",
    help="Vertex: write videos into this Cloud Storage (an emulator) instead of its own.",
)
@click.option(
    "--project-number-names",
    is_flag=True,
    default=None,
    help="Vertex: operation names carry the project's number, not its id.",
)
@click.option(
    "--vertex-permission-denied",
    is_flag=True,
    default=None,
    help="Vertex: answer every request 403 PERMISSION_DENIED.",
)
@click.option(
    "--vertex-retry-after-style",
    type=click.Choice(["retryinfo", "message", "none"]),
    help="Vertex: how a 429 tells its delay (default retryinfo).",
)
@click.option("--rate-empty", type=float, help="Vertex: done with no video, error or filter.")
def simulate(
    host: str,
    port: int,
    write_vertex_key: Path | None,
    vertex_key_project: str,
    vertex_keys: tuple[str, ...],
    **knobs: Any,
) -> None:
    """Serve a faithful fake of the Veo API (Gemini format and Vertex AI, one port),
    to rehearse a batch for free."""
    import asyncio
    import logging

    from batchveo.sim import SimConfig, serve_forever

    try:
        config = SimConfig.from_mapping({**knobs, "vertex_keys": vertex_keys or None})
    except ValueError as e:
        fail(str(e))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(
            serve_forever(
                config,
                host,
                port,
                write_vertex_key=write_vertex_key,
                vertex_key_project=vertex_key_project,
            )
        )
    except KeyboardInterrupt:
        pass
    except ValueError as e:  # a key file it cannot read or write
        fail(str(e))
    except OSError as e:
        fail(f"cannot serve on {host}:{port}: {e}")
