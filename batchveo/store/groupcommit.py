"""Group commit: many coroutines' small writes, one trip to the database thread.

Why this exists: every aiosqlite call is a hand-off to its thread and back (a
queue put, a thread wake-up, the GIL changing hands, ``call_soon_threadsafe``,
a loop wake-up), and with ``synchronous=FULL`` every commit is an fsync. At a
few hundred jobs per second those, not SQLite, would be most of the runner's
CPU: a job makes four or five writes. Here the writers waiting at the same
moment share one statement instead.

The promise to each caller is unchanged: ``await group.submit(request)``
returns only once the request's statement is committed (or raises what it
raised), so "commit the state before acting on it" still holds line by line.

Timing: a request arriving while nothing is being written is written at once
(a quiet run waits for nothing); requests arriving while a batch runs, or while
another statement holds the store's lock, wait for it to end and then share the
next batch. The busier the run, the bigger the batches, with no timer.

Cancellation: a caller cancelled before its request is taken is dropped when
``drop_cancelled`` (a claim nobody will send must not be made); otherwise the
request is still written (a transition records what already happened in the
world). A caller cancelled while its batch runs, or between getting its result
and resuming, never uses it: the result goes to ``on_abandoned`` (a claimed job
is handed back). A flush task cancelled mid-batch finishes the batch first: its
statement runs on in the database thread anyway, and its callers must learn how
it ended.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")


class GroupCommit(Generic[Req, Res]):
    """Coalesce requests into batches run by ``run`` under ``lock``, one batch at a time.

    ``run`` gets the batch's requests and returns one result per request, in order:
    a value, or the exception that request's caller raises.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Req]], Awaitable[Sequence[Res | BaseException]]],
        *,
        lock: asyncio.Lock,
        max_batch: int = 256,
        key: Callable[[Req], Hashable] | None = None,
        drop_cancelled: bool = False,
        on_abandoned: Callable[[Sequence[Res]], Awaitable[None]] | None = None,
    ):
        self._run = run
        self._lock = lock
        self._max_batch = max_batch
        self._key = key
        """Requests of one key never share a batch: the later waits for the next one."""
        self._drop_cancelled = drop_cancelled
        self._on_abandoned = on_abandoned
        """Told, under the lock, the results no caller will use."""
        self._queue: deque[tuple[Req, asyncio.Future[Res]]] = deque()
        self._late: list[Res] = []
        """Results whose caller was cancelled between getting them and resuming."""
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        """Batches run so far (for the benchmark's counters and the tests)."""

    async def submit(self, request: Req) -> Res:
        """Queue ``request``; return its result once its batch is committed."""
        fut: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._queue.append((request, fut))
        self._schedule()
        try:
            return await fut
        except asyncio.CancelledError:
            # Cancelled after the result was set but before this coroutine resumed:
            # the caller will never use it, so it is handed back like any other.
            delivered = fut.done() and not fut.cancelled() and fut.exception() is None
            if delivered and self._on_abandoned is not None:
                self._late.append(fut.result())
                self._schedule()
            raise

    @property
    def busy(self) -> bool:
        """Something is queued or being written."""
        return self._has_work() or self._task is not None

    def _has_work(self) -> bool:
        return bool(self._queue or self._late)

    async def drain(self) -> None:
        """Wait until every queued request is written (before closing the database)."""
        while self.busy:
            self._schedule()
            task = self._task
            if task is None or task.done():
                await asyncio.sleep(0)  # its done-callback is queued: let it run
            else:
                await asyncio.shield(task)

    def _schedule(self) -> None:
        if self._task is not None or not self._has_work():
            return  # a flush is running: it picks this request up, or the next one does
        task = asyncio.get_running_loop().create_task(self._flush())
        self._task = task
        # Not in the coroutine's `finally`: a task cancelled before it ever ran has none.
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        self._schedule()

    async def _flush(self) -> None:
        async with self._lock:
            work = asyncio.ensure_future(self._flush_locked())
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                # Never cut a batch in half: its statement runs on in the database
                # thread anyway, and its callers must learn how it ended.
                await work
                raise

    async def _flush_locked(self) -> None:
        late, self._late = self._late, []
        if late and self._on_abandoned is not None:
            await self._on_abandoned(late)
        batch = self._take()
        if batch:
            self.batches += 1
            await self._run_batch(batch)

    def _take(self) -> list[tuple[Req, asyncio.Future[Res]]]:
        """Up to ``max_batch`` requests in arrival order; a key seen twice waits its turn."""
        batch: list[tuple[Req, asyncio.Future[Res]]] = []
        later: list[tuple[Req, asyncio.Future[Res]]] = []
        keys: set[Hashable] = set()
        while self._queue and len(batch) < self._max_batch:
            req, fut = self._queue.popleft()
            if fut.cancelled() and self._drop_cancelled:
                continue
            if self._key is not None:
                k = self._key(req)
                if k in keys:
                    later.append((req, fut))
                    continue
                keys.add(k)
            batch.append((req, fut))
        self._queue.extendleft(reversed(later))
        return batch

    async def _run_batch(self, batch: list[tuple[Req, asyncio.Future[Res]]]) -> None:
        try:
            results = await self._run([req for req, _ in batch])
        except BaseException as exc:
            for _, fut in batch:
                if fut.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        abandoned: list[Res] = []
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():  # the caller was cancelled meanwhile: nobody is listening
                if not isinstance(result, BaseException):
                    abandoned.append(result)
            elif isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
        if abandoned and self._on_abandoned is not None:
            await self._on_abandoned(abandoned)
