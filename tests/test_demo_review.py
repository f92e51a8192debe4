"""``make demo`` reviews every video of the example on the simulator and its report shows
the verdicts: the demo's own manifest copy (``demo.yaml``: two prompts with review
markers) and run flags, on an in-process simulator made fast by later flags."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchveo.cli import main
from batchveo.cli.demo import DEMO_REVIEWS, MANIFEST, demo_manifest, run_args
from batchveo.manifest import read_manifests
from tests.pipeline_helpers import KEY
from tests.test_review_cli import sim_in_a_thread

REPO = Path(__file__).parent.parent


def test_the_demo_reviews_every_video_and_its_report_shows_the_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHVEO_API_KEY", KEY)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("BATCHVEO_DB", "BATCHVEO_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(demo_manifest((REPO / MANIFEST).read_text()))
    n = len(read_manifests([manifest]).specs)  # the example's videos, each reviewed
    assert n >= 12
    fast = ["--rpm", "0", "--first-poll", "0.01", "--poll-interval", "0.02", "--review-rpm", "0"]
    with sim_in_a_thread() as url:  # the demo's flags, the later ones making it fast
        args = [*run_args(manifest, Path("videos")), "--base-url", url, "--db", "demo.db", *fast]
        result = CliRunner().invoke(main, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().endswith(f"{n} done; reviews: {n - 1} passed, 1 flagged")
    report = CliRunner().invoke(main, ["report", "--db", "demo.db"])
    assert report.exit_code == 0, report.output

    html = (tmp_path / "videos" / "report.html").read_text(encoding="utf-8")
    cards = dict(re.findall(r'<article [^>]*id="job-([^"]+)"([^>]*)>', html))
    assert len(cards) == n
    verdicts = {i: re.search(r'data-review="(\w+)"', a) for i, a in cards.items()}
    flagged = {i for i, m in verdicts.items() if m and m.group(1) == "flagged"}
    passed = {i for i, m in verdicts.items() if m and m.group(1) == "passed"}
    assert flagged == {"paper-boat"} and len(passed) == n - 1
    assert set(DEMO_REVIEWS) == {"paper-boat", "city-rain"}
    assert 'data-score="4"' in cards["paper-boat"] and 'data-score="7"' in cards["city-rain"]
    # Both marked takes have their defect as a link seeking their video to 00:05.
    for job_id in DEMO_REVIEWS:
        assert f'<a class="seek" href="{job_id}.mp4#t=5" data-t="5">00:05</a>' in html
    assert f"<b>{n - 1}</b><span>passed review</span>" in html and 'id="f-review"' in html
