"""``run_night``, the composition root of ``batchveo run``, called as the command line does.

In-process against the simulator: what the user is told, when, and what is (not) written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from batchveo.errors import ManifestError, UserError
from batchveo.exitcodes import ExitCode
from batchveo.run.app import LockTakenOver, ManifestsLoaded, Notice, RunOptions, run_night
from tests.helpers import db_states, without_posters
from tests.pipeline_helpers import KEY, fast_config, fast_sim


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHVEO_API_KEY", KEY)


def manifest(path: Path, *ids: str) -> Path:
    path.write_text(
        "jobs:\n" + "".join(f"  - {{id: {i}, prompt: a sea at dawn {i}}}\n" for i in ids)
    )
    return path


async def test_a_night_tells_the_takeover_and_the_load_before_any_job_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "jobs.db"
    (tmp_path / "jobs.db.lock").write_text(json.dumps({"pid": 4242, "host": "here"}))
    told: list[tuple[Notice, dict[str, str]]] = []
    said: list[str] = []
    progress = io.StringIO()
    async with fast_sim() as sim:
        options = RunOptions(
            db_path=db,
            config=fast_config(tmp_path / "videos"),
            manifests=(manifest(tmp_path / "m.yaml", "a", "b"),),
            base_url=sim.url,
        )
        night = await run_night(
            options,
            say=said.append,
            stream=progress,
            tell=lambda n: told.append((n, db_states(db))),
        )
    assert night.result.exit_code == ExitCode.OK and night.result.states["done"] == 2
    assert [n for n, _ in told] == [night.took_over, night.loaded]
    assert night.took_over == LockTakenOver(4242)
    assert isinstance(night.loaded, ManifestsLoaded) and night.loaded.result.new == 2
    assert told[1][1] == {"a": "pending", "b": "pending"}  # told before the run started
    assert said == [] and "downloaded 2/2" in progress.getvalue().splitlines()[-1]
    assert capsys.readouterr() == ("", "")  # nothing below the command line prints
    assert without_posters(p.name for p in (tmp_path / "videos").iterdir()) == ["a.mp4", "b.mp4"]


async def test_an_id_twice_in_a_run_manifest_is_refused_by_its_load_writing_nothing(
    tmp_path: Path,
) -> None:
    # The first pass checks each job on its own; the id given twice is found by the load
    # (streamed, as `batchveo load`): one transaction, no database made, no --out made.
    db, out = tmp_path / "jobs.db", tmp_path / "videos"
    twice = tmp_path / "twice.yaml"
    twice.write_text("jobs:\n  - {id: a, prompt: one}\n  - {id: a, prompt: two}\n")
    with pytest.raises(ManifestError) as raised:
        await run_night(
            RunOptions(db_path=db, config=fast_config(out), manifests=(twice,)),
            say=print, stream=io.StringIO(),
        )  # fmt: skip
    assert "id a is also used by a different job" in str(raised.value)
    assert not db.exists() and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".jobs.db")] == []


async def test_bad_input_stops_the_night_before_anything_is_written(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    told: list[Notice] = []
    config = fast_config(tmp_path / "videos")
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  - {id: a}\n")  # no prompt
    with pytest.raises(ManifestError):
        await run_night(
            RunOptions(db_path=db, config=config, manifests=(bad,)),
            say=print, stream=io.StringIO(), tell=told.append,
        )  # fmt: skip
    (tmp_path / "videos").write_text("a file, not a folder")
    with pytest.raises(UserError, match="a file is there, not a folder"):
        await run_night(
            RunOptions(db_path=db, config=config, manifests=(manifest(tmp_path / "m.yaml", "a"),)),
            say=print, stream=io.StringIO(), tell=told.append,
        )  # fmt: skip
    assert told == [] and not db.exists() and not (tmp_path / "jobs.db.lock").exists()
