"""Run-level Vertex AI tests' pieces: a simulator serving from a thread of its own, so the
real ``batchveo run`` can run in the test's main thread (its signal handlers need that
thread), and what the simulator was asked, with the time and answer of each request.

The simulator is the real one (``batchveo.sim.Simulator``, Vertex mode, real sockets); the
test only reaches into it through its loop (``SimThread.call``), so nothing of its state
is touched from two threads at once. ``SimThread.script`` runs a coroutine on that loop
during the run: what the service does at a chosen moment of the night (tokens revoked,
operations finished), found by looking at what the service saw, never by a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from batchveo.sim import SimConfig, Simulator

T = TypeVar("T")

PROJECT = "proj-e2e"
LOCATION = "us-central1"


@dataclass(frozen=True)
class Seen:
    """One request the simulator answered: when it arrived (``time.monotonic``, the
    clock asyncio runs on in every thread), what it was, and the answer's status."""

    at: float
    method: str
    path: str
    status: int
    retry_delay: str | None = None
    """A 429's ``RetryInfo.retryDelay`` (``"0.25s"``), if it gave one."""
    operation: str | None = None
    """The operation a poll asked for (its ``operationName``)."""

    @property
    def is_submit(self) -> bool:
        return self.path.endswith(":predictLongRunning")

    @property
    def is_poll(self) -> bool:
        return self.path.endswith(":fetchPredictOperation")


def _retry_delay(resp: web.StreamResponse) -> str | None:
    body = resp.body if isinstance(resp, web.Response) else None
    if resp.status != 429 or not isinstance(body, bytes):
        return None
    for detail in json.loads(body).get("error", {}).get("details", []):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return str(detail["retryDelay"])
    return None


class SimThread:
    """A ``Simulator`` on its own event loop in a daemon thread (see the module docstring)."""

    def __init__(self, config: SimConfig) -> None:
        self.sim = Simulator(config)
        self.seen: list[Seen] = []
        """Every request answered, in order (appended on the simulator's loop)."""
        self.sim.app.middlewares.append(self._record)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._scripts: list[Future[Any]] = []
        self._before: list[Callable[[web.Request], None]] = []
        self._after: list[Callable[[Seen], None]] = []

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> Any:
        at = time.monotonic()
        operation = None
        if request.path.endswith(":fetchPredictOperation"):
            with contextlib.suppress(ValueError, AttributeError):
                operation = json.loads(await request.read()).get("operationName")
        for before in self._before:
            before(request)  # before the service looks at it
        resp = await handler(request)
        seen = Seen(at, request.method, request.path, resp.status, _retry_delay(resp), operation)
        self.seen.append(seen)
        for after in self._after:
            after(seen)  # before the answer leaves: the client sees what the hook did
        return resp

    @property
    def url(self) -> str:
        return self.sim.url

    def start(self) -> SimThread:
        self._thread.start()
        self.call_async(self.sim.start())
        return self

    def stop(self) -> None:
        try:
            for script in self._scripts:
                script.result(timeout=30)  # a script that failed fails the test
        finally:
            self.call_async(self.sim.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def call_async(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        """Run ``coro`` on the simulator's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout_s)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the simulator's loop (its state is that loop's alone)."""

        async def go() -> T:
            return fn()

        return self.call_async(go())

    def stats(self) -> dict[str, Any]:
        return self.call(self.sim.stats)

    def make_key(self, path: Path, project: str = PROJECT) -> Path:
        """A service-account key of ``project`` the simulator wrote and trusts."""
        return self.call(lambda: self.sim.make_key(path, project=project))

    def script(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start ``coro`` on the simulator's loop now; ``stop`` waits for it (and raises
        what it raised)."""
        self._scripts.append(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def on_request(self, hook: Callable[[web.Request], None]) -> None:
        """Call ``hook`` on the simulator's loop with every request, before the service
        looks at it: what happens at an exact moment of the night."""
        self.call(lambda: self._before.append(hook))

    def on_answer(self, hook: Callable[[Seen], None]) -> None:
        """Call ``hook`` on the simulator's loop with every request answered, before the
        answer is sent (so the client sees what the hook did)."""
        self.call(lambda: self._after.append(hook))

    def requests(self) -> list[Seen]:
        return self.call(lambda: list(self.seen))


@contextmanager
def sim_thread(**overrides: Any) -> Iterator[SimThread]:
    """A started ``SimThread``: fast generations (0.01-0.05 s), a fixed seed."""
    config = SimConfig(generation_s=(0.01, 0.05), seed=7)
    thread = SimThread(config.with_changes(overrides) if overrides else config).start()
    try:
        yield thread
    finally:
        thread.stop()


async def until(cond: Callable[[], bool], timeout_s: float = 20, what: str = "") -> None:
    """On the simulator's loop: until ``cond()`` (what the service saw) is true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        if loop.time() >= end:
            raise AssertionError(f"the simulator never saw {what or 'it'}")
        await asyncio.sleep(0.005)


def video_tag(data: bytes) -> str:
    """What a simulator video's ``free`` box names (``<operation id>/sample_<n>``): the
    sample MP4, then a box of its own, so no two videos have the same bytes."""
    from tests.pipeline_helpers import sim_head

    head = sim_head(data)
    assert data.startswith(head), "not a video of the simulator's"
    tail = data[len(head) :]
    assert int.from_bytes(tail[:4], "big") == len(tail) and tail[4:8] == b"free"
    payload = tail[8:].decode()
    assert payload.startswith("batchveo-sim ")
    return payload[len("batchveo-sim ") :]


@contextmanager
def storage_emulator(bucket: str) -> Iterator[str]:
    """A real Cloud Storage emulator (gcp-storage-emulator) in process, holding ``bucket``;
    its base URL."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._api._httpd.server_address[1]}"
    finally:
        server.stop()
