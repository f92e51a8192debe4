"""``make demo`` reviews its 12 videos and its report shows the verdicts (the demo's own
manifest copy and run flags, on an in-process simulator made fast); ``make demo-vertex``
loads the example batch through the Vertex AI route: the example's preview ids, retired on
Vertex, are swapped for the GA ids a load of the original names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchveo.cli import main
from batchveo.cli.demo import DEMO_REVIEWS, MANIFEST, demo_manifest, run_args, vertex_manifest
from batchveo.errors import ManifestError
from batchveo.manifest import read_manifests
from batchveo.routes import Route
from tests.pipeline_helpers import KEY
from tests.test_review_cli import sim_in_a_thread

REPO = Path(__file__).parent.parent


def test_the_example_batch_loads_on_vertex_once_its_ids_are_the_ga_ones(tmp_path: Path) -> None:
    original = (REPO / MANIFEST).read_text()
    shutil.copytree(REPO / "examples", tmp_path / "examples")  # the images it names
    copy = tmp_path / "jobs.yaml"
    vertex = Route("vertex", "batchveo-demo")
    copy.write_text(original)
    with pytest.raises(ManifestError, match="retired on Vertex AI on 2026-04-02"):
        read_manifests([copy], route=vertex)
    copy.write_text(vertex_manifest(original))
    loaded = read_manifests([copy], route=vertex)
    gemini = read_manifests([REPO / MANIFEST])
    assert len(loaded.specs) == len(gemini.specs) == 12
    assert {s.model for s in loaded.specs} == {"veo-3.1-fast-generate-001"}
    # Nothing else differs: the same prompts, the same parameters (Vertex adds its audio).
    assert [s.prompt for s in loaded.specs] == [s.prompt for s in gemini.specs]
    for v, g in zip(loaded.specs, gemini.specs, strict=True):
        assert {k: x for k, x in v.params.items() if k != "generateAudio"} == g.params


def test_the_demo_reviews_its_twelve_videos_and_its_report_shows_the_verdicts(
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
    assert len(read_manifests([manifest]).specs) == 12
    fast = ["--rpm", "0", "--first-poll", "0.01", "--poll-interval", "0.02", "--review-rpm", "0"]
    with sim_in_a_thread() as url:  # the demo's flags, the later ones making it fast
        args = [*run_args(manifest, Path("videos")), "--base-url", url, "--db", "demo.db", *fast]
        result = CliRunner().invoke(main, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().endswith("12 done; reviews: 11 passed, 1 flagged")
    report = CliRunner().invoke(main, ["report", "--db", "demo.db"])
    assert report.exit_code == 0, report.output

    html = (tmp_path / "videos" / "report.html").read_text(encoding="utf-8")
    cards = dict(re.findall(r'<article [^>]*id="job-([^"]+)"([^>]*)>', html))
    assert len(cards) == 12
    verdicts = {i: re.search(r'data-review="(\w+)"', a) for i, a in cards.items()}
    flagged = {i for i, m in verdicts.items() if m and m.group(1) == "flagged"}
    passed = {i for i, m in verdicts.items() if m and m.group(1) == "passed"}
    assert flagged == {"paper-boat"} and len(passed) == 11
    assert set(DEMO_REVIEWS) == {"paper-boat", "city-rain"}
    assert 'data-score="4"' in cards["paper-boat"] and 'data-score="7"' in cards["city-rain"]
    # Both marked takes have their defect as a link seeking their video to 00:05.
    for job_id in DEMO_REVIEWS:
        assert f'<a class="seek" href="{job_id}.mp4#t=5" data-t="5">00:05</a>' in html
    assert "<b>11</b><span>passed review</span>" in html and 'id="f-review"' in html
