"""The verdicts in the morning report: a night reviewed on the simulator (over real
sockets, through the run's own review stage), then its page; an unreviewed night's page is
as it was; the model's words can never become markup.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path

from click.testing import CliRunner

from batchveo.cli import main
from batchveo.report import build_report
from batchveo.report.sheet import write_contact_sheet
from batchveo.report.verdicts import defect_link, fmt_usd, verdict
from batchveo.run.config import ReviewFlags
from batchveo.states import JobState
from batchveo.store import Review, ReviewStatus, Store
from batchveo.verdicts import Defect
from tests.helpers import make_spec
from tests.pipeline_helpers import fast_config, fast_sim, run_batch

S = JobState
R = ReviewStatus
NOW = 1_765_000_000.0
HOSTILE = '</p><script>document.title="pwned"</script><img src=x onerror="alert(1)">'

PROMPTS = {
    "good": "A calm sea at dawn",
    "bad": "A hand waving hello [sim:review=3]",
    "broken": "A violin on a chair [sim:review=bad-json]",
    "failed": "A glitching hologram [sim:op_error]",
}


async def night(store: Store, out: Path, *, review: bool) -> None:
    """``PROMPTS`` run on the simulator, every done video reviewed if ``review``."""
    specs = [make_spec(job_id, prompt) for job_id, prompt in PROMPTS.items()]
    flags = ReviewFlags(review_all=review, rpm=0)
    async with fast_sim() as sim:
        await run_batch(store, sim, fast_config(out, review=flags, max_attempts=1), specs)


VOID = frozenset({"br", "img", "input", "meta", "source", "link", "hr"})


class Cards(HTMLParser):
    """Each card's attributes, the text of its parts by class, its seek links; the
    tools' selects' options; every script element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cards: dict[str, dict[str, str]] = {}
        self.parts: dict[str, dict[str, str]] = {}
        self.seeks: dict[str, list[dict[str, str]]] = {}
        self.options: dict[str, list[str]] = {}
        self.scripts = 0
        self.script_text: list[str] = []
        self._card: str | None = None
        self._open: list[tuple[str, list[str]]] = []
        self._select: str | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "script":
            self.scripts += 1
            self._in_script = True
        if tag == "article":
            self._card = a["id"].removeprefix("job-")
            self.cards[self._card] = a
            self.parts[self._card] = {}
            self.seeks[self._card] = []
        if tag == "select":
            self._select = a.get("id", "")
            self.options[self._select] = []
        if tag == "option" and self._select is not None:
            self.options[self._select].append(a.get("value", ""))
        if self._card is not None:
            if tag == "a" and "seek" in a.get("class", ""):
                self.seeks[self._card].append(a)
            classes = a.get("class", "").split()
            for cls in classes:
                self.parts[self._card].setdefault(cls, "")
            if tag not in VOID:
                self._open.append((tag, classes))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False
        if self._open and self._open[-1][0] == tag:
            self._open.pop()
        if tag == "article":
            self._card = None
            self._open = []
        if tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text.append(data)
        if self._card is not None:
            for cls in {c for _, classes in self._open for c in classes}:
                self.parts[self._card][cls] += data


def parse(path: Path) -> tuple[str, Cards]:
    html = path.read_text(encoding="utf-8")
    cards = Cards()
    cards.feed(html)
    return html, cards


