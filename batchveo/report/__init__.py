"""The morning report: one self-contained HTML page to *look at* a night of generation.

Why it is built the way it is:

* One file, nothing fetched: CSS and a few lines of plain JavaScript are inline, there is no
  CDN, font or framework, so the page opens offline, from a zip or from a shared drive.
* It lives beside the videos and links them with relative URLs (``os.path.relpath`` from the
  report's folder, forward slashes, every segment URL-quoted), so moving or zipping the
  folder keeps every video playing.
* The cards are server-rendered HTML, not a JavaScript app: the page is readable with
  scripts off (each video is also a plain link), tests can check it with ``html.parser``,
  and the script only filters,
  searches, sorts and lazy-loads. No JSON is embedded, so there is no script-context
  escaping to get wrong: every prompt, message, id and path goes through ``html.escape``.
* 5,000 jobs must not freeze a browser: cards use ``content-visibility: auto`` (off-screen
  cards are neither laid out nor painted), videos are ``preload="none"`` with their path in
  ``data-src`` and get ``src`` and ``preload="metadata"`` from an IntersectionObserver only
  near the viewport, input images are ``loading="lazy"``. The markup is terse (well under a
  kilobyte a card) so a 5,000-job page stays a few megabytes.
* The page must be safe to share: it renders job data only, and as a last line of defence
  the finished text is scrubbed of anything shaped like an API key, including the value of
  any key-like environment variable.
* It is written atomically (temp file in the same folder, fsync, ``os.replace``): a crash
  never leaves a half page in place of the previous report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchveo.errors import UserError
from batchveo.redact import redact
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job, Store

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


@dataclass(frozen=True)
class ReportSummary:
    """What ``build_report`` wrote, for the CLI to print one line about it."""

    path: Path
    jobs: int
    states: dict[str, int]
    attention: int
    missing_files: int
    """Files a done job recorded that are not on disk any more (shown as missing)."""
    size_bytes: int


async def build_report(
    store: Store, out_path: Path, *, batch: str | None = None, now: float | None = None
) -> ReportSummary:
    """Write the HTML report of ``batch`` (default: every batch) to ``out_path``, atomically.

    Raises ``UserError`` when ``batch`` names no job (nothing is written then).
    """
    jobs = await store.jobs(batch=batch)
    if batch is not None and not jobs:
        known = ", ".join(sorted(await store.counts())) or "none"
        raise UserError(f"no jobs in batch {batch!r} (batches: {known})")
    when = store.clock() if now is None else now
    out_path = Path(out_path)
    base = store.path.absolute().parent
    return await asyncio.to_thread(_render_and_write, jobs, out_path, batch, when, base)


async def default_report_path(store: Store, *, batch: str | None = None) -> Path:
    """``report.html`` (``report-<batch>.html`` for one batch) in the folder of the videos.

    The folder is the deepest one holding every downloaded file, so the default follows
    whatever ``--out`` the runs used; ``videos`` when nothing is downloaded yet.
    """
    name = "report.html" if batch is None else f"report-{_safe_name(batch)}.html"
    folders = {
        os.path.dirname(os.path.abspath(locate(str(f["path"]), store.path.absolute().parent)))
        for job in await store.jobs([S.DONE], batch=batch)
        for f in job.files
        if f.get("path")
    }
    try:
        folder = Path(os.path.commonpath(sorted(folders))) if folders else Path("videos")
    except ValueError:  # files on several drives
        folder = Path("videos")
    with contextlib.suppress(ValueError):  # shown to the user: short when under the cwd
        folder = folder.relative_to(Path.cwd()) if folder.is_absolute() else folder
    return folder / name


def locate(path: str, base: Path | None) -> str:
    """A stored file path as found: relative paths are relative to the folder the run was
    started in, which is not known; try the current folder, then ``base`` (the database's)."""
    if os.path.isabs(path) or os.path.exists(path) or base is None:
        return path
    other = os.path.join(base, path)
    return other if os.path.exists(other) else path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "batch"


def _render_and_write(
    jobs: Sequence[Job], out_path: Path, batch: str | None, now: float, files_base: Path
) -> ReportSummary:
    page = Page(jobs, out_path.absolute().parent, batch=batch, now=now, files_base=files_base)
    text = redact(page.render(), os.environ)
    data = text.encode("utf-8")
    write_atomic(out_path, data)
    return ReportSummary(
        path=out_path,
        jobs=len(jobs),
        states={s.value: n for s, n in page.counts.items() if n},
        attention=len(page.attention),
        missing_files=page.missing_files,
        size_bytes=len(data),
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # not possible on every platform; the rename stands
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def rel_url(path: str | Path, base: Path) -> str:
    """A URL for ``path`` relative to the folder ``base``, with quoted segments."""
    target = os.path.abspath(path)
    try:
        rel = os.path.relpath(target, os.path.abspath(base))
    except ValueError:  # another drive (Windows): no relative path exists
        return Path(target).as_uri()
    return "/".join(quote(seg, safe="") for seg in rel.split(os.sep))


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
        return (
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="generator" content="batchveo">'
            f"<title>{escape(title)} · batchveo report</title>"
            f"<style>{CSS}{self.state_css()}</style></head>\n<body>\n"
            f"{self.header(title)}\n{self.tools()}\n"
            f'<main id="grid" class="grid">\n{cards}\n</main>\n'
            f"{EMPTY if not self.jobs else ''}"
            "<footer>Made by batchveo. Costs are estimates from public prices; "
            "only successful jobs are billed.</footer>\n"
            f"<script>{SCRIPT}</script>\n</body></html>\n"
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
            f"{self.problem(job)}</div></article>"
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


def _anchor(job_id: str) -> str:
    """The card's id attribute / fragment: URL-safe, so links need no further quoting."""
    return "job-" + quote(job_id, safe="")


def _param_value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str) and (" " in v or not v):
        return f"“{v}”"
    return str(v)


CSS = """
:root{--bg:#f3f4f6;--ink:#1c2330;--mute:#667085;--line:#e2e5ea;--c:#aab3bf}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
a{color:#2463c9}
.top{background:#fff;border-bottom:1px solid var(--line);padding:20px 28px 14px}
h1{margin:0;font-size:22px;font-weight:650;overflow-wrap:anywhere}
.when{margin:2px 0 14px;color:var(--mute);font-size:13px}
.stats{display:flex;flex-wrap:wrap;gap:10px 36px;margin-bottom:14px}
.stat b{display:block;font-size:21px;font-weight:650}
.stat span{color:var(--mute);font-size:12px}
.stat.warn b{color:#c23a3a}.stat.ok b{color:#1f9d61}
.bar{display:flex;height:12px;border-radius:6px;overflow:hidden;background:var(--line)}
.bar i{display:block;height:100%;background:var(--c)}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:8px 0 0;padding:0;list-style:none}
.legend button{border:0;background:none;padding:0;font:inherit;font-size:13px;color:inherit;
cursor:pointer}
.legend button:hover{text-decoration:underline}
.sw{display:inline-block;width:10px;height:10px;border-radius:3px;margin-right:5px;
background:var(--c);vertical-align:-1px}
.attn{margin-top:12px;font-size:13px}
.attn summary{cursor:pointer;font-weight:600;color:#a33131}
.links{margin:6px 0 0;line-height:1.9}
.links a{display:inline-block;padding:0 7px;margin-right:2px;border-radius:4px;text-decoration:none;
color:#fff;background:var(--c);font-size:12px}
.tools{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;gap:8px;align-items:center;
padding:9px 28px;background:rgba(243,244,246,.96);border-bottom:1px solid var(--line)}
.tools select,.tools input{font:inherit;font-size:13px;padding:5px 8px;border:1px solid #cfd4db;
border-radius:6px;background:#fff;color:inherit}
.tools input{flex:1;min-width:160px;max-width:340px}
#shown{margin-left:auto;color:var(--mute);font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:16px;
padding:18px 28px 32px;align-items:start}
.card{background:#fff;border:1px solid var(--line);border-top:3px solid var(--c);
border-radius:10px;overflow:hidden;content-visibility:auto;contain-intrinsic-size:auto 340px}
.card[hidden]{display:none}
.card:target{box-shadow:0 0 0 3px #2463c9}
.media{display:flex;gap:2px;aspect-ratio:16/9;background:#11141a}
.media video,.ph{flex:1;min-width:0;height:100%;display:block;background:#11141a}
.ph{display:flex;align-items:center;justify-content:center;color:#fff;opacity:.85;
font-size:13px;letter-spacing:.04em;text-transform:uppercase;
background:repeating-linear-gradient(135deg,#171b22 0 10px,#1c2129 10px 20px)}
.s-failed .ph,.s-uncertain .ph,.s-expired .ph{color:var(--c);opacity:1;font-weight:600}
.ins{width:32%;display:flex;flex-direction:column;gap:2px}
.ins figure{margin:0;position:relative;flex:1;min-height:0}
.ins img{display:block;width:100%;height:100%;object-fit:cover;background:#222}
.ins figcaption{position:absolute;left:0;bottom:0;padding:1px 5px;font-size:10px;color:#fff;
background:rgba(0,0,0,.55);border-top-right-radius:4px}
.body{padding:9px 12px 12px}
.head{display:flex;align-items:center;gap:8px}
.jid{font-weight:600;color:inherit;text-decoration:none;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap;min-width:0}
.b{color:var(--mute);font-size:12px;white-space:nowrap}
.st{margin-left:auto;flex:none;font-size:10.5px;font-weight:700;text-transform:uppercase;
letter-spacing:.04em;padding:1px 8px;border-radius:99px;color:#fff;background:var(--c)}
.prompt{margin:6px 0 6px;display:-webkit-box;-webkit-line-clamp:4;-webkit-box-orient:vertical;
overflow:hidden;overflow-wrap:anywhere;outline:0}
.prompt:hover,.prompt:focus{display:block}
.kv{margin:2px 0 0;color:var(--mute);font-size:12px;overflow-wrap:anywhere}
.err{margin-top:9px;padding:7px 9px;border-radius:6px;font-size:12.5px;overflow-wrap:anywhere;
border-left:3px solid var(--c);background:#fbeeee;color:#7d1f1f}
.err.s-uncertain{background:#fcf4e3;color:#6d4a05}
.err.s-expired{background:#f3edfb;color:#4a2a78}
.err i{color:var(--mute)}
.nc{float:right;margin-left:7px;padding:0 6px;border-radius:4px;font-size:11px;
font-weight:700;color:#1f7a4d;background:#e4f5ec}
.empty{padding:0 28px;color:var(--mute)}
footer{padding:0 28px 28px;color:var(--mute);font-size:12px}
"""

SCRIPT = """
(function(){
var d=document,grid=d.getElementById('grid');
var fs=d.getElementById('f-state'),fb=d.getElementById('f-batch'),fq=d.getElementById('f-q');
var so=d.getElementById('f-sort'),shown=d.getElementById('shown');
var rank={failed:0,uncertain:1,expired:2,cancelled:3,pending:4,submitting:5,running:6,
generated:7,done:8};
var items=[].map.call(grid.children,function(c,i){var p=c.querySelector('.prompt');
return {el:c,i:i,id:c.querySelector('.jid').textContent,s:c.dataset.state,b:c.dataset.batch,
g:c.dataset.gen===''?-1:+c.dataset.gen,t:(p?p.textContent:'').toLowerCase()};});
function apply(){
var s=fs.value,b=fb.value,q=fq.value.trim().toLowerCase(),n=0;
items.forEach(function(x){var ok=(!s||x.s===s)&&(!b||x.b===b)&&
(!q||x.t.indexOf(q)>=0||x.id.toLowerCase()===q);x.el.hidden=!ok;if(ok)n++;});
shown.textContent=n+' of '+items.length+' shown';d.documentElement.dataset.shown=n;}
var cmp={id:function(a,b){return a.id.localeCompare(b.id,undefined,{numeric:true})},
state:function(a,b){return rank[a.s]-rank[b.s]||a.i-b.i},
gen:function(a,b){return b.g-a.g||a.i-b.i}};
function sort(){var f=cmp[so.value]||function(a,b){return a.i-b.i},
frag=d.createDocumentFragment();items.slice().sort(f).forEach(function(x){
frag.appendChild(x.el)});grid.appendChild(frag);}
function load(c){[].forEach.call(c.querySelectorAll('video[data-src]'),function(v){
if(!v.getAttribute('src')){v.preload='metadata';v.src=v.dataset.src;}});}
if('IntersectionObserver' in window){var io=new IntersectionObserver(function(es){
es.forEach(function(e){if(e.isIntersecting){io.unobserve(e.target);load(e.target);}});},
{rootMargin:'600px 0px'});items.forEach(function(x){if(x.el.querySelector('video'))
io.observe(x.el);});}else{items.forEach(function(x){load(x.el);});}
function reveal(){var h=location.hash.slice(1),t=h&&d.getElementById(h);
if(!t&&h){try{t=d.getElementById(decodeURIComponent(h));}catch(e){}}
if(t&&t.hidden){fs.value=fb.value=fq.value='';apply();
t.scrollIntoView();}}
[fs,fb].forEach(function(e){e.addEventListener('change',apply);});
fq.addEventListener('input',apply);so.addEventListener('change',sort);
[].forEach.call(d.querySelectorAll('[data-pick]'),function(e){
e.addEventListener('click',function(){fs.value=fs.value===e.dataset.pick?'':e.dataset.pick;
apply();});});
window.addEventListener('hashchange',reveal);
var qs=new URLSearchParams(location.search);
if(qs.get('state'))fs.value=qs.get('state');if(qs.get('batch'))fb.value=qs.get('batch');
if(qs.get('q'))fq.value=qs.get('q');if(qs.get('sort'))so.value=qs.get('sort');
apply();if(so.value)sort();reveal();d.documentElement.dataset.ready='1';
})();
"""
