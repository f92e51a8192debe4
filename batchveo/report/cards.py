"""One job's card: its video (or why there is none), inputs, prompt, parameters, failure.

Every prompt, message, id and path goes through ``html.escape``; files are linked with
relative URLs from the folder of the page the card is on (``paths.rel_url``). The markup
is terse (well under a kilobyte a card). Videos are ``preload="none"`` with their path in
``data-src`` (the page's script gives them ``src`` near the viewport) and their poster
frame (``report.posters``) as ``poster``: every card shows a picture at once, and no
video is fetched or decoded until it is played. A video without a poster shows
``NO_POSTER``. Input images are ``loading="lazy"``. A reviewed take's card also shows its
verdict (``verdicts``): a score badge in its head, the box under its facts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchveo.report.paths import locate, rel_url
from batchveo.report.posters import poster_file
from batchveo.report.verdicts import badge, card_attrs, verdict
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job, Review

S = JobState

KIND_LABELS: Mapping[str, str] = {
    ErrorKind.CONTENT_POLICY: "rejected by content policy",
    ErrorKind.BAD_REQUEST: "bad request",
    ErrorKind.OPERATION_ERROR: "generation failed",
    ErrorKind.FILTERED: "blocked by the safety filter",
    ErrorKind.RETRIES_EXHAUSTED: "retries exhausted",
    ErrorKind.OPERATION_LOST: "operation lost",
    ErrorKind.SUBMIT_UNKNOWN: "submit outcome unknown",
    ErrorKind.INTERRUPTED: "interrupted mid-submit",
    ErrorKind.EXPIRED: "deleted before download",
    ErrorKind.DOWNLOAD: "download failed",
}

HINTS: Mapping[JobState, str] = {
    S.UNCERTAIN: "May have been billed: check the provider's console before "
    "`batchveo retry --state uncertain`.",
    S.EXPIRED: "The server deleted the video before it was downloaded; a retry generates "
    "(and bills) it again.",
}

NO_POSTER = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 320 180'%3E"
    "%3Crect width='320' height='180' fill='%2311141a'/%3E%3Ctext x='160' y='96' "
    "fill='%239aa3b2' font-family='sans-serif' font-size='15' text-anchor='middle'%3E"
    "no poster frame: press play%3C/text%3E%3C/svg%3E"
)
"""The picture of a video that has no poster frame (one it could not be made from)."""

CHOSEN_MARK = '<span class="chosen" title="the best-scoring take of this job">chosen</span>'
"""On the chosen take's card, in a row of a job's takes."""

_FILTER_PREFIX = re.compile(r"^blocked by the safety filter \(not charged\):\s*")


def fmt_duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def fmt_time(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def fmt_span(first: float, last: float | None) -> str:
    """``2025-11-21 23:02 → 06:40 CET``, with the date twice only when it changes."""
    if last is None:
        return f"from {fmt_time(first)}"
    a, b = (datetime.fromtimestamp(t).astimezone() for t in (first, last))
    if a.date() == b.date():
        return f"{a:%Y-%m-%d %H:%M} → {b:%H:%M %Z}"
    return f"{a:%Y-%m-%d %H:%M} → {b:%Y-%m-%d %H:%M %Z}"


def anchor(job_id: str) -> str:
    """The card's id attribute / fragment: URL-safe, so links need no further quoting."""
    return "job-" + quote(job_id, safe="")


def gen_seconds(job: Job) -> float | None:
    if job.generated_at is None or job.submitted_at is None:
        return None
    return max(0.0, job.generated_at - job.submitted_at)


