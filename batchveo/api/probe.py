"""Was the submit sent? What aiohttp did with one request, seen from its own hooks.

A submit that failed on the network may be resent only when it provably never left:
there is no idempotency key, so one that did leave may have created a paid operation.

Each request carries a ``Probe``. An ``aiohttp.TraceConfig`` marks it when aiohttp begins
writing the request (``on_request_headers_sent``) and at each body write
(``on_request_chunk_sent``, which runs just before the bytes go to the transport, with no
await in between); a ``ClientRequest`` subclass tells it which transport the request goes
to. A failure is provably unsent only when it happened before any byte left: no
connection at all (``ClientConnectorError``: refused, DNS, TLS; ``ConnectionTimeoutError``),
a failure before writing began, or a pooled keep-alive connection already closing at the
first write (headers and JSON body go out in that one write, which aiohttp refuses on a
closing transport). Anything else after writing began (disconnect while waiting, read
timeout, reset) may have reached the server.

This leans on aiohttp's internals (the order of its hooks, ``request_class=``, the writer
refusing a closing transport, and since aiohttp 3.12 headers held back to leave with the
body in one write), not on its documented API: it is the code most likely to break on an
aiohttp upgrade. So it lives alone, ``tests/test_probe.py`` checks each case over real
sockets, and ``pyproject.toml`` bounds aiohttp to the versions those tests passed on. An
aiohttp that breaks an assumption errs on the safe side: a refused write it cannot
recognise is "may have reached the server", held for a human, never resent. Use
``probed_session`` for the session and ``probing`` around each request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.connector import Connection


@dataclass
class Probe:
    """What aiohttp did with one request, filled in by the trace hooks below."""

    transport: asyncio.BaseTransport | None = None
    started: bool = False  # the request began to be written (headers serialized)
    chunks: int = 0  # body writes attempted; the first carries the headers too
    first_write_blocked: bool = False  # that first write met a closing transport


_CURRENT_PROBE: ContextVar[Probe | None] = ContextVar("batchveo_probe", default=None)


class ProbedRequest(aiohttp.ClientRequest):
    """Tells the current probe which transport the request is about to be written to."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        probe = _CURRENT_PROBE.get()
        if probe is not None and conn.protocol is not None:
            probe.transport = conn.protocol.transport
        return await super().send(conn)


async def _on_headers(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if isinstance(probe := ctx.trace_request_ctx, Probe):
        probe.started = True


async def _on_chunk(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    # Runs just before aiohttp hands the chunk to the transport, with no await in
    # between: a transport closing now refuses the write and nothing leaves.
    if isinstance(probe := ctx.trace_request_ctx, Probe):
        probe.chunks += 1
        if probe.chunks == 1:
            t = probe.transport
            probe.first_write_blocked = t is not None and t.is_closing()


def trace_config() -> aiohttp.TraceConfig:
    """The hooks that fill in a request's probe (``trace_request_ctx``)."""
    tc = aiohttp.TraceConfig()
    tc.on_request_headers_sent.append(_on_headers)
    tc.on_request_chunk_sent.append(_on_chunk)
    return tc


def probed_session(
    *, trace_configs: Sequence[aiohttp.TraceConfig] = (), **options: Any
) -> aiohttp.ClientSession:
    """A ``ClientSession`` whose requests fill in their probes (``options`` as aiohttp's)."""
    return aiohttp.ClientSession(
        trace_configs=[trace_config(), *trace_configs],
        request_class=ProbedRequest,
        **options,
    )


@contextmanager
def probing() -> Iterator[Probe]:
    """A fresh probe for one request: pass it as ``trace_request_ctx`` too.

    The context variable lets ``ProbedRequest`` find the probe (aiohttp hands a request
    class no trace context); the request must be made inside this block.
    """
    probe = Probe()
    token = _CURRENT_PROBE.set(probe)
    try:
        yield probe
    finally:
        _CURRENT_PROBE.reset(token)


def never_connected(exc: BaseException) -> bool:
    """The connection itself failed (DNS, refused, TLS, connect timeout): the service is
    out of reach, not just this request."""
    return isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))


def provably_unsent(exc: BaseException, probe: Probe) -> bool:
    """True only when the failure happened before any byte of the request left."""
    if never_connected(exc):
        return True  # DNS, refused, TLS, connect timeout: there was no connection
    if not probe.started:
        return True  # failed before aiohttp began writing (e.g. no pool slot in time)
    # A pooled keep-alive connection the server had closed: the single write that
    # carries headers and body was refused by the closing transport.
    return probe.chunks == 1 and probe.first_write_blocked
