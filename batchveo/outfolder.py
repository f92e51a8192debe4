"""The ``--out`` folder of a run: checked before the first paid submit, held while it runs.

A run checks that ``--out`` takes a file before it submits anything (``output_folder``;
``batchveo run`` asks even before loading: ``check_output_folder``), so a read-only disk
is one line and exit 2, not a failure at the first paid video.

While a run holds the folder (``HeldFolder``), every video below it is written from that
very open folder (see ``files.PartFile``): a link swapped in for ``--out``'s own path
meanwhile changes nothing. The run passes the folder to ``PartFile`` explicitly where it
can; a ``PartFile(dest)`` made by one of the run's own tasks without it (the api
client's download, today) finds it through a context variable that only the tasks of
that run see, never another run's folder in the same process.

A dead run's ``.part`` leftovers (videos, poster frames) are cleaned when a run starts,
but only batchveo's own, and only if no live run is writing there (see ``output_folder``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from batchveo.errors import ConfigError

PART_SUFFIX = ".part"
OUR_PARTS = re.compile(r"\.mp4(?:\.[0-9a-f]{8})?\.part$|\.jpg\.[0-9a-f]{8}\.part$")
"""batchveo's own partial files: ``NAME.mp4.<8 hex>.part`` (``NAME.mp4.part`` once), and
``NAME.jpg.<8 hex>.part``, a poster frame being written (``posters``)."""
_PROBE_PREFIX = ".batchveo-probe-"

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class HeldFolder:
    """An output folder a run holds open: videos below it are written from ``fd``."""

    path: Path
    """Absolute, as given (``--out`` itself may be a link the user chose)."""
    fd: int
    cleaned: int | None
    """The dead runs' ``.part`` files removed when it was taken; None if another live
    run writes there too (its ``.part`` files are alive)."""

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` (absolute) is this folder or below it, by name."""
        return folder == self.path or self.path in folder.parents


_current: ContextVar[HeldFolder | None] = ContextVar("batchveo_out_folder", default=None)


def current_folder() -> HeldFolder | None:
    """The folder held by the run this task belongs to (None outside a run)."""
    return _current.get()


def absolute(path: Path) -> Path:
    """``path`` from the root, with any ``..`` left in (to be refused below ``--out``)."""
    return path if path.is_absolute() else Path.cwd() / path


def clean_partial_files(out_dir: Path) -> int:
    """Remove batchveo's own ``.part`` leftovers of a run that died mid-download.

    Only ours: a browser's ``holiday.mkv.part`` in the same folder is none of our business.
    """
    if not out_dir.exists():
        return 0
    n = 0
    for part in out_dir.rglob("*" + PART_SUFFIX):
        if OUR_PARTS.search(part.name) and part.is_file():
            part.unlink(missing_ok=True)
            n += 1
    return n


def check_output_folder(out_dir: Path) -> None:
    """ConfigError unless ``out_dir`` is (or can be made) a folder that takes a file.

    ``batchveo run`` calls it before it loads anything, so a read-only ``--out`` is one
    line and exit 2 with the database untouched; ``output_folder`` checks again when the
    run starts (the disk may have changed in between).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir, FOLDER_FLAGS)
    except OSError as exc:
        raise ConfigError(
            f"{out_dir}: not a usable output folder ({exc.strerror or exc})"
        ) from None
    try:
        probe_writable(fd, out_dir)
    finally:
        os.close(fd)


@contextmanager
def output_folder(out_dir: Path) -> Iterator[HeldFolder]:
    """Hold the output folder for a run (the run's own tasks see it: ``current_folder``).

    Runs from different databases may share one folder. A leftover ``.part`` is
    a dead run's only if no live run is writing there, so each run holds a shared
    lock on the folder itself (no lock file among the videos), and cleans only if
    it could take it exclusively first. The kernel drops the lock when a run dies.

    The folder is checked to take a file first (ConfigError if not), and while it is
    held, every video below it is written from this very open folder (see ``PartFile``).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir, FOLDER_FLAGS)
    except OSError as exc:
        raise ConfigError(
            f"{out_dir}: not a usable output folder ({exc.strerror or exc})"
        ) from None
    try:
        probe_writable(fd, out_dir)
        cleaned: int | None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            cleaned = None  # another run is writing here: its .part files are alive
        else:
            cleaned = clean_partial_files(out_dir)
        fcntl.flock(fd, fcntl.LOCK_SH)
        held = HeldFolder(absolute(out_dir), fd, cleaned)
        token = _current.set(held)  # downloads walk from this very folder (``PartFile``)
        try:
            yield held
        finally:
            _current.reset(token)
    finally:
        os.close(fd)


def probe_writable(folder_fd: int, out_dir: Path) -> None:
    """ConfigError unless a file can be made in ``--out``: a read-only disk or folder is
    found before the first paid submit, not at the first video. Only making a file tells:
    ``os.access`` predicts, and network file systems (root-squashed NFS, SMB) or security
    modules may still refuse."""
    name = f"{_PROBE_PREFIX}{secrets.token_hex(4)}"
    try:
        os.close(os.open(name, NEW_FILE_FLAGS, 0o600, dir_fd=folder_fd))
    except OSError as exc:
        raise ConfigError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    with contextlib.suppress(OSError):  # made, so writable: that was the question
        os.unlink(name, dir_fd=folder_fd)