class Cards:
    """The cards of one page file; counts the downloaded files it finds missing."""

    def __init__(
        self,
        folder: Path,
        *,
        files_base: Path | None,
        show_batch: bool,
        reviews: Mapping[str, Review] | None = None,
    ):
        """``folder`` holds the page; relative file paths of a job are looked for from the
        current folder, then from ``files_base`` (the database's folder: runs are usually
        started beside it). ``show_batch``: the report holds several batches. ``reviews``:
        the recorded reviews of the page's jobs, by job id (each card shows its own)."""
        self.folder = folder
        self.reviews = reviews or {}
        self.files_base = files_base
        self.show_batch = show_batch
        self.missing_files = 0

    def card(self, job: Job, *, chosen: bool = False) -> str:
        """``job``'s card, with its recorded review's verdict if it has one; ``chosen``:
        the chosen take of a job with retakes (its card is marked so)."""
        st = job.state.value
        review = self.reviews.get(job.id)
        gen = gen_seconds(job)
        files = [self.locate(str(f["path"])) for f in job.files if f.get("path")]
        media = self.media(job, files)
        video = self.video_url(job, files) if review is not None and review.defects else None
        facts = [f"attempts {job.attempts}"]
        if gen is not None:
            facts.append(f"generated in {fmt_duration(gen)}")
        if job.state is S.DONE and job.cost_usd:
            facts.append(f"~${job.cost_usd:,.2f}")
        links = "".join(
            f' · <a href="{escape(rel_url(p, self.folder))}">{escape(os.path.basename(p))}</a>'
            for p in files
        )
        batch = f'<span class="b">{escape(job.batch)}</span>' if self.show_batch else ""
        body = (
            f'<div class="head"><a class="jid" href="#{anchor(job.id)}">{escape(job.id)}</a>'
            f"{batch}{badge(review)}{CHOSEN_MARK if chosen else ''}"
            f'<span class="st s-{st}">{st}</span></div>'
            f'<p class="prompt" tabindex="0">{escape(job.prompt)}</p>'
            f'<p class="kv">{params(job)}</p>'
            f'<p class="kv">{escape(" · ".join(facts))}{links}</p>'
            f"{verdict(review, video)}{problem(job)}{partial(job)}"
        )
        return (
            f'<article class="card s-{st}" id="{escape(anchor(job.id))}" data-state="{st}" '
            f'data-batch="{escape(job.batch)}" data-gen="{"" if gen is None else f"{gen:.1f}"}"'
            f'{card_attrs(review)}>{media}<div class="body">{body}</div></article>'
        )

    def locate(self, path: str) -> str:
        return locate(path, self.files_base)

    def video_url(self, job: Job, files: Sequence[str]) -> str | None:
        """The URL of the video the card plays (None: it has none on disk)."""
        if job.state is not S.DONE or not files or not os.path.exists(files[0]):
            return None
        return rel_url(files[0], self.folder)

    def media(self, job: Job, files: Sequence[str]) -> str:
        if job.state is S.DONE and files:
            missing = [p for p in files if not os.path.exists(p)]
            self.missing_files += len(missing)
            if files[0] in missing:
                main = '<div class="ph">video file missing</div>'
            else:
                src = escape(rel_url(files[0], self.folder))
                poster = self.poster(files[0], job.posters[0] if job.posters else None)
                main = (
                    f'<video controls preload="none" poster="{escape(poster)}" '
                    f'data-src="{src}"></video>'
                )
        else:
            label = {S.DONE: "no video file"}.get(job.state, job.state.value)
            main = f'<div class="ph">{escape(label)}</div>'
        return f'<div class="media">{main}{self.inputs(job.inputs)}</div>'

    def poster(self, video: str, name: str | None) -> str:
        """The URL of the poster of ``video`` (``NO_POSTER`` if it has none)."""
        path = poster_file(video, name)
        return NO_POSTER if path is None else rel_url(path, self.folder)

    def inputs(self, inputs: Mapping[str, Any]) -> str:
        figs: list[tuple[str, str]] = []
        for key, label in (("image", "first frame"), ("lastFrame", "last frame")):
            ref = inputs.get(key)
            if isinstance(ref, Mapping) and ref.get("path"):
                figs.append((str(ref["path"]), label))
        for i, ref in enumerate(inputs.get("referenceImages") or [], 1):
            if isinstance(ref, Mapping) and ref.get("path"):
                figs.append((str(ref["path"]), f"reference {i}"))
        if not figs:
            return ""
        items = "".join(
            f'<figure><img loading="lazy" src="{escape(rel_url(p, self.folder))}" '
            f'alt="{label}"><figcaption>{label}</figcaption></figure>'
            for p, label in figs
        )
        return f'<div class="ins">{items}</div>'


def params(job: Job) -> str:
    p = dict(job.params)
    parts = [job.model]
    for key, fmt in (("aspectRatio", "{}"), ("resolution", "{}"), ("durationSeconds", "{} s")):
        if p.get(key) is not None:
            parts.append(fmt.format(p.pop(key)))
    parts.extend(f"{k} {_param_value(v)}" for k, v in sorted(p.items()) if v is not None)
    return escape(" · ".join(parts))


def problem(job: Job) -> str:
    if not (job.error or job.error_kind) or job.state is S.DONE:
        return ""
    kind = job.error_kind or ""
    label = KIND_LABELS.get(kind, kind or "error")
    charged = (
        '<span class="nc">not charged</span>'
        if kind in (ErrorKind.FILTERED, ErrorKind.CONTENT_POLICY, ErrorKind.BAD_REQUEST)
        else ""
    )
    hint = HINTS.get(job.state)
    message = job.error or ""
    if kind == ErrorKind.FILTERED:  # the label and the badge already say the rest
        message = "Reasons: " + (_FILTER_PREFIX.sub("", message) or "none given")
    return (
        f'<div class="err s-{job.state.value}" data-kind="{escape(kind)}">'
        f"{charged}<b>{escape(label)}</b><br>{escape(message)}"
        f"{f'<br><i>{escape(hint)}</i>' if hint else ''}</div>"
    )


def partial(job: Job) -> str:
    """A job that got some of its videos, not all: how many, and the filter's reasons
    (the videos kept back are not charged; its cost counts the returned ones)."""
    if not job.partly_filtered:
        return ""
    kept = job.samples_filtered or job.samples_requested - (job.samples_returned or 0)
    reasons = "; ".join(job.filtered_reasons) or "none given"
    return (
        f'<div class="err part s-{job.state.value}" data-kind="partial">'
        '<span class="nc">not charged</span>'
        f"<b>{job.samples_returned} of {job.samples_requested} videos</b>"
        f" · {kept} blocked by the safety filter<br>Reasons: {escape(reasons)}</div>"
    )


def _param_value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str) and (" " in v or not v):
        return f"“{v}”"
    return str(v)
