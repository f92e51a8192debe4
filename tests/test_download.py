"""Downloads end to end: where a video may land. Real sockets against the simulator."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from batchveo.errors import ConfigError
from batchveo.states import JobState
from batchveo.store import Store
from tests.conftest import make_spec
from tests.pipeline_helpers import fast_config, fast_sim, is_sim_video, run_batch

S = JobState


# -- where a video may land -------------------------------------------------------------


async def test_a_symlinked_folder_inside_out_cannot_take_a_video_outside_it(
    store: Store, tmp_path: Path
) -> None:
    out, elsewhere = tmp_path / "videos", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "shots").symlink_to("../elsewhere")
    specs = [make_spec("a", output_name="shots/a"), make_spec("b")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), specs)
    assert list(elsewhere.iterdir()) == []
    jobs = {j.id: j for j in await store.jobs()}
    assert {k: j.state for k, j in jobs.items()} == {"a": S.DONE, "b": S.DONE}
    # The paid video is saved all the same, under its id, and the record says where.
    assert jobs["a"].files[0]["path"] == str(out / "a.mp4") and is_sim_video(out / "a.mp4")
    assert result.exit_code == 0


async def test_a_file_where_a_job_needs_a_folder_concerns_that_job_only(
    store: Store, tmp_path: Path
) -> None:
    # Monday's job made videos/scene.mp4; Tuesday's wants a folder of that name.
    out = tmp_path / "videos"
    monday = [make_spec("scene", output_name="scene")]
    tuesday = [make_spec("take", output_name="scene.mp4/take1"), make_spec("calm")]
    async with fast_sim() as sim:
        assert (await run_batch(store, sim, fast_config(out), monday)).exit_code == 0
        result = await run_batch(store, sim, fast_config(out), tuesday)
    jobs = {j.id: j for j in await store.jobs()}
    assert result.exit_code == 0 and result.account_error is None
    assert {j.state for j in jobs.values()} == {S.DONE} and len(jobs) == 3
    assert jobs["take"].files[0]["path"] == str(out / "take.mp4")
    assert sorted(p.name for p in out.iterdir()) == ["calm.mp4", "scene.mp4", "take.mp4"]
    assert all(is_sim_video(p) for p in out.iterdir())


async def test_an_output_path_longer_than_the_system_allows_concerns_that_job_only(
    store: Store, tmp_path: Path
) -> None:
    # Loaded before names were checked at load time: 30 folders of 150 characters.
    out = tmp_path / "videos"
    deep = "/".join(["d" * 150] * 30) + "/v"
    specs = [make_spec("deep", output_name=deep), make_spec("calm")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), specs)
    jobs = {j.id: j for j in await store.jobs()}
    assert result.exit_code == 0
    assert {k: j.state for k, j in jobs.items()} == {"deep": S.DONE, "calm": S.DONE}
    assert jobs["deep"].files[0]["path"] == str(out / "deep.mp4")
    assert sorted(p.name for p in out.iterdir()) == ["calm.mp4", "deep.mp4"]


async def test_a_job_whose_fallback_name_fails_too_is_failed_with_the_reason(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchveo.files

    out = tmp_path / "videos"
    real_open = os.open

    def long_names_refused(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        # A file system with short names (eCryptfs allows 143 bytes): ours do not fit.
        if str(path).startswith("tiny"):
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(batchveo.files.os, "open", long_names_refused)
    specs = [make_spec("tiny", output_name="shots/tiny"), make_spec("calm")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), specs)
    tiny, calm = await store.get("tiny"), await store.get("calm")
    assert calm is not None and calm.state is S.DONE
    assert tiny is not None and tiny.state is S.FAILED and tiny.error_kind == "download"
    assert tiny.error == (
        f"cannot write {out}/shots/tiny.mp4: name too long for this file system;"
        f" its fallback name failed too: cannot write {out}/tiny.mp4: name too long for"
        " this file system"
    )
    assert result.exit_code == 1 and result.account_error is None


# -- an output folder that cannot be written --------------------------------------------


async def test_a_read_only_output_disk_is_found_before_anything_is_sent(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only mount: os.access may still say writable (and root may write anywhere
    # else), so only creating a file tells. Every file creation in batchveo.files fails
    # as a read-only file system fails it.
    import batchveo.files

    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(batchveo.files.os, "open", read_only)
    out = tmp_path / "videos"
    out.mkdir()
    async with fast_sim() as sim:
        with pytest.raises(ConfigError) as caught:
            await run_batch(store, sim, fast_config(out), [make_spec("a"), make_spec("b")])
        stats = sim.stats()
    assert str(caught.value) == f"--out {out}: cannot write there (Read-only file system)"
    assert stats["requests"]["submit"] == {}
    assert {j.state for j in await store.jobs()} == {S.PENDING}


async def test_an_output_folder_nobody_may_write_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # Through the real CLI, on a folder the kernel refuses files in even to root.
    from tests.test_files import immutable
    from tests.test_unattended import FAST, cli, manifest

    manifest(tmp_path / "night.yaml", 2)
    (tmp_path / "videos").mkdir()
    async with fast_sim() as sim:
        with immutable(tmp_path / "videos"):
            code, _, err = await cli(tmp_path, sim, "run", "night.yaml", "--out", "videos", *FAST)
        stats = sim.stats()
    assert code == 2, err
    assert (
        err.splitlines()[-1]
        == "batchveo: --out videos: cannot write there (Operation not permitted)"
    )
    assert "Traceback" not in err and stats["requests"]["submit"] == {}
    assert list((tmp_path / "videos").iterdir()) == []
