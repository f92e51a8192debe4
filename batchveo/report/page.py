"""A report page: server-rendered HTML, the night's numbers on the first, then its cards.

* One file, nothing fetched: the CSS and a few lines of plain JavaScript
  (``assets/report.css``, ``assets/report.js``, package data) are inlined in every page,
  there is no CDN, font or framework, so each page opens offline, from a zip or from a
  shared drive.
* The cards are server-rendered HTML (``cards``), not a JavaScript app: the page is
  readable with scripts off (each video is also a plain link), tests can check it with
  ``html.parser``, and the script only filters, searches, sorts and lazy-loads the cards
  of its page. No JSON is embedded, so there is no script-context escaping to get wrong.
* A page holds at most ``pages.CARDS_PER_PAGE`` cards (a bigger night is several pages,
  linked by a navigation bar), and a thousand cards must not freeze a browser: cards use
  ``content-visibility: auto`` (off-screen cards are neither laid out nor painted) and
  their media load near the viewport only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from html import escape
from importlib import resources
from pathlib import Path

from batchveo.report.cards import Cards, anchor, fmt_duration, fmt_span, fmt_time
from batchveo.report.night import ATTENTION, BAR_ORDER, Night
from batchveo.report.pages import Pager
from batchveo.report.verdicts import LABELS, fmt_score, fmt_usd
from batchveo.states import JobState
from batchveo.store import Job, Review, ReviewStatus

S = JobState

SORT_ORDER: tuple[JobState, ...] = tuple(reversed(BAR_ORDER))
""""Sort by state": what needs attention first, done last. The script reads it from the
grid's ``data-state-order``."""

COLORS: Mapping[JobState, str] = {
    S.DONE: "#1f9d61",
    S.GENERATED: "#12a39a",
    S.RUNNING: "#3b7ddd",
    S.SUBMITTING: "#6aa3f0",
    S.PENDING: "#aab3bf",
    S.WAITING: "#c4cad3",
    S.CANCELLED: "#7d8794",
    S.EXPIRED: "#9062cf",
    S.UNCERTAIN: "#d9961a",
    S.FAILED: "#d64545",
}

CHAIN_CSS = (
    ".chain{grid-column:1/-1}.chain .hops{display:flex;gap:.75rem;overflow-x:auto}"
    ".chain .hops>.card{flex:0 0 18rem}.chain-title{font-size:1rem;margin:.25rem 0}"
    ".chosen{background:#1f8f4e;color:#fff;border-radius:.6rem;padding:0 .45rem;"
    "font-size:.75rem;margin-left:.3rem}"
)
"""A scene chain's row: its hops side by side, the longest finished cut first; a job's
takes are such a row too (``.takes``), the chosen one marked."""

EMPTY = '<p class="empty">No jobs yet.</p>'


@cache
def asset(name: str) -> str:
    """The text of ``assets/<name>`` (package data), read once per process."""
    return (resources.files("batchveo.report") / "assets" / name).read_text(encoding="utf-8")


