"""Durable video files: grouped fsync + rename, and what a refusal leaves behind."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from batchveo.errors import ConfigError, OutputUnusable, StopRun
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


async def test_a_file_where_a_folder_must_be_is_that_videos_problem_not_the_disks(
    tmp_path: Path,
) -> None:
    (tmp_path / "file").write_text("not a folder")
    refused = r"cannot write .*/file/v\.mp4: .*/file is a file, not a folder$"
    with pytest.raises(OutputUnusable, match=refused):
        PartFile(tmp_path / "file" / "v.mp4")
    assert (tmp_path / "file").read_text() == "not a folder"


async def test_folders_made_for_a_video_are_made_durable_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchveo.files

    synced: list[tuple[int, int]] = []
    real = batchveo.files.os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            synced.append((st.st_dev, st.st_ino))
        real(fd)

    def ids(*folders: Path) -> list[tuple[int, int]]:
        return [(st.st_dev, st.st_ino) for st in map(os.stat, folders)]

    monkeypatch.setattr(batchveo.files.os, "fsync", fsync)
    committer = FileCommitter()
    # A power cut must not lose the new folders' own entries, and the video with them.
    await write(tmp_path / "out" / "night1" / "v.mp4", b"video", committer)
    assert sorted(synced) == sorted(ids(tmp_path / "out" / "night1", tmp_path / "out", tmp_path))
    synced.clear()
    await write(tmp_path / "out" / "night1" / "w.mp4", b"video 2", committer)
    assert synced == ids(tmp_path / "out" / "night1")  # nothing new: just the one folder


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
    with output_folder(out) as first:
        assert first.cleaned == 0
        live = PartFile(out / "a.mp4")  # the first run is downloading this right now
        with output_folder(out) as second:  # a run from another database, same folder
            assert second.cleaned is None and live.part.exists()
        live.discard()
    (out / "dead.mp4.1234abcd.part").write_bytes(b"left by a killed run")
    with output_folder(out) as third:
        assert third.cleaned == 1 and list(out.iterdir()) == []


async def test_each_run_writes_from_the_folder_it_holds_not_another_runs(
    tmp_path: Path,
) -> None:
    # Two runs in one process: the first holds --out, then the folder is moved away and
    # a new one made at the same path, which a second run holds. Each run's videos go
    # into the folder that run holds (by its open folder, not by the path's name).
    out, moved = tmp_path / "out", tmp_path / "moved"
    first_holds, second_holds = asyncio.Event(), asyncio.Event()
    committer = FileCommitter()

    async def first_run() -> Path:
        with output_folder(out) as held:
            first_holds.set()
            await second_holds.wait()
            part = PartFile(out / "a.mp4", root=held)  # explicitly from its folder
            part.write(b"a")
            await part.commit(committer, hashlib.sha256(b"a").hexdigest())
            return await write(out / "b.mp4", b"b", committer)  # its own, unasked

    async def second_run() -> Path:
        await first_holds.wait()
        out.rename(moved)
        with output_folder(out):
            second_holds.set()
            return await write(out / "c.mp4", b"c", committer)

    await asyncio.gather(first_run(), second_run())
    assert sorted(p.name for p in moved.iterdir()) == ["a.mp4", "b.mp4"]
    assert sorted(p.name for p in out.iterdir()) == ["c.mp4"]


async def test_a_file_in_the_way_that_cannot_be_read_is_kept_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchveo.files

    (tmp_path / "v.mp4").write_bytes(b"someone else's, unreadable to us")

    def unreadable(folder_fd: int, name: str) -> str:
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(batchveo.files, "_sha256_of", unreadable)
    assert await write(tmp_path / "v.mp4", b"video", FileCommitter()) == tmp_path / "v-2.mp4"
    assert (tmp_path / "v.mp4").read_bytes() == b"someone else's, unreadable to us"


@contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """A folder nobody may add to, not even root (``chattr +i``); skips where unsupported.

    The tests run as root, for whom a chmod 0o555 folder is still writable.
    """
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i refused here: {made.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


async def test_a_symlinked_folder_inside_out_is_refused_not_followed(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "shots").symlink_to("../elsewhere")
    with output_folder(out):
        with pytest.raises(OutputUnusable, match=r"out/shots is a symbolic link"):
            PartFile(out / "shots" / "v.mp4")
        with pytest.raises(OutputUnusable, match=r"out/shots is a symbolic link"):
            PartFile(out / "shots" / "deeper" / "v.mp4")
    assert list(elsewhere.iterdir()) == []


async def test_out_itself_may_be_a_symlink_the_user_chose(tmp_path: Path) -> None:
    (tmp_path / "disk").mkdir()
    out = tmp_path / "out"
    out.symlink_to("disk")
    with output_folder(out):
        assert await write(out / "night" / "v.mp4", b"video", FileCommitter()) == (
            out / "night" / "v.mp4"
        )
    assert (tmp_path / "disk" / "night" / "v.mp4").read_bytes() == b"video"


async def test_a_link_planted_after_the_folder_was_opened_cannot_redirect_the_video(
    tmp_path: Path,
) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    with output_folder(out):
        part = PartFile(out / "shots" / "v.mp4")
        part.write(b"video")
        # While it downloads, someone swaps the folder for a link to another place.
        (out / "shots").rename(out / "moved")
        (out / "shots").symlink_to("../elsewhere")
        await part.commit(FileCommitter(), hashlib.sha256(b"video").hexdigest())
    assert list(elsewhere.iterdir()) == []
    assert (out / "moved" / "v.mp4").read_bytes() == b"video"
    assert sorted(p.name for p in (out / "moved").iterdir()) == ["v.mp4"]


async def test_a_link_where_the_video_goes_is_kept_and_not_followed(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "v.mp4").write_bytes(b"video")  # the very same bytes, behind a link
    (out / "v.mp4").symlink_to("../elsewhere/v.mp4")
    with output_folder(out):
        got = await write(out / "v.mp4", b"video", FileCommitter())
    assert got == out / "v-2.mp4" and got.read_bytes() == b"video"
    assert (out / "v.mp4").is_symlink() and (elsewhere / "v.mp4").read_bytes() == b"video"


async def test_a_name_too_long_for_the_file_system_is_that_videos_problem(
    tmp_path: Path,
) -> None:
    with pytest.raises(OutputUnusable, match="name too long"):
        PartFile(tmp_path / ("x" * 300 + ".mp4"))
    assert list(tmp_path.iterdir()) == []


async def test_a_path_longer_than_the_system_allows_is_that_videos_problem(
    tmp_path: Path,
) -> None:
    deep = tmp_path.joinpath(*["d" * 200] * 25) / "v.mp4"  # over 4,096 bytes
    with output_folder(tmp_path), pytest.raises(OutputUnusable, match="path too long"):
        PartFile(deep)
    assert list(tmp_path.iterdir()) == []


async def test_a_folder_below_out_that_refuses_files_is_that_videos_problem(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    (out / "locked").mkdir(parents=True)
    with output_folder(out), immutable(out / "locked"):
        with pytest.raises(OutputUnusable, match=r"out/locked/v\.mp4"):
            PartFile(out / "locked" / "v.mp4")
        with pytest.raises(OutputUnusable, match=r"out/locked/new/v\.mp4"):
            PartFile(out / "locked" / "new" / "v.mp4")
        assert await write(out / "v.mp4", b"video", FileCommitter()) == out / "v.mp4"


async def test_out_itself_refusing_files_stops_the_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_folder(out), immutable(out):
        with pytest.raises(StopRun, match=r"cannot write .*out/v\.mp4"):
            PartFile(out / "v.mp4")
        with pytest.raises(StopRun, match=r"cannot write .*out/new/v\.mp4"):
            PartFile(out / "new" / "v.mp4")


def test_an_output_folder_that_refuses_files_is_refused_when_the_run_starts(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    refused = r"^--out .*out: cannot write there \(Operation not permitted\)$"
    with immutable(out), pytest.raises(ConfigError, match=refused), output_folder(out):
        pass
    assert list(out.iterdir()) == []


def test_a_read_only_output_disk_is_refused_when_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchveo.files

    real_open = os.open

    def read_only(path: str, flags: int, *args: object, **kw: object) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(batchveo.files.os, "open", read_only)
    refused = r"out: cannot write there \(Read-only file system\)$"
    with pytest.raises(ConfigError, match=refused), output_folder(tmp_path / "out"):
        pass
