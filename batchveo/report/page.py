"""The report page: server-rendered HTML, one card per job.

* One file, nothing fetched: the CSS and a few lines of plain JavaScript
  (``assets/report.css``, ``assets/report.js``, package data) are inlined, there is no
  CDN, font or framework, so the page opens offline, from a zip or from a shared drive.
* The cards are server-rendered HTML, not a JavaScript app: the page is readable with
  scripts off (each video is also a plain link), tests can check it with
  ``html.parser``, and the script only filters, searches, sorts and lazy-loads. No JSON
  is embedded, so there is no script-context escaping to get wrong: every prompt,
  message, id and path goes through ``html.escape``.
* 5,000 jobs must not freeze a browser: cards use ``content-visibility: auto``
  (off-screen cards are neither laid out nor painted), videos are ``preload="none"``
  with their path in ``data-src`` and get ``src`` and ``preload="metadata"`` from an
  IntersectionObserver only near the viewport, input images are ``loading="lazy"``.
  The markup is terse (well under a kilobyte a card) so a 5,000-job page stays a few
  megabytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchveo.report.paths import locate, rel_url
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job

S = JobState

BAR_ORDER: tuple[JobState, ...] = (
    S.DONE,
    S.GENERATED,
    S.RUNNING,
    S.SUBMITTING,
    S.PENDING,
    S.CANCELLED,
    S.EXPIRED,
    S.UNCERTAIN,
    S.FAILED,
)
"""States in the order the bar, the legend and the state filter show them."""

SORT_ORDER: tuple[JobState, ...] = tuple(reversed(BAR_ORDER))
""""Sort by state": what needs attention first, done last. The script reads it from the
grid's ``data-state-order``."""

ATTENTION: frozenset[JobState] = frozenset({S.FAILED, S.UNCERTAIN, S.EXPIRED})
"""States the user has to look at in the morning."""

COLORS: Mapping[JobState, str] = {
    S.DONE: "#1f9d61",
    S.GENERATED: "#12a39a",
    S.RUNNING: "#3b7ddd",
    S.SUBMITTING: "#6aa3f0",
    S.PENDING: "#aab3bf",
    S.CANCELLED: "#7d8794",
    S.EXPIRED: "#9062cf",
    S.UNCERTAIN: "#d9961a",
    S.FAILED: "#d64545",
}

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

EMPTY = '<p class="empty">No jobs yet.</p>'
_FILTER_PREFIX = re.compile(r"^blocked by the safety filter \(not charged\):\s*")


@cache
def asset(name: str) -> str:
    """The text of ``assets/<name>`` (package data), read once per process."""
    return (resources.files("batchveo.report") / "assets" / name).read_text(encoding="utf-8")


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


def _gen_seconds(job: Job) -> float | None:
    if job.generated_at is None or job.submitted_at is None:
        return None
    return max(0.0, job.generated_at - job.submitted_at)


