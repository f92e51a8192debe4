"""The garbage collector is the whole process's: only a one-shot command may pause it.

Pausing it makes a 100k-row load about twice as fast (``python -m bench load``), but the
``--watch`` drop folder loads on a worker thread while the run goes on, and a library call
that switched the collector off under it would leave the run's own garbage to pile up.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchveo.cli import main
from batchveo.manifest import gc_paused, read_manifests
from batchveo.manifest import images as image_files
from batchveo.spec import ImageRef
from tests.test_manifest import png, write


@pytest.fixture
def collector_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether the collector was on while the loader read an image (one per load)."""
    seen: list[bool] = []
    real = image_files.hash_image

    def spy(path: Path) -> ImageRef | str:
        seen.append(gc.isenabled())
        return real(path)

    monkeypatch.setattr(image_files, "hash_image", spy)
    write(tmp_path / "img" / "red.png", png())
    assert gc.isenabled()
    yield seen
    assert gc.isenabled()


def test_reading_manifests_leaves_the_collector_on(
    tmp_path: Path, collector_seen: list[bool]
) -> None:
    """As the drop folder calls it: the run's loop goes on meanwhile."""
    path = write(tmp_path / "m.yaml", "- {prompt: p, image: img/red.png}\n")
    assert len(read_manifests([path]).specs) == 1
    assert collector_seen == [True]


def test_batchveo_load_pauses_the_collector(tmp_path: Path, collector_seen: list[bool]) -> None:
    path = write(tmp_path / "m.csv", "prompt,image\np,img/red.png\n")
    result = CliRunner().invoke(main, ["load", str(path), "--db", str(tmp_path / "jobs.db")])
    assert (result.exit_code, collector_seen) == (0, [False]), result.output


def test_batchveo_plan_pauses_the_collector(tmp_path: Path, collector_seen: list[bool]) -> None:
    path = write(tmp_path / "m.csv", "prompt,image\np,img/red.png\n")
    result = CliRunner().invoke(main, ["plan", str(path), "--db", str(tmp_path / "jobs.db")])
    assert (result.exit_code, collector_seen) == (0, [False]), result.output


def test_a_bad_manifest_turns_the_collector_back_on(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "prompt,seed\np,x\n")
    result = CliRunner().invoke(main, ["load", str(path), "--db", str(tmp_path / "jobs.db")])
    assert result.exit_code == 2 and gc.isenabled()


def test_gc_paused_restores_what_it_found() -> None:
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner one found it off: leaves it off
    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError
    assert gc.isenabled()
