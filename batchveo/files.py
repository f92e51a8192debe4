"""Video files on disk: a result is there whole, or not at all.

A download is written to ``DEST.part``; only a complete, checked file is made
durable and renamed into place: fsync the data, ``rename`` over ``DEST``, fsync
the folder so that the rename itself survives a power cut. Nothing ever reads
a ``.part`` file as a result, and a run cleans the leftovers of a dead one.

The durable step needs blocking system calls, so it runs on a worker thread.
Files finishing while one group is being made durable share the next trip to
the thread and one folder fsync (see ``groupcommit``): at hundreds of videos a
second, a thread hand-off and a folder fsync per file were a visible part of
the runner's CPU. Once a file is handed over, the committer owns it: it
either renames it into place or removes the ``.part``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from batchveo.errors import StopRun
from batchveo.groupcommit import GroupCommit

PART_SUFFIX = ".part"


@contextmanager
def local_disk(path: Path) -> Iterator[None]:
    """A local file error (disk full, permissions) stops the run: no retry will fix it."""
    try:
        yield
    except OSError as exc:
        raise StopRun(f"cannot write {path}: {exc.strerror or exc}") from None


class PartFile:
    """``DEST.part`` being written; it becomes ``DEST`` only through ``commit``."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.part = dest.with_name(dest.name + PART_SUFFIX)
        with local_disk(self.part):
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO = open(self.part, "wb")  # noqa: SIM115 - commit/discard close it

    def write(self, chunk: bytes) -> None:
        with local_disk(self.part):
            self._file.write(chunk)

    def discard(self) -> None:
        """Give up: close and remove the partial file (before ``commit`` only)."""
        self._file.close()
        self.part.unlink(missing_ok=True)

    async def commit(self, committer: FileCommitter) -> None:
        """Make the file durable under its final name; StopRun if the disk refuses."""
        with local_disk(self.part):
            self._file.flush()
        with local_disk(self.dest):
            await committer.commit(_Handover(self._file, self.part, self.dest))


@dataclass(frozen=True)
class _Handover:
    file: BinaryIO
    part: Path
    dest: Path


class FileCommitter:
    """fsync + rename + folder fsync for finished files, grouped per trip to a thread."""

    def __init__(self) -> None:
        self._group: GroupCommit[_Handover, None] = GroupCommit(
            self._run, lock=asyncio.Lock(), linger_s=0.0, max_batch=64
        )

    async def commit(self, item: _Handover) -> None:
        """Return once ``item.dest`` is durable; raise OSError if not (the .part is gone)."""
        await self._group.submit(item)

    async def close(self) -> None:
        await self._group.drain()

    async def _run(self, items: Sequence[_Handover]) -> list[OSError | None]:
        return await asyncio.to_thread(_replace_all, items)


def _replace_all(items: Sequence[_Handover]) -> list[OSError | None]:
    """On a worker thread: each file's data, its rename, then each folder once.

    One result per item: None, or the error its caller gets.
    """
    errors: list[OSError | None] = []
    folders: dict[Path, list[int]] = {}
    for i, item in enumerate(items):
        try:
            try:
                os.fsync(item.file.fileno())
            finally:
                item.file.close()
            os.replace(item.part, item.dest)
        except OSError as exc:
            item.part.unlink(missing_ok=True)
            errors.append(exc)
        else:
            errors.append(None)
            folders.setdefault(item.dest.parent, []).append(i)
    for folder, members in folders.items():
        try:
            fsync_folder(folder)
        except OSError as exc:
            for i in members:
                errors[i] = exc
    return errors


def fsync_folder(folder: Path) -> None:
    """Make the folder's entries (a rename into it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_partial_files(out_dir: Path) -> int:
    """Remove ``*.part`` leftovers of a run that died mid-download; never results."""
    if not out_dir.exists():
        return 0
    n = 0
    for part in out_dir.rglob("*" + PART_SUFFIX):
        part.unlink(missing_ok=True)
        n += 1
    return n