class Page:
    """One report page: the numbers at the top, then a card per job."""

    def __init__(
        self,
        jobs: Sequence[Job],
        folder: Path,
        *,
        batch: str | None,
        now: float,
        files_base: Path | None = None,
    ):
        """``folder`` holds the page; relative file paths of a job are looked for from the
        current folder, then from ``files_base`` (the database's folder: runs are usually
        started beside it)."""
        self.jobs = jobs
        self.folder = folder
        self.files_base = files_base
        self.batch = batch
        self.now = now
        self.counts = {s: 0 for s in BAR_ORDER}
        for job in jobs:
            self.counts[job.state] += 1
        self.batches: dict[str, int] = {}
        for job in jobs:
            self.batches[job.batch] = self.batches.get(job.batch, 0) + 1
        self.attention = [j for j in jobs if j.state in ATTENTION]
        self.missing_files = 0

    # -- the whole page -------------------------------------------------------------

    def render(self) -> str:
        cards = "\n".join(self.card(job) for job in self.jobs)  # counts missing files
        title = self.title()
        order = " ".join(state.value for state in SORT_ORDER)
        return (
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="generator" content="batchveo">'
            f"<title>{escape(title)} · batchveo report</title>"
            f"<style>{asset('report.css')}{self.state_css()}</style></head>\n<body>\n"
            f"{self.header(title)}\n{self.tools()}\n"
            f'<main id="grid" class="grid" data-state-order="{order}">\n{cards}\n</main>\n'
            f"{EMPTY if not self.jobs else ''}"
            "<footer>Made by batchveo. Costs are estimates from public prices; "
            "only successful jobs are billed.</footer>\n"
            f"<script>{asset('report.js')}</script>\n</body></html>\n"
        )

    def title(self) -> str:
        if self.batch is not None:
            return self.batch
        if len(self.batches) == 1:
            return next(iter(self.batches))
        return f"{len(self.batches)} batches" if self.batches else "batchveo"

    @staticmethod
    def state_css() -> str:
        return "".join(f".s-{s.value}{{--c:{c}}}" for s, c in COLORS.items())

    # -- the top ------------------------------------------------------------------

    def header(self, title: str) -> str:
        jobs = self.jobs
        done = [j for j in jobs if j.state is S.DONE]
        video_s = sum(
            int(j.params.get("durationSeconds") or 0) * max(1, len(j.files)) for j in done
        )
        cost = sum(j.cost_usd for j in done)
        submits = [j.submitted_at for j in jobs if j.submitted_at is not None]
        downloads = [j.finished_at for j in done if j.finished_at is not None]
        starts = submits or [j.created_at for j in jobs]
        ends = [j.finished_at for j in jobs if j.finished_at is not None]
        when = ""
        if starts:
            first, last = min(starts), max(ends) if ends else None
            when = f"ran {escape(fmt_span(first, last))} · "
        wall = fmt_duration(max(downloads) - min(submits)) if submits and downloads else "—"
        n_att = len(self.attention)
        stats = [
            (f"{len(jobs):,}", "jobs", ""),
            (f"{len(done):,}", "done", ""),
            (fmt_duration(video_s), "of video", ""),
            (f"${cost:,.2f}", "cost (estimate)", ""),
            (wall, "first submit → last download", ""),
            (f"{n_att:,}", "need attention", " warn" if n_att else " ok"),
        ]
        if n_partial := sum(1 for j in done if j.partly_filtered):
            stats.append((f"{n_partial:,}", "partly filtered", " warn"))
        stat_html = "".join(
            f'<div class="stat{cls}"><b>{escape(v)}</b><span>{escape(label)}</span></div>'
            for v, label, cls in stats
        )
        total = max(1, len(jobs))
        bar = "".join(
            f'<i class="s-{s.value}" style="width:{100 * n / total:.3f}%" '
            f'title="{s.value}: {n}"></i>'
            for s, n in self.counts.items()
            if n
        )
        legend = "".join(
            f'<li><button type="button" data-pick="{s.value}"><span class="sw s-{s.value}">'
            f"</span>{s.value} <b>{n:,}</b></button></li>"
            for s, n in self.counts.items()
            if n
        )
        return (
            '<header class="top">'
            f"<h1>{escape(title)}</h1>"
            f'<p class="when">{when}report made {escape(fmt_time(self.now))}</p>'
            f'<div class="stats">{stat_html}</div>'
            f'<div class="bar" role="img" aria-label="jobs per state">{bar}</div>'
            f'<ul class="legend">{legend}</ul>{self.attention_block()}</header>'
        )

    def attention_block(self) -> str:
        if not self.attention:
            return ""
        links = " ".join(
            f'<a class="s-{j.state.value}" href="#{_anchor(j.id)}">{escape(j.id)}</a>'
            for j in self.attention
        )
        n = len(self.attention)
        is_open = " open" if n <= 40 else ""
        return (
            f'<details class="attn"{is_open}><summary>{n:,} job{"s" * (n != 1)} need'
            f"{'s' * (n == 1)} attention (failed, uncertain, expired)</summary>"
            f'<p class="links">{links}</p></details>'
        )

    def tools(self) -> str:
        states = "".join(
            f'<option value="{s.value}">{s.value} ({n:,})</option>'
            for s, n in self.counts.items()
            if n
        )
        batches = "".join(
            f'<option value="{escape(b)}">{escape(b)} ({n:,})</option>'
            for b, n in sorted(self.batches.items())
        )
        return (
            '<nav class="tools">'
            '<select id="f-state" aria-label="state"><option value="">all states</option>'
            f"{states}</select>"
            '<select id="f-batch" aria-label="batch"><option value="">all batches</option>'
            f"{batches}</select>"
            '<input id="f-q" type="search" placeholder="search prompts…" aria-label="search">'
            '<select id="f-sort" aria-label="sort"><option value="">order loaded</option>'
            '<option value="id">sort by id</option><option value="state">sort by state</option>'
            '<option value="gen">slowest generation first</option></select>'
            f'<span id="shown">{len(self.jobs):,} jobs</span></nav>'
        )

    # -- one card ----------------------------------------------------------------------

    def card(self, job: Job) -> str:
        st = job.state.value
        gen = _gen_seconds(job)
        files = [self.locate(str(f["path"])) for f in job.files if f.get("path")]
        media = self.media(job, files)
        facts = [f"attempts {job.attempts}"]
        if gen is not None:
            facts.append(f"generated in {fmt_duration(gen)}")
        if job.state is S.DONE and job.cost_usd:
            facts.append(f"~${job.cost_usd:,.2f}")
        links = "".join(
            f' · <a href="{escape(rel_url(p, self.folder))}">{escape(os.path.basename(p))}</a>'
            for p in files
        )
        batch = f'<span class="b">{escape(job.batch)}</span>' if len(self.batches) > 1 else ""
        return (
            f'<article class="card s-{st}" id="{escape(_anchor(job.id))}" data-state="{st}" '
            f'data-batch="{escape(job.batch)}" data-gen="{"" if gen is None else f"{gen:.1f}"}">'
            f'{media}<div class="body">'
            f'<div class="head"><a class="jid" href="#{_anchor(job.id)}">{escape(job.id)}</a>'
            f'{batch}<span class="st s-{st}">{st}</span></div>'
            f'<p class="prompt" tabindex="0">{escape(job.prompt)}</p>'
            f'<p class="kv">{self.params(job)}</p>'
            f'<p class="kv">{escape(" · ".join(facts))}{links}</p>'
            f"{self.problem(job)}{self.partial(job)}</div></article>"
        )

    def locate(self, path: str) -> str:
        return locate(path, self.files_base)

    def media(self, job: Job, files: Sequence[str]) -> str:
        if job.state is S.DONE and files:
            missing = [p for p in files if not os.path.exists(p)]
            self.missing_files += len(missing)
            if files[0] in missing:
                main = '<div class="ph">video file missing</div>'
            else:
                src = escape(rel_url(files[0], self.folder))
                main = f'<video controls preload="none" data-src="{src}"></video>'
        else:
            label = {S.DONE: "no video file"}.get(job.state, job.state.value)
            main = f'<div class="ph">{escape(label)}</div>'
        return f'<div class="media">{main}{self.inputs(job.inputs)}</div>'

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

    @staticmethod
    def params(job: Job) -> str:
        p = dict(job.params)
        parts = [job.model]
        for key, fmt in (("aspectRatio", "{}"), ("resolution", "{}"), ("durationSeconds", "{} s")):
            if p.get(key) is not None:
                parts.append(fmt.format(p.pop(key)))
        parts.extend(f"{k} {_param_value(v)}" for k, v in sorted(p.items()) if v is not None)
        return escape(" · ".join(parts))

    @staticmethod
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

    @staticmethod
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


def _anchor(job_id: str) -> str:
    """The card's id attribute / fragment: URL-safe, so links need no further quoting."""
    return "job-" + quote(job_id, safe="")


def _param_value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str) and (" " in v or not v):
        return f"“{v}”"
    return str(v)
