"""What many tests share: a valid spec, one fake clock, one wait, the database's states.

Import from here, not from ``conftest`` (pytest's advice); the benchmarks import from here
too, never the reverse.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import struct
import zlib
from collections.abc import Awaitable, Callable
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
    """A clock the test moves by hand (``clock.advance(s)``); nothing sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
