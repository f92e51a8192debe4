"""The probe (``batchveo.api.probe``) against real sockets: was the request sent or not?

The probe leans on aiohttp's internals, so these tests pin down each assumption it makes,
with a plain asyncio server that records every request it receives in full: that is the
ground truth a probe's verdict is checked against. If an aiohttp upgrade breaks one of them,
it fails here, by name, before a possibly-paid submit is resent.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from batchveo.api import probe
from batchveo.api.probe import Probe, never_connected, probed_session, probing, provably_unsent

BODY = json.dumps({"instances": [{"prompt": "a lighthouse at dawn"}]}).encode()


@dataclass
class Recorder:
    """A keep-alive HTTP/1.1 server that records each request it reads whole.

    ``answer``: reply 200 and keep the connection; otherwise read the request and close
    without a word (what a crash or a proxy timeout looks like to the client).
    """

    answer: bool = True
    received: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                self.received.append(await reader.readexactly(length))
                if not self.answer:
                    break
                reply = b'{"name": "operations/1"}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed: the end of this connection
        finally:
            writer.close()
            self.closed.set()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@asynccontextmanager
async def recorder(answer: bool = True) -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder(answer=answer)
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield rec, f"http://127.0.0.1:{port}/v1beta/models/m:predictLongRunning"


async def post(session: aiohttp.ClientSession, url: str) -> tuple[Probe, BaseException | None]:
    """POST ``BODY`` as the client does (probe set, JSON body); what the probe saw, and the
    exception if the request failed."""
    with probing() as seen:
        try:
            async with session.post(
                url, data=BODY, headers={"Content-Type": "application/json"}, trace_request_ctx=seen
            ) as resp:
                await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return seen, exc
    return seen, None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_sent_request_is_seen_whole_in_one_write() -> None:
    """The assumption behind the closing-connection rule: a submit's headers and its JSON
    body leave in one write, the one the chunk hook sees first."""
    async with recorder() as (rec, url), probed_session() as session:
        seen, exc = await post(session, url)
    assert exc is None and rec.received == [BODY]
    assert seen.started and seen.chunks == 1 and not seen.first_write_blocked
    assert seen.transport is not None  # ProbedRequest told the probe where it went


async def test_a_request_refused_on_a_closing_keep_alive_connection_is_provably_unsent() -> None:
    """The pooled connection is closing when the request is about to be written: aiohttp
    refuses the write, nothing reaches the server, and the probe says so."""
    reused: list[bool] = []

    async def on_reuse(session: Any, ctx: SimpleNamespace, params: Any) -> None:
        reused.append(True)

    async def close_reused(session: Any, ctx: SimpleNamespace, params: Any) -> None:
        # The window of the race: the transport starts closing after the connection was
        # taken from the pool and before the first byte is written.
        seen = ctx.trace_request_ctx
        if reused and isinstance(seen, Probe) and seen.transport is not None:
            seen.transport.close()

    hooks = aiohttp.TraceConfig()
    hooks.on_connection_reuseconn.append(on_reuse)
    hooks.on_request_headers_sent.append(close_reused)
    async with recorder() as (rec, url), probed_session(trace_configs=[hooks]) as session:
        _, exc = await post(session, url)
        assert exc is None and not reused
        second, exc = await post(session, url)
        assert reused == [True], "the second request did not reuse the pooled connection"
        assert exc is not None, "the write on a closing transport was not refused"
        await asyncio.wait_for(rec.closed.wait(), 10)
    assert second.started and second.chunks == 1 and second.first_write_blocked
    assert provably_unsent(exc, second) and not never_connected(exc)
    assert rec.received == [BODY] and rec.connections == 1  # the second never arrived


async def test_a_request_written_before_the_connection_dropped_is_not_unsent() -> None:
    """The server read the whole request, then closed without answering: it was sent, and
    may have created a paid operation."""
    async with recorder(answer=False) as (rec, url), probed_session() as session:
        seen, exc = await post(session, url)
    assert isinstance(exc, aiohttp.ServerDisconnectedError)
    assert rec.received == [BODY]  # the ground truth: it arrived
    assert seen.started and seen.chunks >= 1 and not seen.first_write_blocked
    assert not provably_unsent(exc, seen)


async def test_a_refused_connection_is_unsent_and_unreachable() -> None:
    async with probed_session() as session:
        seen, exc = await post(session, f"http://127.0.0.1:{free_port()}/x")
    assert isinstance(exc, aiohttp.ClientConnectorError)
    assert not seen.started and seen.chunks == 0
    assert provably_unsent(exc, seen) and never_connected(exc)


async def test_a_request_that_never_got_a_connection_from_the_pool_is_unsent() -> None:
    """One connection allowed, held by a request the server never answers: the next one
    times out waiting for the pool, before aiohttp began writing it."""
    hang, connected = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await hang.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    connector = aiohttp.TCPConnector(limit=1)
    async with server, probed_session(connector=connector) as session:
        holder = asyncio.create_task(post(session, url))
        await asyncio.wait_for(connected.wait(), 10)  # the holder has the only connection
        with probing() as seen, pytest.raises(asyncio.TimeoutError) as info:
            await session.post(
                url,
                data=BODY,
                trace_request_ctx=seen,
                timeout=aiohttp.ClientTimeout(total=0.05),
            )
        hang.set()
        await holder
    assert not seen.started and provably_unsent(info.value, seen)


def test_the_hooks_are_the_ones_aiohttp_calls() -> None:
    """If aiohttp renames a hook, this names the one that went missing."""
    tc = probe.trace_config()
    assert tc.on_request_headers_sent and tc.on_request_chunk_sent
    assert issubclass(probe.ProbedRequest, aiohttp.ClientRequest)