async def test_a_reviewed_night_shows_each_verdict_on_its_card(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "videos"
    await night(store, out, review=True)
    summary = await build_report(store, out / "report.html", now=NOW)
    html, page = parse(out / "report.html")
    reviews = {r.job_id: r for r in await store.reviews_of()}

    bad = page.cards["bad"]
    assert (bad["data-review"], bad["data-score"]) == ("flagged", "3")
    assert page.parts["bad"]["sc"] == "3" and "v-flagged" in page.parts["bad"]
    # The defect's time seeks the card's video: its file at that second (#t= without a
    # script), the second in data-t for the script.
    (link,) = page.seeks["bad"]
    assert (link["href"], link["data-t"]) == ("bad.mp4#t=5", "5")
    assert "00:05 a hand grows a sixth finger" in page.parts["bad"]["defects"]
    assert page.parts["bad"]["sum"] == reviews["bad"].summary
    assert "does not match the prompt" in page.parts["bad"]["rv"]

    good = page.cards["good"]
    assert (good["data-review"], good["data-score"]) == ("passed", "8")
    assert page.parts["good"]["sc"] == "8" and "defects" not in page.parts["good"]
    assert page.seeks["good"] == []

    # A review error is said with the model's text; no badge, and the video stays done.
    broken = page.cards["broken"]
    assert broken["data-review"] == "error" and "data-score" not in broken
    assert "sc" not in page.parts["broken"] and broken["data-state"] == "done"
    error = page.parts["broken"]["rv"]
    assert error.startswith("review error") and "breaks the schema" in error
    assert '"score": "great"' in error  # the model's answer, as text
    # A job with no video has no verdict at all.
    assert "data-review" not in page.cards["failed"] and "rv" not in page.parts["failed"]

    # The filter and the sorts, with this page's counts.
    assert page.options["f-review"] == ["", "passed", "flagged", "error"]
    assert "flagged (1)" in html
    assert page.options["f-sort"][-2:] == ["score", "-score"]
    # The first page's numbers: the verdicts and what the reviews cost.
    cost = sum(r.cost_usd for r in reviews.values())
    assert cost > 0
    for value, label in (
        ("1", "passed review"), ("1", "flagged"), ("1", "review errors"),
        (fmt_usd(cost), "reviews cost (estimate)"),
    ):  # fmt: skip
        assert f"<b>{value}</b><span>{label}</span>" in html
    assert re.search(r'<details class="attn flagged" open>.*?href="#job-bad">bad <b>3</b>', html)
    # The contact sheet's scores: the scored done jobs.
    assert summary.scores == {"good": 8.0, "bad": 3.0}


async def test_a_defect_link_seeks_to_its_second_and_a_bad_time_is_only_text(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "videos"
    await night(store, out, review=True)
    await store.reopen_reviews(["good"])
    defects = (Defect("01:05", "a flicker"), Defect("12:00", "a cut"), Defect("soon", "odd"))
    verdict = Review("good", "b1", R.FLAGGED, 6.5, True, defects, "meh", model="m")
    assert await store.record_review(verdict)
    await build_report(store, out / "report.html", now=NOW)
    _, page = parse(out / "report.html")
    assert [(a["href"], a["data-t"]) for a in page.seeks["good"]] == [
        ("good.mp4#t=65", "65"),
        ("good.mp4#t=720", "720"),
    ]
    assert "soon odd" in page.parts["good"]["defects"]  # no link: not a time
    assert page.cards["good"]["data-score"] == "6.5" and page.parts["good"]["sc"] == "6.5"
    # A video no longer on disk: its defects' times are text, not links to nothing.
    assert defect_link("00:05", "x", None) == '<li><span class="at">00:05</span> x</li>'


async def test_the_model_s_words_never_become_markup(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "videos"
    await night(store, out, review=True)
    await store.reopen_reviews(["good", "broken"])
    hostile = Review(
        "good", "b1", R.FLAGGED, 2.0, False,
        (Defect("00:03", HOSTILE), Defect('00:04"><script>alert(2)</script>', "x")),
        HOSTILE, model=HOSTILE,
    )  # fmt: skip
    assert await store.record_review(hostile)
    assert await store.record_review(Review("broken", "b1", R.ERROR, error=f"bad: {HOSTILE}"))
    await build_report(store, out / "report.html", now=NOW)
    html, page = parse(out / "report.html")
    assert page.scripts == 1  # the page's own; none came from the model's text
    assert "<img" not in html and "onerror=" not in html.replace("onerror=&quot;", "")
    assert page.parts["broken"]["rv"] == f"review error{'bad: ' + HOSTILE}"
    assert HOSTILE in page.parts["good"]["sum"] and HOSTILE in page.parts["good"]["defects"]
    assert [a["data-t"] for a in page.seeks["good"]] == ["3"]  # the odd time stays text


async def test_an_unreviewed_night_s_report_has_no_verdicts_and_is_as_before(
    store: Store, tmp_path: Path
) -> None:
    """Every done job has a review row, due; none asked for: the page is byte for byte
    the page of the same night in a database that has no reviews at all (before 012)."""
    out = tmp_path / "videos"
    await night(store, out, review=False)
    assert {r.status for r in await store.reviews_of()} == {None}  # due, never asked
    summary = await build_report(store, out / "report.html", now=NOW)
    html, page = parse(out / "report.html")
    assert summary.scores == {}
    for card in page.cards.values():
        assert "data-review" not in card and "data-score" not in card
    assert not any("rv" in parts or "sc" in parts for parts in page.parts.values())
    assert "f-review" not in page.options and "score" not in page.options["f-sort"]
    markup = re.sub(r"<(style|script)>.*?</\1>", "", html, flags=re.S)
    markup = re.sub(r'<p class="prompt".*?</p>', "", markup)  # the prompts' markers
    assert not re.search(r"\breview|flagged", markup, re.I)

    old = tmp_path / "old"
    old.mkdir()
    with closing(sqlite3.connect(store.path)) as src, closing(sqlite3.connect(old / "db")) as db:
        src.backup(db)  # the WAL's pages too
        # As a database before migration 012.
        db.executescript(
            "DROP TRIGGER jobs_review_due; DROP TRIGGER reviews_cost; DROP TABLE reviews;"
        )
    async with await Store.open(old / "db") as before:
        await build_report(before, out / "before.html", now=NOW)
    assert (out / "before.html").read_text(encoding="utf-8") == html


def test_report_sheet_labels_the_contact_sheet_with_the_scores(tmp_path: Path) -> None:
    async def go() -> None:
        async with await Store.open(tmp_path / "jobs.db") as store:
            await night(store, tmp_path / "videos", review=True)
            await write_contact_sheet(store, tmp_path / "plain.jpg")
            scores = {"good": 8.0, "bad": 3.0}
            await write_contact_sheet(store, tmp_path / "scored.jpg", scores=scores)

    asyncio.run(go())
    db, out = str(tmp_path / "jobs.db"), str(tmp_path / "videos" / "report.html")
    sheet = tmp_path / "sheet.jpg"
    result = CliRunner().invoke(main, ["report", "--db", db, "--out", out, "--sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    assert sheet.read_bytes() == (tmp_path / "scored.jpg").read_bytes()
    assert sheet.read_bytes() != (tmp_path / "plain.jpg").read_bytes()


def test_a_skipped_review_says_why_and_an_error_without_text_says_so() -> None:
    skipped = Review("a", "b1", R.SKIPPED, error="review skipped: too large")
    assert verdict(skipped, "a.mp4") == (
        '<div class="rv v-skipped" data-kind="review-skipped"><b>review skipped</b>'
        " · too large</div>"
    )
    error = verdict(Review("a", "b1", R.ERROR), None)
    assert error.endswith("<b>review error</b><br>no reason given</div>")
    assert verdict(Review("a", "b1"), "a.mp4") == ""  # due: nothing yet
    assert verdict(None, "a.mp4") == ""


async def test_the_first_page_links_the_flagged_takes_on_every_page(
    store: Store, tmp_path: Path
) -> None:
    """Two cards a page: the filter acts on a page's cards, the first page's list of the
    flagged takes reaches them all, lowest score first."""
    out = tmp_path / "videos"
    await night(store, out, review=True)  # good, bad (3), broken, failed
    await store.reopen_reviews(["broken"])
    assert await store.record_review(Review("broken", "b1", R.FLAGGED, 5.5, True, (), "so so"))
    summary = await build_report(store, out / "report.html", now=NOW, cards_per_page=2)
    assert summary.pages == 2
    first = (out / "report.html").read_text(encoding="utf-8")
    block = re.search(r'<details class="attn flagged" open>(.*?)</details>', first)
    assert block is not None and "2 takes flagged" in block.group(1)
    links = re.findall(r'<a href="([^"]*)">([^<]*) <b>([^<]*)</b></a>', block.group(1))
    assert links == [("#job-bad", "bad", "3"), ("report-pages/2.html#job-broken", "broken", "5.5")]
    assert "<b>2</b><span>flagged</span>" in first
    second = (out / "report-pages" / "2.html").read_text(encoding="utf-8")
    assert 'id="f-review"' in second and '<option value="flagged">flagged (1)</option>' in second
