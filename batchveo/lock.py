"""One runner per database.

Two runs on one database would each poll and download the same operations and
fight over every row, so ``batchveo run`` takes an exclusive ``flock`` on
``DB.lock`` for its whole life. The kernel drops a flock when its process
dies, however it dies (``kill -9``, OOM, reboot), so a lock can never outlive
its owner: a lock file left behind is simply taken over. The file's content
(pid, start time, host) is only there to say who holds it.

The file at ``DB.lock`` always names its holder. A run does not write its
record into the file it locked (a kill between the flock and the write would
leave a held lock naming nobody, or the dead run before it): it writes the
record into a fresh ``DB.lock.tmp``, flocks that, and renames it over
``DB.lock``. The rename is atomic, so whoever opens the path finds either an
unlocked file or a locked one carrying its holder's pid. The lock on the file
being replaced is what makes the swap exclusive: only a process holding the
flock of the inode *currently at the path* may swap. An acquirer therefore
checks, once its flock succeeds, that the inode it locked is still the one at
the path (a swap may have replaced it meanwhile) and starts again if not. A
contender that finds a locked file not naming a live process has met a swap
in its microseconds: it looks again, briefly, so that ``Locked`` names the
holder. Nothing here ever takes a lock just to look: ``holder`` reads the
file, so a monitor cannot make a starting run fail.

A clean exit empties the file: a file that names a pid was left by a run that
died, and the next run says it took over from it.

Read-only commands (status, export, report) never take the lock: SQLite's WAL
lets them read while a run writes.

flock is advisory and local: a database on a network filesystem is not
protected across machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from batchveo.errors import BatchveoError, UserError

SWAP_WAIT_S = 1.0
"""How long a contender keeps looking at a locked file that names no live process (its
holder is between its flock and its rename, microseconds) before reporting it as held."""
SWAP_RETRY_S = 0.001
"""The pause between two looks of such a contender."""
MAX_LOCK_ATTEMPTS = 1000
"""Starts-over (the file locked was replaced or emptied meanwhile) before giving up: a
bound against pathological churn, never reached by two or three runs racing."""


class Locked(BatchveoError):
    """Another live process holds the database's run lock."""

    def __init__(self, db: Path, holder: dict[str, object]):
        self.holder = holder
        started = holder.get("started_at")
        when = (
            datetime.fromtimestamp(float(started), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            if isinstance(started, int | float)
            else "at an unknown time"
        )
        pid = holder.get("pid", "?")
        super().__init__(f"another run (pid {pid}, started {when}) holds {db}")


@dataclass
class RunLock:
    path: Path
    fd: int
    previous: dict[str, object] | None
    """What a lock file left by a dead run said (None if there was none)."""

    def release(self) -> None:
        if self.fd >= 0:
            try:
                os.ftruncate(self.fd, 0)  # empty: nobody died holding it
            finally:
                os.close(self.fd)  # closing drops the flock
                self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def _parse(raw: bytes) -> dict[str, object] | None:
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _read_holder(fd: int) -> dict[str, object] | None:
    return _parse(os.pread(fd, 4096, 0))


def holder(db: Path) -> dict[str, object] | None:
    """What the lock file of ``db`` says, read without locking anything (None: no file,
    or an empty one). The pid may be a dead run's: see ``is_alive``."""
    try:
        return _parse(lock_path(db).read_bytes()[:4096])
    except OSError:
        return None


def is_alive(record: dict[str, object] | None) -> bool:
    """Whether the process a lock record names still runs (on another host: assumed)."""
    if not record:
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    host = record.get("host")
    if isinstance(host, str) and host and host != socket.gethostname():
        return True  # another machine's pid cannot be checked from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _is_at(fd: int, path: Path) -> bool:
    """Whether the file open as ``fd`` is still the one at ``path``."""
    st = os.fstat(fd)
    try:
        at = os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (at.st_dev, at.st_ino)


def _pause() -> None:
    time.sleep(SWAP_RETRY_S)


def _install(path: Path, record: dict[str, object]) -> int | None:
    """Our record in a fresh file, locked, then renamed over ``path``: the descriptor
    holding the lock from now on. None if the fresh file is locked (cannot happen while
    we hold the lock of the file at ``path``; the caller starts over)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.write(fd, json.dumps(record).encode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


def _open(db: Path, path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"{db}: cannot create its run lock {path}: {e.strerror or e}") from None


def acquire(db: Path) -> RunLock:
    """Take the run lock of ``db`` or raise ``Locked`` naming the holder."""
    path = lock_path(db)
    patience_ends = time.monotonic() + SWAP_WAIT_S
    seen: dict[str, object] = {}
    for _ in range(MAX_LOCK_ATTEMPTS):
        fd = _open(db, path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                seen = _read_holder(fd) or {}
                if not _is_at(fd, path):
                    continue  # replaced while we looked: look at the new one
                if is_alive(seen) or time.monotonic() >= patience_ends:
                    raise Locked(db, seen) from None
                _pause()  # a swap in progress: it will name its holder in a moment
                continue
            if not _is_at(fd, path):
                continue  # we locked a file already replaced: start again
            previous = _read_holder(fd)
            me: dict[str, object] = {
                "pid": os.getpid(),
                "started_at": time.time(),
                "host": socket.gethostname(),
            }
            held = _install(path, me)
            if held is not None:
                return RunLock(path, held, previous)
        finally:
            os.close(fd)  # the replaced file's lock no longer guards anything
    raise Locked(db, seen)
