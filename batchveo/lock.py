"""One runner per database.

Two runs on one database would each poll and download the same operations and
fight over every row, so ``batchveo run`` takes an exclusive ``flock`` on
``DB.lock`` for its whole life. The kernel drops a flock when its process
dies, however it dies (``kill -9``, OOM, reboot), so a lock can never outlive
its owner: a lock file left behind is simply taken over. The file's content
(pid, start time) is only there to say who holds it.

Read-only commands (status, export, report) never take the lock: SQLite's WAL
lets them read while a run writes.

flock is advisory and local: a database on a network filesystem is not
protected across machines.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from batchveo.errors import BatchveoError, UserError


class Locked(BatchveoError):
    """Another live process holds the database's run lock."""

    def __init__(self, db: Path, holder: dict[str, object]):
        self.holder = holder
        started = holder.get("started_at")
        when = (
            datetime.fromtimestamp(float(started), UTC).strftime("%Y-%m-%d %H:%M:%SZ")  # type: ignore[arg-type]
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
                os.ftruncate(self.fd, 0)
            finally:
                os.close(self.fd)  # closing drops the flock
                self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def _read_holder(fd: int) -> dict[str, object] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def acquire(db: Path) -> RunLock:
    """Take the run lock of ``db`` or raise ``Locked`` naming the holder."""
    path = lock_path(db)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"{db}: cannot create its run lock {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd) or {}
        os.close(fd)
        raise Locked(db, holder) from None
    except BaseException:
        os.close(fd)
        raise
    previous = _read_holder(fd)
    me = {"pid": os.getpid(), "started_at": time.time(), "host": socket.gethostname()}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(me).encode())
    return RunLock(path, fd, previous)
