"""What the user sees of Vertex jobs: ``load``, ``export``, ``status`` and the report, with
routes and partial results (in process, through click's CliRunner)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from batchveo.cli import main
from batchveo.states import JobState
from batchveo.store import Store

S = JobState
VERTEX_MANIFEST = """
defaults:
  provider: vertex
  project: proj-one
  location: europe-west4
jobs:
  - id: trio
    prompt: three lighthouses
    sampleCount: 3
    generateAudio: false
  - id: solo
    prompt: one lighthouse
"""


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("BATCHVEO_DB", "BATCHVEO_BASE_URL", "BATCHVEO_PROVIDER"):
        monkeypatch.delenv(var, raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def partial_night(*, reason: str = "58061214") -> None:
    """``trio`` came back with 2 of its 3 videos (one filtered); ``solo`` is still running."""

    async def go() -> None:
        async with await Store.open("jobs.db") as store:
            for job in await store.claim_pending(2):
                await store.transition(job.id, S.SUBMITTING, S.RUNNING, operation=f"op-{job.id}")
            await store.transition(
                "trio",
                S.RUNNING,
                S.DONE,
                files=[{"path": "videos/trio_1.mp4"}, {"path": "videos/trio_2.mp4"}],
                samples_returned=2,
                samples_filtered=1,
                filtered_reasons=[reason],
                generated_at=1.0,
                finished_at=2.0,
            )

    asyncio.run(go())


def test_load_stores_a_vertex_manifests_route_and_samples() -> None:
    write("night.yaml", VERTEX_MANIFEST)
    result = invoke("load", "night.yaml", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2 new, 0 already loaded (batch night)"
    with sqlite3.connect("jobs.db") as conn:
        got = conn.execute(
            "SELECT id, model, provider, project, location, storage_uri, samples_requested,"
            " cost_usd FROM jobs ORDER BY rowid"
        ).fetchall()
    assert got == [
        ("trio", "veo-3.1-generate-001", "vertex", "proj-one", "europe-west4", None, 3, 4.8),
        ("solo", "veo-3.1-generate-001", "vertex", "proj-one", "europe-west4", None, 1, 3.2),
    ]


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (
            "    model: veo-3.1-generate-preview\n",
            "model veo-3.1-generate-preview was retired on Vertex AI on 2026-04-02: use "
            "veo-3.1-generate-001 (provider vertex)",
        ),
        (
            "    sampleCount: 2\n",
            "sampleCount must be 1 on provider gemini, not 2: the Gemini API makes one video per"
            " request (use repeat: N for several variants, or provider vertex for up to 4)",
        ),
    ],
)
def test_a_bad_vertex_job_is_one_line_exit_2_and_nothing_written(job: str, message: str) -> None:
    provider = "gemini" if "sampleCount" in job else "vertex"
    write("ok.yaml", "- prompt: fine\n")
    Path("bad.yaml").write_text(
        f"defaults:\n  provider: {provider}\njobs:\n  - id: x\n    prompt: p\n{job}"
    )
    result = invoke("load", "ok.yaml", "bad.yaml", "--db", "jobs.db")
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"batchveo: bad.yaml:4, job x: {message}"]
    assert not Path("jobs.db").exists()


def test_export_says_samples_reasons_and_route() -> None:
    write("night.yaml", VERTEX_MANIFEST)
    write("plain.yaml", "- id: g\n  prompt: a plain job\n")
    assert invoke("load", "night.yaml", "plain.yaml", "--db", "jobs.db").exit_code == 0
    partial_night(reason="=HYPERLINK(1)")
    result = invoke("export", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    by_id = {row["id"]: row for row in map(json.loads, result.stdout.splitlines())}
    trio, solo, plain = by_id["trio"], by_id["solo"], by_id["g"]
    assert {k: trio[k] for k in trio if k.startswith("samples") or k == "filtered_reasons"} == {
        "samples_requested": 3,
        "samples_returned": 2,
        "samples_filtered": 1,
        "filtered_reasons": ["=HYPERLINK(1)"],
    }
    assert trio["cost_usd"] == pytest.approx(3.2)  # 2 of 3 silent videos at $1.60
    assert (trio["provider"], trio["project"], trio["location"]) == (
        "vertex",
        "proj-one",
        "europe-west4",
    )
    assert (solo["samples_returned"], solo["filtered_reasons"]) == (None, [])
    assert (plain["provider"], plain["project"], plain["location"]) == (None, None, None)
    table = list(
        csv.DictReader(io.StringIO(invoke("export", "--db", "jobs.db", "--format", "csv").stdout))
    )
    row = next(r for r in table if r["id"] == "trio")
    assert json.loads(row["filtered_reasons"]) == ["=HYPERLINK(1)"]
    assert (row["samples_returned"], row["provider"], row["location"]) == (
        "2",
        "vertex",
        "europe-west4",
    )
    assert next(r for r in table if r["id"] == "g")["provider"] == ""


def test_status_shows_partial_results_per_batch_and_the_routes() -> None:
    write("night.yaml", VERTEX_MANIFEST)
    write("plain.yaml", "- id: g\n  prompt: a plain job\n")
    assert invoke("load", "night.yaml", "plain.yaml", "--db", "jobs.db").exit_code == 0
    partial_night()
    data = json.loads(invoke("status", "--json", "--db", "jobs.db").stdout)
    assert data["batches"]["night"]["samples"] == {
        "jobs": 1,
        "requested": 3,
        "returned": 2,
        "filtered": 1,
        "partial": 1,
    }
    assert data["batches"]["plain"]["samples"]["jobs"] == 0
    assert [(r["route"], r["total"], r["states"]["running"]) for r in data["routes"]] == [
        ("the run's", 1, 0),
        ("vertex (proj-one, europe-west4)", 2, 1),
    ]
    text = invoke("status", "--db", "jobs.db").stdout
    assert "partial results" in text and "routes" in text
    partial_line = [line for line in text.splitlines() if "night" in line][-1]
    assert [cell.strip() for cell in partial_line.split("│")[1:-1]] == ["night", "1", "3", "2", "1"]
    assert "vertex (proj-one, europe-west4)" in text


def test_status_of_one_route_shows_no_route_table() -> None:
    write("night.yaml", VERTEX_MANIFEST)
    assert invoke("load", "night.yaml", "--db", "jobs.db").exit_code == 0
    text = invoke("status", "--db", "jobs.db").stdout
    assert "routes" not in text and "partial results" not in text
    data = json.loads(invoke("status", "--json", "--db", "jobs.db").stdout)
    assert len(data["routes"]) == 1


class _Cards(HTMLParser):
    """The text of each card's partial-result note, by the card's id."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: dict[str, str] = {}
        self._card: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a: dict[str, Any] = dict(attrs)
        if tag == "article":
            self._card = a["id"]
        if tag == "div" and a.get("data-kind") == "partial":
            self._depth = 1
            self.notes[self._card or ""] = ""
        elif self._depth and tag == "div":
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag == "div":
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.notes[self._card or ""] += data


def test_the_report_shows_a_partly_filtered_jobs_counts_and_reasons() -> None:
    write("night.yaml", VERTEX_MANIFEST)
    assert invoke("load", "night.yaml", "--db", "jobs.db").exit_code == 0
    partial_night(reason="<script>alert(1)</script> Support codes: 58061214")
    result = invoke("report", "--db", "jobs.db", "--out", "r.html")
    assert result.exit_code == 0, result.output
    page = Path("r.html").read_text()
    assert "<script>alert(1)" not in page
    cards = _Cards()
    cards.feed(page)
    assert cards.notes == {
        "job-trio": "not charged2 of 3 videos · 1 blocked by the safety filter"
        "Reasons: <script>alert(1)</script> Support codes: 58061214"
    }
    assert ">1</b><span>partly filtered</span>" in page
