"""The report in a real headless Chromium: the script runs, filters, sorts and lazy-loads.

Needs a Chromium (Debian: ``apt-get install chromium``); ``make browser-test`` installs it and
runs this file. Without a browser every test here is skipped. Set
``BATCHVEO_UPDATE_SCREENSHOT=1`` to refresh ``docs/report.png`` from the demo night.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from batchveo.report import Page as ReportPage
from batchveo.report import build_report, write_atomic
from batchveo.run.config import ReviewFlags
from batchveo.spec import ImageRef
from batchveo.store import Store
from tests.helpers import make_spec
from tests.pipeline_helpers import fast_config, fast_sim, run_batch
from tests.test_report import EXPECTED, run_night

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    explicit = os.environ.get("BATCHVEO_CHROMIUM")
    if explicit:
        return explicit
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip("chromium not installed: run make browser-test")
    return found


def chromium(browser: str, tmp: Path, url: str, *args: str, budget_ms: int = 5000) -> str:
    """Load ``url`` headless with no network and no profile; return stdout (the DOM if asked)."""
    profile = tmp / f"profile-{time.monotonic_ns()}"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={profile}",
        # Nothing may be fetched from the network: any host resolves to nowhere.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        # Lets timers and the IntersectionObserver run before the DOM is dumped.
        f"--virtual-time-budget={budget_ms}",
        *args,
        url,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "LANG": "C.UTF-8"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump(browser: str, tmp: Path, report: Path, query: str = "", **kw: int) -> str:
    dom = chromium(
        browser, tmp, report.as_uri() + query, "--window-size=1280,900", "--dump-dom", **kw
    )
    assert 'data-ready="1"' in dom, "the report's script did not run"
    return dom


def articles(dom: str) -> list[tuple[str, bool]]:
    """(card id, visible) in page order."""
    return [
        (m.group(1), " hidden" not in m.group(0))
        for m in re.finditer(r'<article [^>]*id="([^"]+)"[^>]*>', dom)
    ]


def shown(dom: str) -> str:
    m = re.search(r'<span id="shown">([^<]*)</span>', dom)
    assert m is not None
    return m.group(1)


@pytest.fixture
async def night_report(store: Store, tmp_path: Path) -> Path:
    out = tmp_path / "videos"
    await run_night(store, tmp_path, out)
    assert {j.id: j.state for j in await store.jobs()} == EXPECTED
    report = out / "report.html"
    await build_report(store, report)
    return report


async def test_the_script_runs_and_loads_the_visible_videos(
    browser: str, night_report: Path, tmp_path: Path
) -> None:
    dom = dump(browser, tmp_path, night_report)
    assert shown(dom) == f"{len(EXPECTED)} of {len(EXPECTED)} shown"
    assert all(visible for _, visible in articles(dom))
    videos = re.findall(r"<video [^>]*>", dom)
    assert videos
    for tag in videos:  # a small page: every video is near the viewport
        src = re.search(r' src="([^"]+)"', tag)
        data_src = re.search(r'data-src="([^"]+)"', tag)
        assert src and data_src and src.group(1) == data_src.group(1)
        assert 'preload="none"' in tag and ' poster="' in tag  # nothing loads until played
    # The prompt holding HTML stayed text: its script and onerror never ran.
    assert dom.count("<script") == 1 and '<img src="x"' not in dom
    assert not re.search(r"<(html|body)[^>]*data-pwned", dom)
    assert "<title>pwned" not in dom


async def test_filters_search_and_sort_from_the_url(
    browser: str, night_report: Path, tmp_path: Path
) -> None:
    def visible(query: str) -> list[str]:
        return [i for i, v in articles(dump(browser, tmp_path, night_report, query)) if v]

    failed = [f"job-{i}" for i, s in EXPECTED.items() if s.value == "failed"]
    assert visible("?state=failed") == failed
    assert visible("?batch=b2") == ["job-b2-one", "job-b2-two"]
    assert visible("?q=FOX") == ["job-fox"]
    assert visible("?state=done&q=paper") == ["job-b2-one"]
    assert visible("?q=no+such+prompt") == []

    by_state = [i for i, _ in articles(dump(browser, tmp_path, night_report, "?sort=state"))]
    ranks = ["failed", "uncertain", "expired", "cancelled", "pending", "done"]
    order = [ranks.index(EXPECTED[i.removeprefix("job-")].value) for i in by_state]
    assert order == sorted(order)
    by_id = [i for i, _ in articles(dump(browser, tmp_path, night_report, "?sort=id"))]
    assert by_id == sorted(by_id)

    # A link to a card hidden by a filter clears the filters so the card shows.
    dom = dump(browser, tmp_path, night_report, "?state=done#job-filtered")
    assert shown(dom) == f"{len(EXPECTED)} of {len(EXPECTED)} shown"


async def test_five_thousand_jobs_load_lazily(browser: str, store: Store, tmp_path: Path) -> None:
    out = tmp_path / "videos"
    await run_night(store, tmp_path, out)
    jobs = await store.jobs()
    many = [replace(jobs[i % len(jobs)], id=f"n{i:05d}") for i in range(5000)]
    report = out / "big.html"
    write_atomic(report, ReportPage(many, out, batch=None, now=time.time()).render().encode())

    t0 = time.monotonic()
    dom = dump(browser, tmp_path, report, budget_ms=3000)
    elapsed = time.monotonic() - t0
    assert shown(dom) == "5000 of 5000 shown"
    videos = re.findall(r"<video [^>]*>", dom)
    loaded = [v for v in videos if re.search(r' src="', v)]
    assert len(videos) > 2000
    assert 0 < len(loaded) < 100, len(loaded)  # only those near the first screen
    assert elapsed < 60, elapsed


async def test_a_big_night_opens_page_by_page(browser: str, store: Store, tmp_path: Path) -> None:
    """2,500 jobs: three pages; each opens with its script run, and the links between them
    and from the attention list land on the card in the right page."""
    out = tmp_path / "videos"
    await run_night(store, tmp_path, out)
    await store.add_jobs([make_spec(f"n{i:05d}", batch="big") for i in range(2489)])
    report = out / "report.html"
    summary = await build_report(store, report)
    assert summary.pages == 3 and summary.jobs == 2500

    first = dump(browser, tmp_path, report)
    assert shown(first) == "1000 of 1000 shown"
    assert "2,500" in first and "page 1 of 3" in first
    second = out / "report-pages" / "2.html"
    dom = dump(browser, tmp_path, second)
    assert shown(dom) == "1000 of 1000 shown"
    assert 'href="../report.html"' in dom and 'href="3.html" rel="next"' in dom
    # A card asked for by its fragment on a page filtered to hide it is shown.
    dom = dump(browser, tmp_path, out / "report-pages" / "3.html", "?state=done#job-n02488")
    assert shown(dom) == "500 of 500 shown"


# -- the demo night and its screenshot ------------------------------------------------

DEMO = [
    ("lighthouse", "The lighthouse beam sweeps through sea fog at dusk", "lighthouse.png"),
    ("fox", "A red fox trotting through fresh snow in a birch forest, morning light", None),
    ("tram", "A city tram glides past neon signs in heavy rain at night [sim:review=7]", None),
    ("paper-boat", "A paper boat drifting down a rain gutter, macro lens [sim:review=4]", None),
    ("studio", "The product turns slowly on a turntable under soft studio light", "studio.png"),
    ("balloons", "Hot air balloons rise over a desert canyon at golden hour", None),
    ("nebula", "The camera drifts slowly through the nebula as stars flicker", "nebula.jpg"),
    ("violin", "An old violin on a velvet chair, dust floating in a sunbeam", None),
    ("stadium", "A stadium crowd surges onto the pitch at night [sim:filtered]", None),
    ("glacier", "Time-lapse of a glacier calving into a grey sea [sim:op_error]", None),
    ("rice", "Drone shot over terraced rice fields at sunrise [sim:lostx1]", None),
    ("duel", "Two knights duel in a burning hall [sim:content_policy]", None),
]  # fmt: skip
"""Twelve jobs of one night: three image-to-video, two failures, a filtered, an uncertain;
every video reviewed: one take flagged, one passing with a defect noted."""


async def demo_night(base: Path) -> Path:
    """Run the demo night against the simulator on a 40x clock, so times look real."""
    start, scale = time.time(), 40.0
    base.mkdir(parents=True, exist_ok=True)
    store = await Store.open(base / "jobs.db", clock=lambda: start + (time.time() - start) * scale)
    try:
        inputs = base / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        specs = []
        for job_id, prompt, image in DEMO:
            ref = None
            if image:
                src = inputs / image
                shutil.copyfile(ROOT / "examples" / "images" / image, src)
                mime = "image/jpeg" if image.endswith(".jpg") else "image/png"
                ref = ImageRef(str(src), hashlib.sha256(src.read_bytes()).hexdigest(), mime)
            specs.append(make_spec(job_id, prompt, batch="overnight", image=ref))
        out = base / "videos"
        config = fast_config(
            out,
            first_poll_s=0.2,
            poll_interval_s=0.2,
            poll_max_interval_s=0.4,
            review=ReviewFlags(review_all=True, rpm=0),
        )
        async with fast_sim(generation_s=(0.8, 2.5)) as sim:
            await run_batch(store, sim, config, specs)
        report = out / "report.html"
        await build_report(store, report)
        return report
    finally:
        await store.close()


async def test_screenshot_of_the_demo_night(browser: str, tmp_path: Path) -> None:
    report = await demo_night(tmp_path / "demo")
    update = bool(os.environ.get("BATCHVEO_UPDATE_SCREENSHOT"))
    shots = []
    # The screenshot does not wait for video frames: a frame still decoding shows black.
    # For the docs keep the most detailed (largest) of six.
    for i in range(6 if update else 1):
        png = tmp_path / f"report-{i}.png"
        chromium(
            browser, tmp_path, report.as_uri(), "--window-size=1280,1560", f"--screenshot={png}"
        )
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        shots.append((len(data), png))
    if update:
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(max(shots)[1], ROOT / "docs" / "report.png")
