"""The morning report, built from a real (simulated) night: a pipeline run, then the page."""

from __future__ import annotations

import hashlib
import html
import os
import re
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from batchveo.redact import redact
from batchveo.report import (
    build_report,
    default_report_path,
    fmt_duration,
    rel_url,
    write_atomic,
)
from batchveo.run.config import ReviewFlags
from batchveo.spec import ImageRef
from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import make_spec, png_bytes, without_posters
from tests.pipeline_helpers import KEY, fast_config, fast_sim, run_batch

S = JobState
XSS = (
    '<script>document.title="pwned"</script> & "q" '
    '<img src=x onerror="document.body.dataset.pwned=1">'
)

EXPECTED: dict[str, JobState] = {
    "sea": S.DONE,
    "fox": S.DONE,
    "xss": S.DONE,
    "lighthouse": S.DONE,
    "filtered": S.FAILED,
    "operr": S.FAILED,
    "policy": S.FAILED,
    "lost": S.UNCERTAIN,
    "skipped": S.CANCELLED,
    "b2-one": S.DONE,
    "b2-two": S.FAILED,
}


def image_ref(path: Path, data: bytes) -> ImageRef:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ImageRef(str(path.resolve()), hashlib.sha256(data).hexdigest(), "image/png")


async def run_night(store: Store, tmp_path: Path, out: Path, *, review: bool = False) -> None:
    """A small night with every kind of ending, two batches and an image-to-video job
    (``review``: every done video reviewed, on the simulator)."""
    img = image_ref(tmp_path / "in put" / "light house #1.png", png_bytes(32, 18, (40, 90, 160)))
    specs = [
        make_spec("sea", "A calm sea at dawn, slow dolly over the water"),
        make_spec("fox", "A red fox trotting through fresh snow"),
        make_spec("xss", XSS),
        make_spec("lighthouse", "The lighthouse beam sweeps through fog", image=img),
        make_spec("filtered", "A crowd scene [sim:filtered]"),
        make_spec("operr", "A glitching hologram [sim:op_error]"),
        make_spec("policy", "Something not allowed [sim:content_policy]"),
        make_spec("lost", "The answer never arrives [sim:lostx1]"),
        make_spec("skipped", "Cancelled before the run"),
        make_spec("b2-one", "A paper boat on a puddle", batch="b2"),
        make_spec("b2-two", "A violin that breaks [sim:op_error]", batch="b2"),
    ]
    await store.add_jobs(specs)
    await store.cancel(["skipped"])
    async with fast_sim() as sim:
        flags = ReviewFlags(review_all=review, rpm=0)
        await run_batch(store, sim, fast_config(out, max_attempts=2, review=flags))