class Page:
    """One page file: the night's numbers (on the first page), then a card per job."""

    def __init__(
        self,
        jobs: Sequence[Job],
        folder: Path,
        *,
        batch: str | None,
        now: float,
        files_base: Path | None = None,
        night: Night | None = None,
        pager: Pager | None = None,
        reviews: Mapping[str, Review] | None = None,
        takes: Mapping[str, Sequence[Job]] | None = None,
        chosen: Mapping[str, str] | None = None,
    ):
        """``jobs`` are this page's; ``folder`` holds the page; relative file paths of a
        job are looked for from the current folder, then from ``files_base`` (the
        database's folder: runs are usually started beside it). ``night``: the whole
        report's numbers (default: those of ``jobs``, all on this one page); ``pager``:
        where this page is among the others (None: the only page); ``reviews``: the
        recorded reviews of ``jobs`` (and of their ``takes``), by job id; ``takes``: the
        retakes of ``jobs``' originals, by the original's id, shown beside it (wherever
        their own rows come); ``chosen``: the chosen take's id, by the original's id."""
        self.jobs = jobs
        self.takes = takes or {}
        self.chosen = chosen or {}
        self.folder = folder
        self.now = now
        self.reviews = reviews or {}
        self.night = night if night is not None else Night.of(jobs, batch=batch, reviews=reviews)
        self.pager = pager
        self.cards = Cards(
            folder,
            files_base=files_base,
            show_batch=len(self.night.batches) > 1,
            reviews=self.reviews,
        )
        self.counts = dict.fromkeys(BAR_ORDER, 0)
        """This page's jobs per state (the filters' counts)."""
        self.batches: dict[str, int] = {}
        for job in [*jobs, *(t for taken in self.takes.values() for t in taken)]:
            self.counts[job.state] += 1
            self.batches[job.batch] = self.batches.get(job.batch, 0) + 1
        self.verdicts = dict.fromkeys(ReviewStatus, 0)
        """This page's recorded reviews per outcome (the review filter's counts)."""
        for review in self.reviews.values():
            if review.status is not None:
                self.verdicts[review.status] += 1

    @property
    def first(self) -> bool:
        return self.pager is None or self.pager.number == 1

    @property
    def attention(self) -> list[Job]:
        """This page's jobs that need attention."""
        return [j for j in self.jobs if j.state in ATTENTION]

    @property
    def missing_files(self) -> int:
        """Downloaded files of this page's jobs not on disk any more (once rendered)."""
        return self.cards.missing_files

    # -- the whole page -------------------------------------------------------------

    def render(self) -> str:
        cards = "\n".join(self.items())  # counts missing files
        title = self.night.title()
        order = " ".join(state.value for state in SORT_ORDER)
        nav = self.nav()
        head = self.header(title) if self.first else self.slim_header(title)
        page = "" if self.pager is None else f" · page {self.pager.number:,}"
        return (
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="generator" content="batchveo">'
            f"<title>{escape(title)}{page} · batchveo report</title>"
            f"<style>{asset('report.css')}{self.state_css()}{CHAIN_CSS}</style></head>\n<body>\n"
            f"{head}\n{self.tools()}\n{nav}"
            f'<main id="grid" class="grid" data-state-order="{order}">\n{cards}\n</main>\n'
            f"{EMPTY if not self.jobs else ''}{nav}"
            "<footer>Made by batchveo. Costs are estimates from public prices; "
            "only successful jobs are billed.</footer>\n"
            f"<script>{asset('report.js')}</script>\n</body></html>\n"
        )

    def items(self) -> list[str]:
        """The grid's items: a card per job, and a scene chain's jobs on this page as one
        row (``chain_row``), where its first job is."""
        roots = {j.chain_root for j in self.jobs if j.chain_root is not None}

        def chain_of(job: Job) -> str | None:  # a plain job that hops extend roots a chain
            return job.chain_root or (job.id if job.id in roots else None)

        chains: dict[str, list[Job]] = {}
        for job in self.jobs:
            if (root := chain_of(job)) is not None:
                chains.setdefault(root, []).append(job)
        out: list[str] = []
        for job in self.jobs:
            if (root := chain_of(job)) is None:
                out.append(self.takes_row(job) if job.id in self.takes else self.cards.card(job))
            elif (members := chains.pop(root, None)) is not None:
                out.append(self.chain_row(root, members))
        return out

    def with_takes(self, job: Job) -> str:
        """``job``'s card, then its retakes' cards, the chosen take marked (if it has any)."""
        taken = self.takes.get(job.id)
        if not taken:
            return self.cards.card(job)
        chosen = self.chosen.get(job.id)
        return "".join(self.cards.card(t, chosen=t.id == chosen) for t in [job, *taken])

    def takes_row(self, job: Job) -> str:
        """A job and its retakes side by side, the chosen take marked."""
        taken = [job, *self.takes[job.id]]
        open_ = next((t for t in taken if t.state is not S.DONE), None)
        st = (open_ or taken[-1]).state.value
        title = f"takes of {job.id}: {len(taken)}"
        if (chosen := self.chosen.get(job.id)) is not None:
            title += f", chosen {chosen}"
        return (
            f'<section class="chain takes s-{st}" data-state="{st}"'
            f' data-batch="{escape(job.batch)}" data-gen="">'
            f'<h3 class="chain-title">{escape(title)}</h3>'
            f'<div class="hops">{self.with_takes(job)}</div></section>'
        )

    def chain_row(self, root: str, members: Sequence[Job]) -> str:
        """One scene chain: its longest finished cut first, then every hop in order."""
        hops = sorted(members, key=lambda j: j.hop or 1)
        done = [j for j in hops if j.state is S.DONE]
        longest = [done[-1]] if done else []
        rest = [j for j in hops if j not in longest]
        open_ = next((j for j in hops if j.state is not S.DONE), None)
        st = (open_ or hops[-1]).state.value  # the chain's progress, for the filters
        cards = "".join(self.with_takes(j) for j in [*longest, *rest])
        title = f"chain {root}: {len(done)}/{len(hops)} hops done"
        if longest:
            title += f", longest cut {longest[0].id}"
        return (
            f'<section class="chain s-{st}" data-state="{st}"'
            f' data-batch="{escape(hops[0].batch)}" data-gen="">'
            f'<h3 class="chain-title">{escape(title)}</h3><div class="hops">{cards}</div></section>'
        )

    @staticmethod
    def state_css() -> str:
        return "".join(f".s-{s.value}{{--c:{c}}}" for s, c in COLORS.items())

    # -- the top ------------------------------------------------------------------

    def header(self, title: str) -> str:
        """The first page's top: the night's numbers, its bar of states, what needs
        attention."""
        n = self.night
        when = ""
        if n.started is not None:
            when = f"ran {escape(fmt_span(n.started, n.last_finished))} · "
        wall = "—"
        if n.first_submit is not None and n.last_download is not None:
            wall = fmt_duration(n.last_download - n.first_submit)
        n_att = n.attention_total
        stats = [
            (f"{n.jobs:,}", "jobs", ""),
            (f"{n.done:,}", "done", ""),
            (fmt_duration(n.video_s), "of video", ""),
            (f"${n.cost_usd:,.2f}", "cost (estimate)", ""),
            (wall, "first submit → last download", ""),
            (f"{n_att:,}", "need attention", " warn" if n_att else " ok"),
        ]
        if n.partly_filtered:
            stats.append((f"{n.partly_filtered:,}", "partly filtered", " warn"))
        stats += self.review_stats()
        stat_html = "".join(
            f'<div class="stat{cls}"><b>{escape(v)}</b><span>{escape(label)}</span></div>'
            for v, label, cls in stats
        )
        total = max(1, n.jobs)
        bar = "".join(
            f'<i class="s-{s.value}" style="width:{100 * k / total:.3f}%" '
            f'title="{s.value}: {k}"></i>'
            for s, k in n.counts.items()
            if k
        )
        legend = "".join(
            f'<li><button type="button" data-pick="{s.value}"><span class="sw s-{s.value}">'
            f"</span>{s.value} <b>{k:,}</b></button></li>"
            for s, k in n.counts.items()
            if k
        )
        return (
            '<header class="top">'
            f"<h1>{escape(title)}</h1>"
            f'<p class="when">{when}report made {escape(fmt_time(self.now))}</p>'
            f'<div class="stats">{stat_html}</div>'
            f'<div class="bar" role="img" aria-label="jobs per state">{bar}</div>'
            f'<ul class="legend">{legend}</ul>{self.attention_block()}{self.flagged_block()}'
            "</header>"
        )

    def review_stats(self) -> list[tuple[str, str, str]]:
        """The night's verdicts for the numbers at the top (none if nothing was reviewed):
        passed, flagged, review errors (and skipped, if any), and what the reviews cost."""
        n = self.night
        if not n.reviewed:
            return []
        R = ReviewStatus
        flagged, errors = n.reviews[R.FLAGGED], n.reviews[R.ERROR]
        stats = [
            (f"{n.reviews[R.PASSED]:,}", "passed review", ""),
            (f"{flagged:,}", "flagged", " warn" if flagged else " ok"),
            (f"{errors:,}", "review errors", " warn" if errors else ""),
        ]
        if n.reviews[R.SKIPPED]:
            stats.append((f"{n.reviews[R.SKIPPED]:,}", "reviews skipped", ""))
        stats.append((fmt_usd(n.review_cost_usd), "reviews cost (estimate)", ""))
        return stats

    def flagged_block(self) -> str:
        """The takes the review flagged, lowest score first, each linked to its card on
        whichever page it is (the first ``MAX_ATTENTION_LINKS``, the rest counted)."""
        n = self.night
        total = n.reviews[ReviewStatus.FLAGGED]
        if not total:
            return ""
        ranked = sorted(n.flagged, key=lambda f: (f.score is None, f.score or 0.0))
        links = " ".join(
            f'<a href="{escape(self._page_href(f.page))}#{anchor(f.id)}">{escape(f.id)}'
            f"{'' if f.score is None else f' <b>{fmt_score(f.score)}</b>'}</a>"
            for f in ranked
        )
        if more := total - len(n.flagged):
            links += (
                f' <span class="more">and {more:,} more (all of them: <code>batchveo export'
                "</code>, its review_status column)</span>"
            )
        is_open = " open" if total <= 40 else ""
        return (
            f'<details class="attn flagged"{is_open}><summary>{total:,} take'
            f"{'s' * (total != 1)} flagged by the review (lowest score first)</summary>"
            f'<p class="links">{links}</p></details>'
        )

    def slim_header(self, title: str) -> str:
        """A later page's top: which night, and the way back to its numbers."""
        assert self.pager is not None
        first = escape(self.pager.href(1))
        return (
            f'<header class="top"><h1>{escape(title)}</h1>'
            f'<p class="when">page {self.pager.number:,} of {self.pager.count:,} · '
            f'report made {escape(fmt_time(self.now))} · <a href="{first}">the night\'s '
            "numbers and the jobs that need attention</a></p></header>"
        )

    def attention_block(self) -> str:
        n = self.night
        if not n.attention_total:
            return ""
        links = " ".join(
            f'<a class="s-{a.state.value}" href="{escape(self._page_href(a.page))}'
            f'#{anchor(a.id)}">{escape(a.id)}</a>'
            for a in n.attention
        )
        if more := n.attention_total - len(n.attention):
            links += (
                f' <span class="more">and {more:,} more (all of them: <code>batchveo export'
                " --state failed --state uncertain --state expired</code>)</span>"
            )
        total = n.attention_total
        is_open = " open" if total <= 40 else ""
        return (
            f'<details class="attn"{is_open}><summary>{total:,} job{"s" * (total != 1)} need'
            f"{'s' * (total == 1)} attention (failed, uncertain, expired)</summary>"
            f'<p class="links">{links}</p></details>'
        )

    def _page_href(self, number: int) -> str:
        """The URL of page ``number`` from this page: empty for this page itself."""
        if self.pager is None or number == self.pager.number:
            return ""
        return self.pager.href(number)

    def nav(self) -> str:
        """Links to the first, previous, next and last pages (nothing on a lone page)."""
        p = self.pager
        if p is None or p.count == 1:
            return ""

        def link(number: int, label: str, rel: str = "") -> str:
            if number < 1 or number > p.count or number == p.number:
                return f'<span class="off">{label}</span>'
            rel_attr = f' rel="{rel}"' if rel else ""
            return f'<a href="{escape(p.href(number))}"{rel_attr}>{label}</a>'

        where = (
            f"<b>page {p.number:,} of {p.count:,}</b> · jobs {p.first_job:,}–{p.last_job:,}"
            f" of {p.total_jobs:,}"
        )
        return (
            '<nav class="pager">'
            f"{link(1, '« first')}{link(p.number - 1, '‹ previous', 'prev')}"
            f"<span>{where}</span>"
            f"{link(p.number + 1, 'next ›', 'next')}{link(p.count, 'last »')}</nav>\n"
        )

    def tools(self) -> str:
        """The filters, search and sort of this page's cards."""
        states = "".join(
            f'<option value="{s.value}">{s.value} ({n:,})</option>'
            for s, n in self.counts.items()
            if n
        )
        batches = "".join(
            f'<option value="{escape(b)}">{escape(b)} ({n:,})</option>'
            for b, n in sorted(self.batches.items())
        )
        scope = ""
        if self.pager is not None and self.pager.count > 1:
            scope = '<span class="scope">on this page</span>'
        verdicts, by_score = "", ""
        if any(self.verdicts.values()):
            verdicts = (
                '<select id="f-review" aria-label="review"><option value="">all verdicts</option>'
                + "".join(
                    f'<option value="{s.value}">{LABELS[s]} ({k:,})</option>'
                    for s, k in self.verdicts.items()
                    if k
                )
                + "</select>"
            )
            by_score = (
                '<option value="score">lowest score first</option>'
                '<option value="-score">highest score first</option>'
            )
        return (
            '<nav class="tools">'
            '<select id="f-state" aria-label="state"><option value="">all states</option>'
            f"{states}</select>"
            '<select id="f-batch" aria-label="batch"><option value="">all batches</option>'
            f"{batches}</select>{verdicts}"
            '<input id="f-q" type="search" placeholder="search prompts…" aria-label="search">'
            '<select id="f-sort" aria-label="sort"><option value="">order loaded</option>'
            '<option value="id">sort by id</option><option value="state">sort by state</option>'
            f'<option value="gen">slowest generation first</option>{by_score}</select>'
            f'{scope}<span id="shown">{len(self.jobs):,} jobs</span></nav>'
        )
