"""The poster frames in a real headless Chromium: every card's picture loads (its
``naturalWidth`` > 0) and is painted in the screenshot, no video is fetched or decoded
until one is played, and a video without a poster shows the placeholder (on cards with
their reviews' verdicts: ``tests/test_report_verdicts_browser.py`` seeks from them).

Run with ``make browser-test`` (which also runs ``tests/test_report_browser.py``); skipped
without a Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from batchveo.report import build_report
from batchveo.states import JobState
from batchveo.store import Store
from tests.test_posters import DONE_IN_NIGHT, garbled
from tests.test_report import run_night
from tests.test_report_browser import chromium, find_browser

pytestmark = pytest.mark.browser

WINDOW = "--window-size=1280,1400"

PROBE = """<script>
// Test-only: what a user would see, written into the page for --dump-dom to read.
window.addEventListener("load", () => {
  const videos = Array.from(document.querySelectorAll("video[poster]"));
  let left = videos.length;
  const finish = () => {
    if (--left === 0) document.documentElement.dataset.posters = "1";
  };
  for (const v of videos) {
    const img = new Image();
    img.onload = () => {
      v.dataset.natural = img.naturalWidth + "x" + img.naturalHeight;
      finish();
    };
    img.onerror = () => {
      v.dataset.natural = "0x0";
      finish();
    };
    img.src = v.poster;
  }
  // Once the page's own script has given the videos near the viewport their src:
  // how much of each video the browser has (0: nothing, not even its metadata).
  setTimeout(() => {
    for (const v of videos) {
      // Measured late: cards off screen have an estimated height until first painted
      // (content-visibility), so the boxes below them move once they are.
      const r = v.getBoundingClientRect();
      v.dataset.box = [r.left, r.top, r.right, r.bottom].map(Math.round).join(",");
      v.dataset.readyState = v.readyState;
      v.dataset.hasSrc = v.getAttribute("src") ? "1" : "0";
    }
    document.documentElement.dataset.probed = "1";
  }, 2000);
});
</script>"""


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip("chromium not installed: run make browser-test")
    return found


def probed(report: Path) -> Path:
    """A copy of ``report`` beside it with ``PROBE`` before ``</body>``."""
    copy = report.with_name("probed.html")
    html = report.read_text(encoding="utf-8")
    copy.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    return copy


def videos_in(dom: str) -> dict[str, dict[str, str]]:
    """Each card's video's attributes (as the probe left them), by job id."""
    out = {}
    for m in re.finditer(r'<article [^>]*id="job-([^"]+)"[^>]*>(.*?)</article>', dom, re.S):
        tag = re.search(r"<video ([^>]*)>", m.group(2))
        if tag:
            out[m.group(1)] = dict(re.findall(r'([a-z-]+)="([^"]*)"', tag.group(1)))
    return out


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b.resize(a.size))).mean) / 3


async def test_every_card_shows_its_poster_and_no_video_is_fetched(
    browser: str, store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "my videos"
    await run_night(store, tmp_path, out, review=True)  # the cards with their verdicts
    (out / "fox.mp4").write_bytes(garbled())  # a video that is no video any more: no poster
    (out / "fox.jpg").unlink()
    await store.update("fox", JobState.DONE, posters=None)
    report = out / "report.html"
    summary = await build_report(store, report)
    assert summary.posters is not None and summary.posters.unreadable == 1
    page = probed(report)

    dom = chromium(browser, tmp_path, page.as_uri(), WINDOW, "--dump-dom")
    assert 'data-ready="1"' in dom and 'data-probed="1"' in dom, "the scripts did not run"
    assert 'data-posters="1"' in dom, "a poster neither loaded nor failed"
    videos = videos_in(dom)
    assert sorted(videos) == sorted(DONE_IN_NIGHT)
    assert dom.count('<div class="rv v-passed"') == len(DONE_IN_NIGHT)  # each its verdict
    for job_id, video in videos.items():
        w, h = (int(n) for n in video["data-natural"].split("x"))
        assert w > 0 and h > 0, (job_id, video)  # the picture loaded and decoded
        if job_id != "fox":
            assert (w, h) == (320, 180) and video["poster"] == f"{job_id}.jpg"
        # Near the viewport (a small page: all of them) the video has its src, and yet
        # nothing of it is loaded: it waits to be played.
        assert video["data-has-src"] == "1" and video["preload"] == "none"
        assert video["data-ready-state"] == "0", (job_id, video)
    assert videos["fox"]["poster"].startswith("data:image/svg+xml,")

    # The screenshot shows each poster where its video is, and fox's placeholder.
    png = tmp_path / "shot.png"
    chromium(browser, tmp_path, page.as_uri(), WINDOW, f"--screenshot={png}")
    with Image.open(png) as shot, Image.open(out / "sea.jpg") as poster:
        shot_rgb = shot.convert("RGB")
        poster_rgb = poster.convert("RGB").crop((0, 0, poster.width, poster.height // 2))
        for job_id, video in videos.items():
            left, top, right, bottom = (int(n) for n in video["data-box"].split(","))
            if bottom > shot.height:
                continue  # below the fold
            # Where the poster is painted: fitted into the box (object-fit: contain; a card
            # with an input image has a narrower one), its top half only (the player's
            # controls are drawn over the bottom one).
            scale = min((right - left) / poster.width, (bottom - top) / poster.height)
            w, h = round(poster.width * scale), round(poster.height * scale)
            x, y = left + (right - left - w) // 2, top + (bottom - top - h) // 2
            seen = shot_rgb.crop((x, y, x + w, y + h // 2))
            if job_id == "fox":
                assert mean_diff(seen, poster_rgb) > 40  # the placeholder, not a picture
                assert max(seen.convert("L").getextrema()) > 100  # its text is drawn
            else:
                assert mean_diff(seen, poster_rgb) < 25, job_id