class Page(HTMLParser):
    """The parts of the report the tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cards: dict[str, dict[str, str]] = {}
        self.counts: dict[str, int] = {}
        self.videos: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "article":
            self.cards[a["id"]] = a
            self.counts[a["id"]] = self.counts.get(a["id"], 0) + 1
        elif tag == "video":
            self.videos.append(a)
        elif tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "script":
            self._in_script = True
            self.scripts.append(a.get("src", ""))
        for k in ("src", "href", "data-src", "poster", "action"):
            if k in a:
                self.urls.append(a[k])

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if not self._in_script:
            self.text.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def card_text(html_text: str, job_id: str) -> str:
    """The visible text of one card (crude, but enough for messages)."""
    start = html_text.index(f'id="job-{job_id}"')
    end = html_text.index("</article>", start)
    page = Page()
    page.feed(html_text[start - len("<article ") : end + len("</article>")])
    return " ".join(" ".join(page.text).split())


@pytest.fixture
async def night(store: Store, tmp_path: Path) -> Path:
    out = tmp_path / "my videos"
    await run_night(store, tmp_path, out)
    states = {j.id: j.state for j in await store.jobs()}
    assert states == EXPECTED
    return out


async def test_every_job_appears_once_with_its_state(store: Store, night: Path) -> None:
    report = night / "report.html"
    summary = await build_report(store, report)
    page = parse(report)
    assert summary.path == report and summary.jobs == len(EXPECTED)
    assert summary.attention == 5 and summary.missing_files == 0
    assert summary.states == {"done": 5, "failed": 4, "uncertain": 1, "cancelled": 1}
    assert set(page.cards) == {f"job-{i}" for i in EXPECTED}
    assert all(n == 1 for n in page.counts.values())
    assert len(page.ids) == len(set(page.ids))
    for job_id, state in EXPECTED.items():
        card = page.cards[f"job-{job_id}"]
        assert card["data-state"] == state.value
        assert f"s-{state.value}" in card["class"].split()
    # The attention list links to every failed / uncertain / expired card.
    attention = {h for h in page.links if h.startswith("#job-")}
    for job_id, state in EXPECTED.items():
        if state in (S.FAILED, S.UNCERTAIN, S.EXPIRED):
            assert f"#job-{job_id}" in attention


async def test_header_numbers(store: Store, night: Path) -> None:
    report = night / "report.html"
    await build_report(store, report)
    text = " ".join(" ".join(parse(report).text).split())
    jobs = await store.jobs()
    done = [j for j in jobs if j.state is S.DONE]
    assert f"${sum(j.cost_usd for j in done):,.2f} cost (estimate)" in text
    assert f"{fmt_duration(8 * len(done))} of video" in text
    assert "5 jobs need attention" in text
    assert "first submit → last download" in text


async def test_video_and_image_paths_are_relative_and_exist(store: Store, night: Path) -> None:
    for report in (night / "report.html", night.parent / "elsewhere" / "deep" / "r.html"):
        await build_report(store, report)
        page = parse(report)
        done = [i for i, s in EXPECTED.items() if s is S.DONE]
        assert len(page.videos) == len(done)
        for video in page.videos:
            assert video["preload"] == "none" and "src" not in video  # lazy: JS sets src
            url = video["data-src"]
            assert not url.startswith(("/", "file:")) and "\\" not in url and " " not in url
            assert (report.parent / unquote(url)).is_file()
        [image] = page.images
        assert image["loading"] == "lazy"
        assert "%20" in image["src"] and "%23" in image["src"]  # "in put/light house #1.png"
        assert (report.parent / unquote(image["src"])).read_bytes()[:4] == b"\x89PNG"
        files = [h for h in page.links if h.endswith(".mp4")]
        assert len(files) == len(done)
        assert all((report.parent / unquote(h)).is_file() for h in files)


async def test_the_report_survives_the_folder_being_moved(store: Store, night: Path) -> None:
    await build_report(store, night / "report.html")
    moved = night.parent / "moved"
    night.rename(moved)
    page = parse(moved / "report.html")
    assert page.videos and all((moved / unquote(v["data-src"])).is_file() for v in page.videos)


async def test_prompts_with_html_are_escaped(store: Store, night: Path) -> None:
    report = night / "report.html"
    await build_report(store, report)
    raw = report.read_text(encoding="utf-8")
    page = parse(report)
    assert page.scripts == [""]  # only our inline script, nothing from a prompt
    assert "<script>document" not in raw and "<img src=x" not in raw
    assert html.escape(XSS) in raw
    assert not any(i.get("src") == "x" for i in page.images)
    assert XSS in " ".join(page.text)  # shown to the user exactly as written


async def test_failures_show_kind_and_message(store: Store, night: Path) -> None:
    report = night / "report.html"
    await build_report(store, report)
    raw = report.read_text(encoding="utf-8")
    jobs = {j.id: j for j in await store.jobs()}
    filtered = card_text(raw, "filtered")
    assert "blocked by the safety filter" in filtered and "not charged" in filtered
    reasons = (jobs["filtered"].error or "").split(": ", 1)[1]
    assert reasons and reasons in filtered
    operr = card_text(raw, "operr")
    assert "generation failed" in operr and (jobs["operr"].error or "") in operr
    assert "not charged" not in operr
    policy = card_text(raw, "policy")
    assert "content policy" in policy and (jobs["policy"].error or "") in policy
    lost = card_text(raw, "lost")
    assert "submit outcome unknown" in lost and "May have been billed" in lost
    assert "attempts" in card_text(raw, "sea") and "generated in" in card_text(raw, "sea")


async def test_no_external_urls(store: Store, night: Path) -> None:
    report = night / "report.html"
    await build_report(store, report)
    raw = report.read_text(encoding="utf-8")
    page = parse(report)
    assert page.urls
    for url in page.urls:
        assert not url.lower().startswith(("http:", "https:", "//", "file:")), url
    assert "http://" not in raw and "https://" not in raw
    assert "@import" not in raw and "url(" not in raw


async def test_batch_filter(store: Store, night: Path) -> None:
    report = night / "b2.html"
    summary = await build_report(store, report, batch="b2")
    page = parse(report)
    assert set(page.cards) == {"job-b2-one", "job-b2-two"}
    assert summary.jobs == 2 and summary.states == {"done": 1, "failed": 1}
    assert "b2" in " ".join(page.text)
    from batchveo.errors import UserError

    with pytest.raises(UserError, match="no jobs in batch 'nope'"):
        await build_report(store, night / "nope.html", batch="nope")
    assert not (night / "nope.html").exists()


async def test_written_atomically(
    store: Store, night: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = night / "report.html"
    report.write_text("yesterday's report")
    await build_report(store, report)
    assert report.read_text(encoding="utf-8").startswith("<!doctype html>")
    names = without_posters(p.name for p in night.iterdir())
    assert [n for n in names if not n.endswith(".mp4")] == ["report.html"]

    # A failure mid-write leaves the old page and no temp file.
    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    before = report.read_bytes()
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        await build_report(store, report)
    assert report.read_bytes() == before
    assert [p.name for p in night.iterdir() if p.name.startswith(".")] == []


async def test_no_api_key_in_the_page(
    store: Store, night: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    google_key = "AIza" + "x" * 35
    monkeypatch.setenv("BATCHVEO_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_API_KEY", google_key)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok_0123456789abcdef")
    report = night / "report.html"
    await build_report(store, report)
    raw = report.read_text(encoding="utf-8")
    for secret in (KEY, google_key, "tok_0123456789abcdef"):
        assert secret not in raw
    # Nothing from the environment at all: no variable names, no home folder.
    assert "BATCHVEO_API_KEY" not in raw and "GEMINI_API_KEY" not in raw


def test_redact() -> None:
    env = {"GPTPROTO_API_KEY": "sk-abcdefghijklmnop", "HOME": "/root", "PAGER": "less"}
    text = "a sk-abcdefghijklmnop b AIza" + "k" * 35 + ' c "u?key=zzz&x=1" less /root'
    assert redact(text, env) == 'a [redacted] b [redacted] c "u?key=[redacted]&x=1" less /root'


def test_rel_url(tmp_path: Path) -> None:
    base = tmp_path / "r"
    assert rel_url(tmp_path / "r" / "a b" / "c#1.mp4", base) == "a%20b/c%231.mp4"
    assert rel_url(tmp_path / "v" / "é.mp4", base) == "../v/%C3%A9.mp4"


def test_write_atomic_creates_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "r.html"
    write_atomic(target, b"x")
    assert target.read_bytes() == b"x" and os.listdir(target.parent) == ["r.html"]


async def test_five_thousand_jobs_stay_small_and_fast(store: Store, night: Path) -> None:
    """A big night: same real files, 5,000 cards, a few MB, built in well under a few seconds."""
    from batchveo.report import Page as ReportPage

    jobs = await store.jobs()
    many = [
        replace(jobs[i % len(jobs)], id=f"job-{i:05d}", prompt=f"{jobs[i % len(jobs)].prompt} {i}")
        for i in range(5000)
    ]
    t0 = time.perf_counter()
    html_text = ReportPage(many, night, batch=None, now=time.time()).render()
    elapsed = time.perf_counter() - t0
    size = len(html_text.encode())
    assert html_text.count("<article ") == 5000
    assert size < 4_000_000, size
    assert elapsed < 5, elapsed


async def test_default_path_is_beside_the_videos(store: Store, night: Path) -> None:
    assert await default_report_path(store) == night / "report.html"
    assert await default_report_path(store, batch="b2") == night / "report-b2.html"


async def test_default_path_before_any_download(store: Store) -> None:
    assert await default_report_path(store) == Path("videos", "report.html")


async def test_a_deleted_video_shows_as_missing(store: Store, night: Path) -> None:
    (night / "fox.mp4").unlink()
    report = night / "report.html"
    summary = await build_report(store, report)
    assert summary.missing_files == 1
    raw = report.read_text(encoding="utf-8")
    assert "video file missing" in card_text(raw, "fox")
    assert 'data-src="fox.mp4"' not in raw


async def test_an_empty_database_gives_an_empty_page(store: Store, tmp_path: Path) -> None:
    summary = await build_report(store, tmp_path / "r.html")
    assert summary.jobs == 0 and summary.states == {}
    assert "No jobs yet." in (tmp_path / "r.html").read_text(encoding="utf-8")


async def test_the_report_finds_videos_whatever_folder_it_is_built_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `batchveo run` with the default relative `--out videos` records absolute paths,
    # so the report may be built from another folder.
    monkeypatch.chdir(tmp_path)
    async with await Store.open(tmp_path / "jobs.db") as store:
        async with fast_sim() as sim:
            await run_batch(store, sim, fast_config(Path("videos")), [make_spec("a")])
        [job] = await store.jobs()
        assert job.files[0]["path"] == str((tmp_path / "videos" / "a.mp4").resolve())
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        path = await default_report_path(store)
        assert path == tmp_path / "videos" / "report.html"
        summary = await build_report(store, path)
    assert summary.missing_files == 0
    [video] = parse(path).videos
    assert video["data-src"] == "a.mp4"


def test_the_script_and_style_are_inlined_and_take_the_state_order_from_the_page() -> None:
    """One file with everything in it; the script repeats no state name of its own, so
    "sort by state" follows the page's order (most urgent first) whatever it becomes."""
    from batchveo.report import BAR_ORDER, Page

    raw = Page([], Path("."), batch=None, now=time.time()).render()
    [script] = re.findall(r"<script>(.*?)</script>", raw, flags=re.S)
    [style] = re.findall(r"<style>(.*?)</style>", raw, flags=re.S)
    assert "IntersectionObserver" in script and ".card {" in style
    urgent_first = " ".join(s.value for s in reversed(BAR_ORDER))
    assert f'data-state-order="{urgent_first}"' in raw
    assert urgent_first.startswith("failed uncertain expired")
    assert not [s.value for s in JobState if re.search(rf"\b{s.value}\b", script)]
