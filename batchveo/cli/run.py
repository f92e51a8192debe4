"""``batchveo run``: flags in, a night out, one line and an exit code at the end.

The command only parses: it checks the flags that contradict each other, builds the
``RunConfig`` and ``RunOptions``, and hands them to ``run.app.run_night``, which puts the
night together and runs it. What comes back (a dead run's lock taken over, what the
manifests added, how the night ended) is printed here, on stderr: stdout is left for
data. The exit code is the result's ``ExitCode``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from batchveo.cli.boundary import MAX_PROBLEMS_SHOWN, echo, fail, main, run_async, say
from batchveo.cli.commands import plan
from batchveo.cli.params import DURATION, db_option, prices_option, provider_options
from batchveo.cli.review import review_flags, review_options


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
    type=DURATION,
    envvar="BATCHVEO_POLL_INTERVAL",
    help="Poll each operation this often (for two minutes, then less often) instead of"
    " learning when. [default: learned]",
)
@click.option(
    "--first-poll",
    default="10s",
    type=DURATION,
    envvar="BATCHVEO_FIRST_POLL",
    help="First poll this long after a submit instead of learning when. [default: learned]",
)
@click.option(
    "--max-notice-delay",
    default="10s",
    show_default=True,
    type=DURATION,
    envvar="BATCHVEO_MAX_NOTICE_DELAY",
    help="Learned polls keep the expected delay between a video being made and the run"
    " noticing within this.",
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
@click.option("--review", "review_all", is_flag=True, help="Review every done video (a model).")
@click.option(
    "--posters/--no-posters",
    default=True,
    show_default=True,
    help="Make each video's poster frame (a small JPEG beside it) as it is saved; without, "
    "`batchveo report` makes them.",
)
@review_options
@provider_options
@db_option
def run(
    manifests: tuple[Path, ...],
    out_dir: Path,
    rpm: float,
    max_inflight: int,
    max_attempts: int,
    poll_interval: float,
    first_poll: float,
    max_notice_delay: float,
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
    provider: str | None,
    project: str | None,
    location: str | None,
    storage_uri: str | None,
    base_url: str | None,
    storage_base_url: str | None,
    db_path: Path,
    review_all: bool,
    posters: bool,
    **review_given: Any,
) -> None:
    """Load MANIFESTS (if any) and drive every job of the database to the end.

    Exit 0: all done; 1: all finished, some failed/expired/uncertain; 2: bad input;
    3: another run holds the database; 4: account error; 75: stopped with work left.
    """
    from batchveo.run.app import LockTakenOver, Notice, RunOptions, run_night
    from batchveo.run.context import RunConfig

    if max_notice_delay <= 0:
        fail("--max-notice-delay must be more than 0")
    given = click.get_current_context().get_parameter_source
    fixed_first, fixed_interval = (
        given(name) not in (ParameterSource.DEFAULT, None)
        for name in ("first_poll", "poll_interval")
    )
    if watch_dir is not None and until_idle:
        fail("--watch keeps running for new manifests; it cannot be combined with --until-idle")
    if watch_dir is not None and not watch_dir.is_dir():
        fail(f"{watch_dir}: no such folder to watch")
    if dry_run:
        if not manifests:
            fail("--dry-run needs the manifests to plan")
        click.get_current_context().invoke(
            plan, manifests=manifests, batch=batch, budget_usd=budget_usd, as_json=False,
            prices_path=prices_path, db_path=db_path, resubmit_uncertain=resubmit_uncertain,
            provider=provider, project=project, location=location, storage_uri=storage_uri,
            review_all=review_all,
        )  # fmt: skip
        return

    config = RunConfig(
        out_dir=out_dir,
        rpm=rpm,
        max_inflight=max_inflight,
        max_attempts=max_attempts,
        first_poll_s=first_poll,
        poll_interval_s=max(poll_interval, 0.001),
        max_notice_delay_s=None if fixed_first and fixed_interval else max_notice_delay,
        learn_first_poll=not fixed_first,
        learn_poll_interval=not fixed_interval,
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
        review=review_flags(review_all=review_all, **review_given),
        posters=posters,
    )
    options = RunOptions(
        db_path=db_path, config=config, manifests=manifests, batch=batch, replace=replace,
        prices_path=prices_path, provider=provider, project=project, location=location,
        storage_uri=storage_uri, base_url=base_url, storage_base_url=storage_base_url,
        log_file=log_file, notify_url=notify_url, on_complete=on_complete, quiet=quiet,
        verbose=verbose, max_problems=MAX_PROBLEMS_SHOWN,
    )  # fmt: skip

    def tell(notice: Notice) -> None:
        if isinstance(notice, LockTakenOver):
            say(f"took over the lock left by a dead run (pid {notice.pid})")
        else:
            echo(f"loaded: {notice.result.summary()}", err=True)

    night = run_async(lambda: run_night(options, say=say, stream=sys.stderr, tell=tell), db_path)
    result = night.result
    say(result.summary())
    if result.recovered_uncertain:
        say(
            f"{len(result.recovered_uncertain)} job(s) were mid-submit when the last"
            " run stopped and are now uncertain: see `batchveo status`"
        )
    sys.exit(result.exit_code)
