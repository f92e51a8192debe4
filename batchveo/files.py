"""Video files on disk: a result is there whole, or not at all.

A download is written to ``DEST.<random>.part``; only a complete, checked file
is made durable and put in place: fsync the data, link it to ``DEST``, fsync
the folder so that the new name itself survives a power cut. Nothing ever
reads a ``.part`` file as a result, and a run cleans the leftovers of a dead one.

A video never replaces a different one. Two jobs may want the same name (one's
``output:`` template and another's id, names loaded on different nights, a new
database run into an old folder, ``Intro`` and ``intro`` on a file system that
ignores case): the name already taken keeps its video, and this one gets the
first free ``NAME-2.mp4``, ``NAME-3.mp4``... (the job records which). A file
there with the very same bytes is this video, from a run that died before it
could record it, and is simply replaced.

The durable step needs blocking system calls, so it runs on a worker thread.
Files finishing while one group is being made durable share the next trip to
the thread and one folder fsync (see ``groupcommit``): at hundreds of videos a
second, a thread hand-off and a folder fsync per file were a visible part of
the runner's CPU. Once a file is handed over, the committer owns it: it
either puts it in place or removes the ``.part``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from batchveo.errors import ConfigError, StopRun
from batchveo.groupcommit import GroupCommit

PART_SUFFIX = ".part"
_OUR_PARTS = re.compile(r"\.mp4(?:\.[0-9a-f]{8})?\.part$")
"""batchveo's own partial files: ``NAME.mp4.<8 hex>.part`` (``NAME.mp4.part`` once)."""
_MAX_NAME_TRIES = 1000


@contextmanager
def local_disk(path: Path) -> Iterator[None]:
    """A local file error (disk full, permissions) stops the run: no retry will fix it."""
    try:
        yield
    except OSError as exc:
        raise StopRun(f"cannot write {path}: {exc.strerror or exc}") from None


class PartFile:
    """``DEST.<random>.part`` being written; it gets a final name only through ``commit``."""

    def __init__(self, dest: Path):
        self.dest = dest
        # Unique: two downloads aiming at one name must not write into one file.
        self.part = dest.with_name(f"{dest.name}.{secrets.token_hex(4)}{PART_SUFFIX}")
        with local_disk(self.part):
            self.new_folders = _missing_folders(dest.parent)
            if self.new_folders:
                dest.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO = open(self.part, "wb")  # noqa: SIM115 - commit/discard close it

    def write(self, chunk: bytes) -> None:
        with local_disk(self.part):
            self._file.write(chunk)

    def discard(self) -> None:
        """Give up: close and remove the partial file (before ``commit`` only)."""
        with contextlib.suppress(OSError):  # closing flushes, and the disk may be full
            self._file.close()
        self.part.unlink(missing_ok=True)

    async def commit(self, committer: FileCommitter, sha256: str) -> Path:
        """Make the file durable under its final name (returned); StopRun if the disk refuses.

        ``sha256`` is the file's content hash, to tell this video from a file in its way.
        """
        try:
            self._file.flush()  # where a full disk usually shows
        except OSError as exc:
            self.discard()
            raise StopRun(f"cannot write {self.part}: {exc.strerror or exc}") from None
        handover = _Handover(self._file, self.part, self.dest, sha256, self.new_folders)
        with local_disk(self.dest):
            return await committer.commit(handover)


@dataclass(frozen=True)
class _Handover:
    file: BinaryIO
    part: Path
    dest: Path
    sha256: str
    new_folders: tuple[Path, ...]
    """Folders made for this file: their own entries need their parents fsynced too."""


class FileCommitter:
    """fsync + rename + folder fsync for finished files, grouped per trip to a thread."""

    def __init__(self) -> None:
        self._group: GroupCommit[_Handover, Path] = GroupCommit(
            self._run, lock=asyncio.Lock(), linger_s=0.0, max_batch=64
        )

    async def commit(self, item: _Handover) -> Path:
        """The file's final name, once durable; OSError if not (the .part is gone then)."""
        return await self._group.submit(item)

    async def close(self) -> None:
        await self._group.drain()

    async def _run(self, items: Sequence[_Handover]) -> list[Path | OSError]:
        return await asyncio.to_thread(_place_all, items)


def _place_all(items: Sequence[_Handover]) -> list[Path | OSError]:
    """On a worker thread: each file's data, its name, then each folder once.

    One result per item: its final path, or the error its caller gets.
    """
    results: list[Path | OSError] = []
    folders: dict[Path, list[int]] = {}
    for i, item in enumerate(items):
        try:
            try:
                os.fsync(item.file.fileno())
            finally:
                item.file.close()
            final = _place(item.part, item.dest, item.sha256)
        except OSError as exc:
            item.part.unlink(missing_ok=True)
            results.append(exc)
        else:
            results.append(final)
            for folder in (final.parent, *(f.parent for f in item.new_folders)):
                folders.setdefault(folder, []).append(i)
    for folder, members in folders.items():
        try:
            fsync_folder(folder)
        except OSError as exc:
            for i in members:
                results[i] = exc
    return results


def _place(part: Path, dest: Path, sha256: str) -> Path:
    """Give ``part`` the name ``dest``, or the first free ``dest-N``; never over another video."""
    for n in range(1, _MAX_NAME_TRIES + 1):
        target = dest if n == 1 else dest.with_name(f"{dest.stem}-{n}{dest.suffix}")
        try:
            os.link(part, target)  # atomic: fails if the name is taken, even by a racer
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system (FAT, some network shares)
            if not os.path.lexists(target):
                os.replace(part, target)
                return target
        else:
            os.unlink(part)
            return target
        if _holds(target, sha256):
            os.replace(part, target)  # the same video, left by a run that died: keep one
            return target
    raise FileExistsError(f"{_MAX_NAME_TRIES} files are already named like {dest.name}")


def _holds(path: Path, sha256: str) -> bool:
    """Whether ``path`` is a file with exactly these bytes (unreadable: not ours to touch)."""
    try:
        return path.is_file() and _sha256_of(path) == sha256
    except OSError:
        return False


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_folder(folder: Path) -> None:
    """Make the folder's entries (a rename into it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _missing_folders(folder: Path) -> tuple[Path, ...]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing: list[Path] = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return tuple(missing)


def clean_partial_files(out_dir: Path) -> int:
    """Remove batchveo's own ``.part`` leftovers of a run that died mid-download.

    Only ours: a browser's ``holiday.mkv.part`` in the same folder is none of our business.
    """
    if not out_dir.exists():
        return 0
    n = 0
    for part in out_dir.rglob("*" + PART_SUFFIX):
        if _OUR_PARTS.search(part.name) and part.is_file():
            part.unlink(missing_ok=True)
            n += 1
    return n


@contextmanager
def output_folder(out_dir: Path) -> Iterator[int | None]:
    """Hold the output folder for a run; yields the leftovers cleaned, or None.

    Runs from different databases may share one folder. A leftover ``.part`` is
    a dead run's only if no live run is writing there, so each run holds a shared
    lock on the folder itself (no lock file among the videos), and cleans only if
    it could take it exclusively first. The kernel drops the lock when a run dies.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(
            f"{out_dir}: not a usable output folder ({exc.strerror or exc})"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            cleaned = None  # another run is writing here: its .part files are alive
        else:
            cleaned = clean_partial_files(out_dir)
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield cleaned
    finally:
        os.close(fd)
