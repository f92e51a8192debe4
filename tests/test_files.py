"""Durable video files: grouped fsync + rename, and what a refusal leaves behind."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from batchveo.errors import StopRun
from batchveo.files import FileCommitter, PartFile, clean_partial_files, output_folder


async def write(dest: Path, data: bytes, committer: FileCommitter) -> Path:
    part = PartFile(dest)
    part.write(data)
    return await part.commit(committer, hashlib.sha256(data).hexdigest())


async def test_files_finishing_together_share_one_trip_and_land_whole(tmp_path: Path) -> None:
    committer = FileCommitter()
    await write(tmp_path / "first.mp4", b"first", committer)
    # Eight more while nothing else runs: the first takes the thread, the rest group.
    dests = [tmp_path / "sub" / f"v{i}.mp4" for i in range(8)]
    await asyncio.gather(*(write(d, d.name.encode() * 100, committer) for d in dests))
    await committer.close()
    assert committer._group.batches <= 3
    for d in dests:
        assert d.read_bytes() == d.name.encode() * 100
    assert (tmp_path / "first.mp4").read_bytes() == b"first"
    assert not list(tmp_path.rglob("*.part"))


async def test_a_video_never_replaces_a_different_one(tmp_path: Path) -> None:
    committer = FileCommitter()
    dest = tmp_path / "hero.mp4"
    dest.write_bytes(b"last night's paid video")
    (tmp_path / "hero-2.mp4").mkdir()  # whatever is in the way is kept too
    # Two jobs wanting the same name at once: each gets its own file.
    got = await asyncio.gather(write(dest, b"new one", committer), write(dest, b"other", committer))
    assert dest.read_bytes() == b"last night's paid video"
    assert sorted(p.name for p in got) == ["hero-3.mp4", "hero-4.mp4"]
    assert sorted(p.read_bytes() for p in got) == [b"new one", b"other"]
    # The same bytes again is the same video (a run that died before recording it).
    assert await write(dest, b"last night's paid video", committer) == dest
    await committer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hero-2.mp4", "hero-3.mp4", "hero-4.mp4", "hero.mp4",
    ]  # fmt: skip


async def test_a_refused_rename_stops_the_run_and_leaves_no_part_or_result(
    tmp_path: Path,
) -> None:
    committer = FileCommitter()
    doomed = PartFile(tmp_path / "gone.mp4")
    doomed.write(b"video")
    doomed.part.unlink()  # the disk lost it (a full or failing disk, another process)
    results = await asyncio.gather(
        doomed.commit(committer, "0" * 64), write(tmp_path / "fine.mp4", b"video", committer),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[0], StopRun) and "gone.mp4" in str(results[0])
    assert results[1] == tmp_path / "fine.mp4" and (tmp_path / "fine.mp4").read_bytes() == b"video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fine.mp4"]


async def test_a_discarded_download_leaves_nothing_and_leftovers_are_cleaned(
    tmp_path: Path,
) -> None:
    part = PartFile(tmp_path / "a.mp4")
    part.write(b"half")
    part.discard()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "b.mp4.part").write_bytes(b"dead run")
    (tmp_path / "x" / "c.mp4").write_bytes(b"result")
    assert clean_partial_files(tmp_path) == 1
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["c.mp4"]


async def test_a_folder_that_cannot_be_made_stops_the_run_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StopRun, match=r"cannot write .*file/v\.mp4\.\w+\.part"):
        PartFile(tmp_path / "file" / "v.mp4")


async def test_folders_made_for_a_video_are_made_durable_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchveo.files

    synced: list[Path] = []
    real = batchveo.files.fsync_folder
    monkeypatch.setattr(batchveo.files, "fsync_folder", lambda d: (synced.append(d), real(d)))
    committer = FileCommitter()
    # A power cut must not lose the new folders' own entries, and the video with them.
    await write(tmp_path / "out" / "night1" / "v.mp4", b"video", committer)
    assert set(synced) == {tmp_path / "out" / "night1", tmp_path / "out", tmp_path}
    synced.clear()
    await write(tmp_path / "out" / "night1" / "w.mp4", b"video 2", committer)
    assert synced == [tmp_path / "out" / "night1"]  # nothing new: just the one folder


async def test_a_full_disk_at_the_last_flush_leaves_no_part(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "v.mp4")
    part.write(b"video")

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    part._file.flush = full  # type: ignore[method-assign]
    with pytest.raises(StopRun, match="No space left on device"):
        await part.commit(FileCommitter(), "0" * 64)
    assert list(tmp_path.iterdir()) == [] and part._file.closed


def test_only_batchveo_leftovers_are_cleaned(tmp_path: Path) -> None:
    ours = [tmp_path / "a.mp4.0badc0de.part", tmp_path / "sub" / "b.mp4.part"]
    theirs = [tmp_path / "holiday.mkv.part", tmp_path / "notes.part", tmp_path / "c.mp4"]
    for p in ours + theirs:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    assert clean_partial_files(tmp_path) == 2
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(theirs)


def test_a_run_cleans_leftovers_only_when_no_other_run_writes_there(tmp_path: Path) -> None:
    out = tmp_path / "videos"
    with output_folder(out) as cleaned:
        assert cleaned == 0
        live = PartFile(out / "a.mp4")  # the first run is downloading this right now
        with output_folder(out) as second:  # a run from another database, same folder
            assert second is None and live.part.exists()
        live.discard()
    (out / "dead.mp4.1234abcd.part").write_bytes(b"left by a killed run")
    with output_folder(out) as cleaned:
        assert cleaned == 1 and list(out.iterdir()) == []


async def test_a_file_in_the_way_that_cannot_be_read_is_kept_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchveo.files

    (tmp_path / "v.mp4").write_bytes(b"someone else's, unreadable to us")

    def unreadable(path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(batchveo.files, "_sha256_of", unreadable)
    assert await write(tmp_path / "v.mp4", b"video", FileCommitter()) == tmp_path / "v-2.mp4"
    assert (tmp_path / "v.mp4").read_bytes() == b"someone else's, unreadable to us"
