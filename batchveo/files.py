"""Video files on disk: a result is there whole, or not at all.

A download is written to ``DEST.<random>.part``; only a complete, checked file
is made durable and put in place: fsync the data, link it to ``DEST``, fsync
the folder so that the new name itself survives a power cut. Nothing ever
reads a ``.part`` file as a result, and a run cleans the leftovers of a dead one.

A video never lands outside ``--out``. ``--out`` itself may be a symbolic link
(the user chose it), but below it every folder is opened one name at a time from
the folder above, refusing links (``O_NOFOLLOW``), and the file is created,
linked and renamed relative to its own folder's descriptor: a link found on the
way, or planted while the video downloads, cannot send it elsewhere. A path that
meets a link is that one video's problem (``OutputUnusable``), as is a name too
long for the file system or a file standing where a folder must be: the caller
gives the video another name or fails that job, and the run goes on. Only errors
that say the disk itself is unusable (full, read-only, failing, ``--out`` not
writable) stop the run (``StopRun``). The folder a run holds, and its checks before
anything is submitted, are ``outfolder``'s (its names are re-exported here).

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
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from batchveo.errors import BatchveoError, OutputUnusable, StopRun
from batchveo.outfolder import (
    FOLDER_FLAGS,
    NEW_FILE_FLAGS,
    PART_SUFFIX,
    HeldFolder,
    absolute,
    check_output_folder,
    clean_partial_files,
    current_folder,
    output_folder,
    probe_writable,
)
from batchveo.store.groupcommit import GroupCommit

__all__ = [
    "PART_SUFFIX",
    "FileCommitter",
    "HeldFolder",
    "PartFile",
    "check_output_folder",
    "clean_partial_files",
    "output_folder",
    "probe_writable",
]

_MAX_NAME_TRIES = 1000
_SUBFOLDER_FLAGS = FOLDER_FLAGS | os.O_NOFOLLOW

ONE_FILE_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ELOOP, errno.EINVAL}
)
"""System errors about one file's name or place (too long, a file where a folder must be,
a link, a name this file system does not take): that video's problem, not the disk's."""
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
"""Refusals that concern one video in a folder below ``--out``, but the run in ``--out``."""


def _root_for(dest: Path, held: HeldFolder | None) -> tuple[int | None, Path, tuple[str, ...]]:
    """Where the walk to ``dest``'s folder starts: the held ``--out`` (its fd) if ``dest``
    is below it, else the nearest existing folder (opened as given); and the folder
    names below it, one by one.

    Without a held folder (a caller outside a run), the existing part of the path is
    the caller's choice and only the rest is walked.
    """
    folder = absolute(dest.parent)
    if held is not None and held.holds(folder):
        return held.fd, held.path, folder.relative_to(held.path).parts
    base = folder
    while not os.path.isdir(base) and base != base.parent:
        base = base.parent
    return None, base, folder.relative_to(base).parts


def _short(path: Path | str) -> str:
    """A path for a one-line message: a very deep one keeps its start and its end."""
    text = str(path)
    return text if len(text) <= 300 else f"{text[:80]}...{text[-200:]}"


def _refusal(exc: OSError, dest: Path, where: Path, *, in_root: bool) -> BatchveoError:
    """What a caller gets for a system error writing ``dest``, met at ``where``.

    ``in_root``: the refused call worked in ``--out`` itself, where "permission denied"
    means the whole output folder, not one video.
    """
    code = exc.errno
    if code in ONE_FILE_ERRNOS or (code in _DENIED_ERRNOS and not in_root):
        if code == errno.ELOOP:
            why = f"{_short(where)} is a symbolic link (videos are written only inside --out)"
        elif code in (errno.ENOTDIR, errno.EEXIST) and where != dest:
            why = f"{_short(where)} is a file, not a folder"
        elif code == errno.ENAMETOOLONG:
            why = "name too long for this file system"
        else:
            why = exc.strerror or str(exc)
        return OutputUnusable(f"cannot write {_short(dest)}: {why}")
    return StopRun(f"cannot write {_short(dest)}: {exc.strerror or exc}")


def _open_folder(dest: Path, held: HeldFolder | None) -> tuple[int, tuple[int, ...], bool]:
    """Open (making what is missing) the folder of ``dest``; never through a link below --out.

    Returns its fd, fds of the folders that got a new entry (a folder made in them: their
    fsync makes the new folders' own names durable), and whether it is ``--out`` itself.
    The caller closes the fds.
    """
    root_fd, base, names = _root_for(dest, held)
    path_max = _path_max(base if root_fd is None else root_fd)
    length = len(os.fsencode(os.path.abspath(dest))) + len(".12345678" + PART_SUFFIX)
    if length >= path_max:  # it could be made, folder by folder, but never opened by name
        raise OutputUnusable(
            f"cannot write {_short(dest)}: path too long for this system"
            f" (at most {path_max - 1} bytes)"
        )
    try:
        fd = os.open("." if root_fd is not None else base, FOLDER_FLAGS, dir_fd=root_fd)
    except OSError as exc:
        raise _refusal(exc, dest, base, in_root=True) from None
    grown: list[int] = []
    here = base
    try:
        for name in names:
            if name in ("", ".", "..") or "/" in name:
                raise OutputUnusable(f"cannot write {_short(dest)}: it would leave {base}")
            in_root = here == base
            here = here / name
            try:
                try:
                    child = os.open(name, _SUBFOLDER_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass  # made by a racer meanwhile, or a file: the open tells
                    else:
                        grown.append(os.dup(fd))
                    child = os.open(name, _SUBFOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.EEXIST) and _is_link(fd, name):
                    exc = OSError(errno.ELOOP, os.strerror(errno.ELOOP))  # Linux: ENOTDIR
                raise _refusal(exc, dest, here, in_root=in_root) from None
            os.close(fd)
            fd = child
    except BaseException:
        for f in (fd, *grown):
            os.close(f)
        raise
    return fd, tuple(grown), not names


def _is_link(folder_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _path_max(folder: int | Path) -> int:
    """The longest path this file system lets a program open by name (bytes, with a NUL)."""
    try:
        return os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 4096


class PartFile:
    """``DEST.<random>.part`` being written; it gets a final name only through ``commit``.

    Raises ``OutputUnusable`` when this video cannot be written where ``dest`` says
    (the caller may try another name), ``StopRun`` when the disk refuses.

    ``root`` is the held ``--out`` to walk from; without it, the folder held by the run
    this task belongs to (``outfolder.current_folder``), if ``dest`` is below it.
    """

    def __init__(self, dest: Path, root: HeldFolder | None = None):
        self.dest = dest
        # Unique: two downloads aiming at one name must not write into one file.
        self._part_name = f"{dest.name}.{secrets.token_hex(4)}{PART_SUFFIX}"
        self.part = dest.with_name(self._part_name)
        held = root if root is not None else current_folder()
        self._folder_fd, self._grown, in_root = _open_folder(dest, held)
        try:
            fd = os.open(self._part_name, NEW_FILE_FLAGS, 0o666, dir_fd=self._folder_fd)
        except OSError as exc:
            self._close_folders()
            raise _refusal(exc, dest, dest, in_root=in_root) from None
        self._file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise StopRun(f"cannot write {_short(self.part)}: {exc.strerror or exc}") from None

    def discard(self) -> None:
        """Give up: close and remove the partial file (before ``commit`` only)."""
        with contextlib.suppress(OSError):  # closing flushes, and the disk may be full
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._part_name, dir_fd=self._folder_fd)
        self._close_folders()

    def _close_folders(self) -> None:
        for fd in (self._folder_fd, *self._grown):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._folder_fd, self._grown = -1, ()

    async def commit(self, committer: FileCommitter, sha256: str) -> Path:
        """Make the file durable under its final name (returned).

        ``sha256`` is the file's content hash, to tell this video from a file in its way.
        Raises ``StopRun`` if the disk refuses, ``OutputUnusable`` if no name is free.
        """
        try:
            self._file.flush()  # where a full disk usually shows
        except OSError as exc:
            self.discard()
            raise StopRun(f"cannot write {_short(self.part)}: {exc.strerror or exc}") from None
        handover = _Handover(
            self._file, self._folder_fd, self._grown, self._part_name, self.dest, sha256
        )
        self._folder_fd, self._grown = -1, ()  # the committer owns (and closes) them now
        return await committer.commit(handover)


@dataclass(frozen=True)
class _Handover:
    file: BinaryIO
    folder_fd: int
    """The file's folder, opened when the download started: every name is made in it."""
    grown: tuple[int, ...]
    """Folders a new folder was made in for this file: their entries need an fsync too."""
    part_name: str
    dest: Path
    sha256: str

    @property
    def fds(self) -> tuple[int, ...]:
        return (self.folder_fd, *self.grown)


class FileCommitter:
    """fsync + rename + folder fsync for finished files, grouped per trip to a thread."""

    def __init__(self) -> None:
        self._group: GroupCommit[_Handover, Path] = GroupCommit(
            self._run, lock=asyncio.Lock(), max_batch=64
        )

    async def commit(self, item: _Handover) -> Path:
        """The file's final name, once durable; StopRun or OutputUnusable if not (the .part
        is gone then)."""
        return await self._group.submit(item)

    async def close(self) -> None:
        await self._group.drain()

    async def _run(self, items: Sequence[_Handover]) -> list[Path | BatchveoError]:
        return await asyncio.to_thread(_place_all, items)


def _place_all(items: Sequence[_Handover]) -> list[Path | BatchveoError]:
    """On a worker thread: each file's data, its name, then each folder once.

    One result per item: its final path, or the error its caller gets.
    """
    results: list[Path | BatchveoError] = []
    folders: dict[tuple[int, int], tuple[int, list[int]]] = {}
    try:
        for i, item in enumerate(items):
            try:
                try:
                    os.fsync(item.file.fileno())
                finally:
                    item.file.close()
                final = item.dest.with_name(
                    _place(item.folder_fd, item.part_name, item.dest.name, item.sha256)
                )
                for fd in item.fds:
                    st = os.fstat(fd)
                    folders.setdefault((st.st_dev, st.st_ino), (fd, []))[1].append(i)
            except (OSError, OutputUnusable) as exc:
                with contextlib.suppress(OSError):
                    os.unlink(item.part_name, dir_fd=item.folder_fd)
                results.append(_placing_error(exc, item.dest))
            else:
                results.append(final)
        for fd, members in folders.values():
            try:
                os.fsync(fd)
            except OSError as exc:
                for i in members:
                    results[i] = _placing_error(exc, items[i].dest)
    finally:
        for item in items:
            for fd in item.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
    return results


def _placing_error(exc: OSError | OutputUnusable, dest: Path) -> BatchveoError:
    if isinstance(exc, OutputUnusable):
        return exc
    return StopRun(f"cannot write {_short(dest)}: {exc.strerror or exc}")


def _place(folder_fd: int, part: str, dest: str, sha256: str) -> str:
    """Give ``part`` the name ``dest``, or the first free ``dest-N``; never over another video.

    Names are made in the folder ``folder_fd`` and never followed: a link in the way is
    kept like any other file that is not this video.
    """
    stem, suffix = os.path.splitext(dest)
    names = dict(src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    for n in range(1, _MAX_NAME_TRIES + 1):
        target = dest if n == 1 else f"{stem}-{n}{suffix}"
        try:
            # atomic: fails if the name is taken, even by a racer or a dangling link
            os.link(part, target, follow_symlinks=False, **names)
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system (FAT, some network shares)
            if not _exists(folder_fd, target):
                os.replace(part, target, **names)
                return target
        else:
            os.unlink(part, dir_fd=folder_fd)
            return target
        if _holds(folder_fd, target, sha256):
            os.replace(part, target, **names)  # the same video, left by a run that died
            return target
    raise OutputUnusable(f"cannot write {dest}: {_MAX_NAME_TRIES} files are already named so")


def _exists(folder_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _holds(folder_fd: int, name: str, sha256: str) -> bool:
    """Whether ``name`` is a file (not a link) with exactly these bytes (unreadable: not
    ours to touch)."""
    try:
        return _sha256_of(folder_fd, name) == sha256
    except OSError:
        return False


def _sha256_of(folder_fd: int, name: str) -> str | None:
    """The content hash of the regular file ``name`` in the folder; None if not one."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=folder_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = hashlib.sha256()
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
