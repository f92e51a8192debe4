"""What many tests share: a valid spec, one fake clock, one wait, the database's states.

Import from here, not from ``conftest`` (pytest's advice); the benchmarks import from here
too, never the reverse.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import sqlite3
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from batchveo.spec import JobSpec


def make_spec(job_id: str, prompt: str | None = None, **kw: Any) -> JobSpec:
    """A valid text-to-video spec, for tests that do not care about manifests."""
    params = kw.pop("params", {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 8})
    return JobSpec(
        id=job_id,
        batch=kw.pop("batch", "b1"),
        prompt=prompt if prompt is not None else f"a prompt for {job_id}",
        model=kw.pop("model", "veo-3.1-generate-preview"),
        params=params,
        source=kw.pop("source", f"jobs.yaml:{job_id}"),
        **kw,
    )


class FakeClock:
    """A clock the test moves by hand (``clock.advance(s)``); nothing sleeps.

    It also rings (``batchveo.clock.Alarms``): what a run waits for until a time is rung
    when the test moves the clock past it, so a test owns every due time of a run.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._alarms: list[tuple[float, int, FakeAlarm]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._ring_due()

    def call_at(self, when_s: float, callback: Callable[[], object]) -> FakeAlarm:
        """Ring ``callback`` once the clock reaches ``when_s`` (due already: on the loop's
        next turn, never from inside this call)."""
        alarm = FakeAlarm(callback)
        heapq.heappush(self._alarms, (when_s, next(self._seq), alarm))
        if when_s <= self.now:
            asyncio.get_running_loop().call_soon(self._ring_due)
        return alarm

    def next_alarm_s(self) -> float | None:
        """When the next alarm is due (None if none is set)."""
        while self._alarms and self._alarms[0][2].cancelled:
            heapq.heappop(self._alarms)
        return self._alarms[0][0] if self._alarms else None

    def advance_to_next_alarm(self) -> float:
        """Move the clock to the next alarm and ring it; the time it rang at."""
        due = self.next_alarm_s()
        assert due is not None, "nothing is waiting for the clock"
        self.advance(max(0.0, due - self.now))
        return self.now

    def _ring_due(self) -> None:
        while self._alarms and self._alarms[0][0] <= self.now:
            _, _, alarm = heapq.heappop(self._alarms)
            alarm.ring()


class FakeAlarm:
    """One pending ring of a ``FakeClock``."""

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback: Callable[[], object] | None = callback

    @property
    def cancelled(self) -> bool:
        return self._callback is None

    def cancel(self) -> None:
        self._callback = None

    def ring(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


async def wait_until(
    cond: Callable[[], bool | Awaitable[bool]], timeout_s: float = 20, what: str = ""
) -> None:
    """Until ``cond()`` (plain or async) is true; AssertionError after ``timeout_s``.

    For waiting on another *process* (a run under test); in-process tests own their
    clocks instead.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        result = cond()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= end:
            raise AssertionError(f"condition not reached{': ' + what if what else ''}")
        await asyncio.sleep(0.005)


def without_posters(names: Iterable[str]) -> list[str]:
    """File names of a folder of videos, sorted, less the poster frame beside each video
    (``NAME.jpg`` beside ``NAME.mp4``: ``batchveo.posters``; tests/test_posters.py checks them)."""
    listed = set(names)
    return sorted(
        n for n in listed if not (n.endswith(".jpg") and n[: -len(".jpg")] + ".mp4" in listed)
    )


def db_states(db: Path) -> dict[str, str]:
    """``{job id: state}`` read straight from a database file (another process's)."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return dict(conn.execute("SELECT id, state FROM jobs").fetchall())
    except sqlite3.OperationalError:
        return {}  # schema not created yet


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid, solid-colour 8-bit RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )
