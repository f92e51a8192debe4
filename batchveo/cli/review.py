"""``batchveo review`` and the review flags of ``run``: videos watched by a model.

``review_options`` are the flags both commands share (the settings over a batch's own,
the reviews' pacing); ``run`` adds ``--review`` (every batch, not only those whose
manifest asks). ``review`` reviews finished videos afterwards: the due ones, or again
with ``--force``. Exit 0 whatever the verdicts: a flagged take is a verdict, not a
failure; 2 for bad input (a job that is not done, an unknown id), 3 if a run holds the
database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchveo.cli.boundary import echo, main, run_async
from batchveo.cli.params import F, db_option, provider_options
from batchveo.verdicts import MAX_RETAKES

if TYPE_CHECKING:
    from batchveo.store import Review, Take

_RESOLUTIONS = ("low", "medium", "high")


def _location(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A region as ``--location`` takes it (``manifest.fields.location``), or None."""
    from batchveo.manifest.fields import Bad, location

    if value is None:
        return None
    try:
        return location(value)
    except Bad as e:
        raise click.BadParameter(str(e)) from None


_OPTIONS = (
    click.option("--review-model", help="The model that reviews (gemini-3.5-flash)."),
    click.option("--review-rubric", help="What a good take is, in words."),
    click.option(
        "--review-threshold", type=click.FloatRange(0, 10),
        help="A take scoring below this is flagged (0-10; default 7).",
    ),
    click.option(
        "--review-retakes", type=click.IntRange(0, MAX_RETAKES),
        help=f"Extra takes a flagged job may get (0-{MAX_RETAKES}; default 0: flag only).",
    ),
    click.option(
        "--review-fps", type=click.FloatRange(0, 24, min_open=True),
        help="Frames the model samples per second of video (default 1).",
    ),
    click.option(
        "--review-media-resolution", type=click.Choice(_RESOLUTIONS),
        help="How finely frames are seen: low costs about a third of medium.",
    ),
    click.option(
        "--review-location", callback=_location,
        help="Vertex AI: the region of the reviewing model (default: the route's --location).",
    ),
    click.option(
        "--review-rpm", default=10.0, show_default=True, type=click.FloatRange(min=0),
        help="Review requests per minute (0: unpaced).",
    ),
    click.option(
        "--review-inflight", default=2, show_default=True, type=click.IntRange(min=1),
        help="Reviews on their way at once.",
    ),
)  # fmt: skip


def review_options(f: F) -> F:
    """The flags over a batch's review settings, and the reviews' pacing."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def review_flags(*, review_all: bool = False, **given: Any) -> Any:
    """The ``ReviewFlags`` of the parsed ``review_options`` (and ``--review``)."""
    from batchveo.run.config import ReviewFlags
    from batchveo.verdicts import MediaResolution

    resolution = given.get("review_media_resolution")
    return ReviewFlags(
        review_all=review_all,
        model=given.get("review_model"),
        rubric=given.get("review_rubric"),
        threshold=given.get("review_threshold"),
        retakes=given.get("review_retakes"),
        fps=given.get("review_fps"),
        media_resolution=None if resolution is None else MediaResolution(resolution),
        rpm=given.get("review_rpm", 10.0),
        in_flight=given.get("review_inflight", 2),
        location=given.get("review_location"),
    )


@main.command()
@click.argument("ids", nargs=-1)
@click.option("--batch", help="Only this batch's videos.")
@click.option("--force", is_flag=True, help="Review again the takes already reviewed.")
@review_options
@provider_options
@db_option
def review(
    ids: tuple[str, ...],
    batch: str | None,
    force: bool,
    provider: str | None,
    project: str | None,
    location: str | None,
    storage_uri: str | None,
    base_url: str | None,
    storage_base_url: str | None,
    db_path: Path,
    **given: Any,
) -> None:
    """Review finished videos (IDS, or every done one of --batch or the database) with a
    Gemini model: a score, pass or flag, defects at MM:SS. Verdicts never fail a job."""
    from batchveo.run.review_app import ReviewRequest, review_finished

    request = ReviewRequest(
        db_path=db_path, flags=review_flags(**given), job_ids=ids, batch=batch, force=force,
        provider=provider, project=project, location=location, storage_uri=storage_uri,
        base_url=base_url, storage_base_url=storage_base_url,
    )  # fmt: skip
    tally = run_async(lambda: review_finished(request), db_path, races=True)
    echo(tally.summary())


def review_lines(review: Review | None) -> Iterator[str]:
    """``batchveo show``: the take's review, its defects at ``MM:SS``, its summary."""
    from batchveo.observe.text import utc_seconds, visible

    if review is None or review.status is None:
        if review is not None:
            yield "review: due (not reviewed yet)"
        return
    score = "" if review.score is None else f", score {review.score:g}/10"
    yield f"review: {review.status.value}{score} ({review.model}, ${review.cost_usd:.4f})"
    if review.matches_prompt is not None:
        yield f"  matches the prompt: {'yes' if review.matches_prompt else 'no'}"
    for defect in review.defects:
        yield f"  {defect.at}  {visible(defect.issue)}"
    if review.summary:
        yield f"  summary: {visible(review.summary)}"
    if review.error:
        yield f"  {visible(review.error)}"
    if review.reviewed_at is not None:
        yield f"  reviewed at {utc_seconds(review.reviewed_at)}"
    if review.retake:
        yield f"  {review.retake}"


def take_lines(takes: Sequence[Take]) -> Iterator[str]:
    """``batchveo show``: a job's takes (if it has retakes), their scores, the chosen one."""
    if len(takes) < 2:
        return
    yield "takes:"
    for t in takes:
        verdict = t.status or ("due" if t.state == "done" else t.state)
        score = "" if t.score is None else f", score {t.score:g}"
        chosen = "  <- chosen" if t.chosen else ""
        yield f"  {t.job_id} (take {t.take}): {verdict}{score}{chosen}"
