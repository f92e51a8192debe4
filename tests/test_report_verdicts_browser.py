"""The verdicts in a real headless Chromium: a defect's time seeks its card's video (one
with no video loaded, not even its src: ``currentTime`` becomes the defect's second), the
"flagged" filter hides the passing cards, sorting by score orders the cards and "order
loaded" puts them back.

Run with ``make browser-test``; skipped without a Chromium. That the posters are painted
on a reviewed page is ``tests/test_report_posters_browser.py``'s.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchveo.report import build_report
from batchveo.run.config import ReviewFlags
from batchveo.store import Store
from tests.helpers import make_spec
from tests.pipeline_helpers import fast_config, fast_sim, run_batch
from tests.test_report_browser import articles, chromium, dump, find_browser

pytestmark = pytest.mark.browser

PROMPTS = {
    "sea": "A calm sea at dawn",  # the simulator's default: 8
    "hand": "A hand waving hello [sim:review=3]",
    "fox": "A red fox in the snow [sim:review=9]",
    "boat": "A paper boat on a puddle [sim:review=6]",
    "violin": "A violin on a chair [sim:review=bad-json]",  # a review error: no score
    "glitch": "A glitching hologram [sim:op_error]",  # failed: no video, no review
}
SCORES = {"sea": 8, "hand": 3, "fox": 9, "boat": 6}
FLAGGED = ["hand", "boat"]  # below the threshold of 7

SEEK_PROBE = """<script>
// Test-only: click the defect's time on hand's card, whose video has no src yet (as a
// card far from the viewport), and write what the video did into the page.
window.addEventListener("load", () => {
  setTimeout(() => {
    const card = document.getElementById("job-hand");
    const video = card.querySelector("video");
    video.removeAttribute("src");
    video.load();
    const d = video.dataset;
    d.before = [video.currentTime, video.readyState, video.getAttribute("src") || ""].join("|");
    video.addEventListener("seeked", () => { d.seeked = String(video.currentTime); });
    card.querySelector("a.seek").click();
    // The video loads and seeks in real time on the media threads while the page's
    // clock is virtual (it runs ahead whenever the page is idle): until it has seeked,
    // each look spins a few real milliseconds, during which virtual time stands still.
    let looks = 0;
    const spin = () => {
      let x = 0;
      for (let i = 0; i < 3e6; i++) x = (x + i) % 7919;
      return x;
    };
    const look = () => {
      looks += 1;
      if (!d.seeked && looks < 1000) {
        spin();
        return setTimeout(look, 20);
      }
      setTimeout(() => {
        d.after = String(video.currentTime);
        d.hasSrc = video.getAttribute("src") ? "1" : "0";
        document.documentElement.dataset.probed = "1";
      }, 500);
    };
    setTimeout(look, 50);
  }, 300);
});
</script>"""

SORT_PROBE = """<script>
// Test-only: pick each sort in the select as a user would, noting the cards' order.
window.addEventListener("load", () => {
  const sort = document.getElementById("f-sort");
  const order = () => Array.from(document.querySelectorAll("#grid > article"), (a) => a.id);
  const seen = [];
  for (const value of ["score", "-score", ""]) {
    sort.value = value;
    sort.dispatchEvent(new Event("change"));
    seen.push(value + "=" + order().join(","));
  }
  document.documentElement.dataset.orders = seen.join(";");
});
</script>"""


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip("chromium not installed: run make browser-test")
    return found


@pytest.fixture
async def reviewed(store: Store, tmp_path: Path) -> Path:
    """The report of a night whose done videos were reviewed on the simulator."""
    out = tmp_path / "videos"
    specs = [make_spec(job_id, prompt) for job_id, prompt in PROMPTS.items()]
    flags = ReviewFlags(review_all=True, rpm=0)
    async with fast_sim() as sim:
        await run_batch(store, sim, fast_config(out, max_attempts=1, review=flags), specs)
    report = out / "report.html"
    await build_report(store, report)
    return report


def with_probe(report: Path, probe: str, name: str) -> Path:
    copy = report.with_name(name)
    copy.write_text(report.read_text(encoding="utf-8").replace("</body>", probe + "</body>"))
    return copy


async def test_a_defect_s_time_seeks_the_video_that_was_not_loaded(
    browser: str, reviewed: Path, tmp_path: Path
) -> None:
    page = with_probe(reviewed, SEEK_PROBE, "seek.html")
    dom = chromium(
        browser, tmp_path, page.as_uri(), "--window-size=1280,900", "--dump-dom",
        "--autoplay-policy=no-user-gesture-required", budget_ms=25000,
    )  # fmt: skip
    assert 'data-ready="1"' in dom and 'data-probed="1"' in dom, "the scripts did not run"
    card = re.search(r'<article [^>]*id="job-hand".*?</article>', dom, re.S)
    assert card is not None
    tag = re.search(r"<video [^>]*>", card.group(0))
    assert tag is not None
    video = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', tag.group(0)))
    assert video["data-before"] == "0|0|", video  # nothing loaded, not even its src
    assert video.get("data-seeked") == "5", video  # the defect's 00:05
    assert 5 <= float(video["data-after"]) <= 8 and video["data-has-src"] == "1"


async def test_the_flagged_filter_hides_the_passing_cards(
    browser: str, reviewed: Path, tmp_path: Path
) -> None:
    def visible(query: str) -> list[str]:
        cards = articles(dump(browser, tmp_path, reviewed, query))
        return [i.removeprefix("job-") for i, v in cards if v]

    assert visible("") == list(PROMPTS)
    assert visible("?review=flagged") == FLAGGED
    assert visible("?review=passed") == ["sea", "fox"]
    assert visible("?review=error") == ["violin"]
    assert visible("?review=flagged&q=boat") == ["boat"]  # with the other filters
    dom = dump(browser, tmp_path, reviewed, "?review=flagged")
    assert re.search(r'<span id="shown">2 of 6 shown</span>', dom)


async def test_sorting_by_score_orders_the_cards_and_back(
    browser: str, reviewed: Path, tmp_path: Path
) -> None:
    page = with_probe(reviewed, SORT_PROBE, "sort.html")
    dom = dump(browser, tmp_path, page)
    m = re.search(r'data-orders="([^"]*)"', dom)
    assert m is not None, "the probe did not run"
    orders = {
        key: [i.removeprefix("job-") for i in ids.split(",")]
        for key, _, ids in (part.partition("=") for part in m.group(1).split(";"))
    }
    unscored = ["violin", "glitch"]  # in the order loaded, last either way
    assert orders["score"] == sorted(SCORES, key=SCORES.__getitem__) + unscored
    assert orders["-score"] == sorted(SCORES, key=lambda i: -SCORES[i]) + unscored
    assert orders[""] == list(PROMPTS)  # "order loaded" again
    # The same from the URL.
    cards = articles(dump(browser, tmp_path, reviewed, "?sort=score"))
    by_url = [i.removeprefix("job-") for i, _ in cards]
    assert by_url == orders["score"]
