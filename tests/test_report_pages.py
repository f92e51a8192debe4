"""A big night's report: pages of cards, linked, the night's numbers on the first.

Built from the real (simulated) night of ``test_report`` with a few cards a page, so every
rule of a 100,000-job report shows on 11 jobs: each job on exactly one page, every link
between pages and to a card landing on a file that holds it, videos found from the pages'
own folder, the set written whole or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urldefrag

import pytest

from batchveo.report import build_report
from batchveo.report import night as night_module
from batchveo.states import JobState
from batchveo.store import Store
from tests.test_report import EXPECTED, parse, run_night

S = JobState
ATTENTION = {i for i, s in EXPECTED.items() if s in (S.FAILED, S.UNCERTAIN, S.EXPIRED)}


@pytest.fixture
async def night(store: Store, tmp_path: Path) -> Path:
    out = tmp_path / "my videos"
    await run_night(store, tmp_path, out)
    return out


def pages_of(report: Path) -> list[Path]:
    folder = report.with_name(f"{report.stem}-pages")
    later = sorted(folder.glob("*.html"), key=lambda p: int(p.stem)) if folder.is_dir() else []
    return [report, *later]


def target(page: Path, href: str) -> tuple[Path, str]:
    """The file and fragment a link of ``page`` leads to."""
    url, fragment = urldefrag(href)
    return ((page.parent / unquote(url)).resolve() if url else page.resolve()), fragment


async def test_every_job_is_on_exactly_one_page_and_every_link_lands(
    store: Store, night: Path
) -> None:
    report = night / "report.html"
    summary = await build_report(store, report, cards_per_page=4)
    pages = pages_of(report)
    assert [p.relative_to(night).as_posix() for p in pages] == [
        "report.html",
        "report-pages/2.html",
        "report-pages/3.html",
    ]
    assert summary.pages == 3 and summary.pages_folder == night / "report-pages"
    assert summary.jobs == 11 and summary.attention == len(ATTENTION)
    parsed = {p.resolve(): parse(p) for p in pages}
    cards = [c for p in pages for c in parsed[p.resolve()].cards]
    assert cards == [f"job-{i}" for i in EXPECTED]  # load order, each once
    assert [len(parsed[p.resolve()].cards) for p in pages] == [4, 4, 3]
    assert summary.size_bytes == sum(p.stat().st_size for p in pages)

    # The first page has the night's numbers; the others lead back to it.
    first_text = " ".join(" ".join(parsed[report.resolve()].text).split())
    assert "11 jobs" in first_text and f"{len(ATTENTION)} jobs need attention" in first_text
    for page in pages[1:]:
        text = " ".join(" ".join(parsed[page.resolve()].text).split())
        assert "need attention" in text and "cost (estimate)" not in text

    # Every link between pages, and to a card, lands on a file that has it.
    for page in pages:
        for href in parsed[page.resolve()].links:
            if href.endswith(".mp4"):
                assert (page.parent / unquote(href)).is_file()
                continue
            file, fragment = target(page, href)
            assert file in parsed, (page, href)
            assert not fragment or fragment in parsed[file].ids, (page, href)
    linked = {urldefrag(h)[1] for h in parsed[report.resolve()].links if "#job-" in h}
    assert {f"job-{i}" for i in ATTENTION} <= linked
    assert "report-pages/3.html#job-b2-two" in parsed[report.resolve()].links
    # Videos play from a page in the pages folder too.
    for page in pages:
        for video in parsed[page.resolve()].videos:
            assert (page.parent / unquote(video["data-src"])).is_file()


async def test_pages_navigate_first_previous_next_last(store: Store, night: Path) -> None:
    report = night / "report.html"
    await build_report(store, report, cards_per_page=4)
    second = report.with_name("report-pages") / "2.html"
    raw = second.read_text(encoding="utf-8")
    assert "page 2 of 3" in raw and "jobs 5–8 of 11" in raw
    assert 'href="../report.html" rel="prev"' in raw and 'href="3.html" rel="next"' in raw
    first = report.read_text(encoding="utf-8")
    assert 'href="report-pages/2.html" rel="next"' in first
    assert "on this page" in first  # the filters act on the page's cards


async def test_a_smaller_report_removes_the_pages_it_no_longer_has(
    store: Store, night: Path
) -> None:
    report = night / "report.html"
    await build_report(store, report, cards_per_page=2)
    assert len(pages_of(report)) == 6
    (night / "report-pages" / "notes.txt").write_text("mine")
    await build_report(store, report, cards_per_page=4)
    assert [p.name for p in pages_of(report)] == ["report.html", "2.html", "3.html"]
    await build_report(store, report)  # fits one page: one file, as it always was
    assert pages_of(report) == [report]
    assert sorted(os.listdir(night / "report-pages")) == ["notes.txt"]  # not ours: kept
    assert len(parse(report).cards) == 11


async def test_the_first_page_links_a_bounded_number_of_jobs_needing_attention(
    store: Store, night: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(night_module, "MAX_ATTENTION_LINKS", 2)
    report = night / "report.html"
    summary = await build_report(store, report, cards_per_page=4)
    raw = report.read_text(encoding="utf-8")
    assert summary.attention == len(ATTENTION)
    links = [h for h in parse(report).links if "#job-" in h]
    attention_links = [h for h in links if urldefrag(h)[1].removeprefix("job-") in ATTENTION]
    assert (
        len(attention_links)
        == 2
        + sum(  # two in the list, and the page's own cards
            1 for i in list(EXPECTED)[:4] if i in ATTENTION
        )
    )
    assert f"and {len(ATTENTION) - 2:,} more" in raw and "batchveo export --state failed" in raw


async def test_a_failure_midway_leaves_the_previous_report_whole(
    store: Store, night: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = night / "report.html"
    await build_report(store, report, cards_per_page=4)
    before = {p: p.read_bytes() for p in pages_of(report)}
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the second page written
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="disk full"):
        await build_report(store, report, cards_per_page=3)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert {p: p.read_bytes() for p in pages_of(report)} == before
    leftovers = [p for p in night.rglob(".*") if p.is_file()]
    assert leftovers == []
