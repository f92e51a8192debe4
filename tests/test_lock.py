"""The run lock: one run per database, and the lock file always names its holder."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from batchveo import lock

DEAD_PID = 2**22 + 12345
"""Above Linux's largest pid (``pid_max`` is at most 2**22): no such process."""


def inode(path: Path) -> int:
    return os.stat(path).st_ino


def test_the_held_lock_file_names_its_holder_from_the_moment_it_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill right after the flock must not leave a held lock naming nobody."""
    db = tmp_path / "jobs.db"
    path = lock.lock_path(db)
    path.write_text(json.dumps({"pid": DEAD_PID, "started_at": 1.0}))  # a run that died
    seen: list[tuple[int, bool, bytes]] = []  # (inode locked, at the path then, its content)
    real_flock = fcntl.flock

    def spy(fd: int, op: int) -> None:
        real_flock(fd, op)
        if op & fcntl.LOCK_EX:
            ino = os.fstat(fd).st_ino
            seen.append((ino, path.exists() and inode(path) == ino, os.pread(fd, 4096, 0)))

    monkeypatch.setattr(fcntl, "flock", spy)
    with lock.acquire(db) as held:
        mine = os.fstat(held.fd).st_ino
        assert inode(path) == mine and json.loads(path.read_text())["pid"] == os.getpid()
        assert held.previous == {"pid": DEAD_PID, "started_at": 1.0}
    moments = [(at, content) for ino, at, content in seen if ino == mine]
    assert moments, "the held file was never seen locked"
    for at_path, content in moments:
        # Whenever the file this run keeps locked is at the path, it says who holds it.
        assert not at_path or json.loads(content)["pid"] == os.getpid()


def test_a_second_acquirer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    refused = rf"another run \(pid {os.getpid()}, started 20"
    with lock.acquire(db), pytest.raises(lock.Locked, match=refused):
        lock.acquire(db)
    with lock.acquire(db) as again:  # released: free again, and nobody died
        assert again.previous is None


def test_a_lock_file_left_by_a_dead_run_is_taken_over_and_named(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    record = {"pid": DEAD_PID, "started_at": 1.0, "host": "elsewhere"}
    lock.lock_path(db).write_text(json.dumps(record))
    assert lock.holder(db) == record
    with lock.acquire(db) as held:
        assert held.previous == record
        assert (lock.holder(db) or {}).get("pid") == os.getpid()
    assert lock.holder(db) is None  # a clean exit names nobody


def test_an_acquirer_that_locked_a_file_replaced_meanwhile_starts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B opened the lock file just before A swapped in its own: B's lock on the old file
    guards nothing, so B must look again and find A."""
    db = tmp_path / "jobs.db"
    path = lock.lock_path(db)
    path.write_text("")
    stale = os.open(path, os.O_RDWR)  # B's open, before A's swap
    a = lock.acquire(db)
    real_open = os.open
    handed: list[int] = []

    def open_stale_first(p: Any, flags: int, mode: int = 0o777) -> int:
        if Path(p) == path and not handed:
            handed.append(stale)
            return stale
        return real_open(p, flags, mode)

    monkeypatch.setattr(os, "open", open_stale_first)
    try:
        with pytest.raises(lock.Locked) as refused:
            lock.acquire(db)
        assert handed == [stale]  # B did lock the stale file first, then looked again
        assert refused.value.holder["pid"] == os.getpid()
    finally:
        a.release()


def test_a_contender_meeting_a_swap_names_the_new_holder_not_the_dead_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holds the old file's lock and has not renamed its own over it yet: B, trying now,
    must not report the dead run the old file names."""
    db = tmp_path / "jobs.db"
    path = lock.lock_path(db)
    path.write_text(json.dumps({"pid": DEAD_PID, "started_at": 1.0}))
    b_waits, a_swapped = threading.Event(), threading.Event()
    outcome: list[BaseException] = []

    def contender() -> None:
        try:
            lock.acquire(db)
        except BaseException as e:
            outcome.append(e)

    real_replace, real_pause = os.replace, lock._pause

    def replace_once_b_waits(src: Any, dst: Any) -> None:
        if Path(dst) == path and not b_waits.is_set():
            thread.start()
            assert b_waits.wait(10), "B never met the swap"
        real_replace(src, dst)
        a_swapped.set()

    def pause() -> None:
        b_waits.set()
        assert a_swapped.wait(10)
        real_pause()

    thread = threading.Thread(target=contender)
    monkeypatch.setattr(os, "replace", replace_once_b_waits)
    monkeypatch.setattr(lock, "SWAP_WAIT_S", 60.0)  # B's patience must not run out first
    monkeypatch.setattr(lock, "_pause", pause)
    with lock.acquire(db):
        thread.join(10)
    [refused] = outcome
    assert isinstance(refused, lock.Locked) and refused.holder["pid"] == os.getpid()


def test_is_alive_checks_the_pid_on_this_host_only() -> None:
    import socket

    here = socket.gethostname()
    assert lock.is_alive({"pid": os.getpid(), "host": here})
    assert not lock.is_alive({"pid": DEAD_PID, "host": here})
    assert lock.is_alive({"pid": DEAD_PID, "host": "another-machine"})  # cannot tell: held
    assert not lock.is_alive({}) and not lock.is_alive(None)
