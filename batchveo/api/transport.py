"""One request with a credential: the whole answer under a cap, or one mapped exception.

What every provider's client shares below its wire format: the aiohttp session (probed, so
a failed submit says whether it left; never inflating behind our back), the credential's
headers for each URL, the bounded reading of the answer, and the mapping of failures. A
client builds URLs and bodies in its own format and calls ``Transport.call``; it never
touches aiohttp itself, except to stream a video (``download``).

A credential is anything that says which headers a URL gets and scrubs itself out of
texts (``Credential``): the Gemini format's API key (``providers.ApiKey``) today, a Google
access token for Vertex AI next. Logs carry URLs without query strings (where secrets and
signatures travel).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from batchveo.api.bounded import (
    JSON_ENCODINGS,
    MAX_JSON_BYTES,
    Undecodable,
    read_capped,
    read_error_body,
)
from batchveo.api.errormap import Kind, error_for_status, network_error, unreadable
from batchveo.api.probe import probed_session, probing
from batchveo.errors import ApiError

log = logging.getLogger(__name__)

NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
"""What a request that got no answer raises (refused, reset, timeout, DNS, TLS)."""


class Credential(Protocol):
    """A secret and the hosts it may go to."""

    def headers_for(self, url: URL) -> dict[str, str]:
        """The headers that carry the secret to ``url``; none for a host not trusted."""
        ...

    def trusts(self, url: URL) -> bool: ...

    def scrub(self, text: str) -> str:
        """``text`` with the secret, in any of its known forms, replaced."""
        ...

    def found_in(self, text: str) -> bool: ...


@dataclass(frozen=True)
class Reply:
    """One answer, read whole (a success under the cap, an error as far as its message)."""

    status: int
    reason: str | None
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Transport:
    """One aiohttp session for one credential. ``close`` it when done."""

    def __init__(
        self,
        credential: Credential,
        *,
        connect_timeout_s: float = 10,
        request_timeout_s: float = 120,
        max_connections: int = 32,
        user_agent: str = "batchveo/0.1",
        max_json_bytes: int = MAX_JSON_BYTES,
    ):
        self.credential = credential
        self.connect_timeout_s = connect_timeout_s
        self._timeout = aiohttp.ClientTimeout(
            total=request_timeout_s, sock_connect=connect_timeout_s
        )
        self._max_connections = max_connections
        self._max_json_bytes = max_json_bytes
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The session, opened on first use (and again after ``close``)."""
        if self._session is None or self._session.closed:
            self._session = probed_session(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers={"User-Agent": self._user_agent},
                # Never inflate behind our back: JSON answers are inflated here under
                # their cap (read_capped), and videos are never inflated at all.
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def call(
        self,
        method: str,
        url: URL,
        kind: Kind,
        body: bytes | BinaryIO | None,
        *,
        cap: int | None = None,
        streamed: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Reply:
        """One request with the credential: the whole answer, or a mapped network error.

        ``cap`` replaces the transport's cap on a success's answer for this one request
        (Vertex's poll answers carry inline videos; everything else keeps the default).
        ``streamed`` sends the body from a buffer in chunks, its length still declared
        (a review's megabytes of video: aiohttp warns that one write of them blocks the
        loop); a submit keeps its one write, which ``probe``'s rules rely on. A ``bytes``
        body is JSON. A binary file as ``body`` (an upload to the Files API) is sent as
        it is, read in chunks on a worker thread, its length from the file: never whole in
        memory. ``headers`` are added to the credential's (never over them); ``timeout_s``
        replaces the request timeout for this one request (an upload of a long take)."""
        sent = {**(headers or {}), **self.credential.headers_for(url)}
        sent["Accept-Encoding"] = JSON_ENCODINGS
        data: bytes | BinaryIO | io.BytesIO | None = body
        if isinstance(body, bytes):
            sent["Content-Type"] = "application/json"
            if streamed:
                data = io.BytesIO(body)
        timeout = self._timeout
        if timeout_s is not None:
            timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=self.connect_timeout_s)
        with probing() as probe:
            try:
                async with self.session().request(
                    method,
                    url,
                    data=data,
                    headers=sent,
                    allow_redirects=False,
                    timeout=timeout,
                    trace_request_ctx=probe,
                ) as resp:
                    log.debug("%s %s -> %s", method, url.with_query(None), resp.status)
                    return await self._read(resp, kind, cap or self._max_json_bytes)
            except NETWORK_ERRORS as exc:
                raise network_error(exc, probe, kind, self.credential.scrub) from None

    async def _read(self, resp: aiohttp.ClientResponse, kind: Kind, cap: int) -> Reply:
        if not 200 <= resp.status < 300:
            body = await read_error_body(resp)
            return Reply(resp.status, resp.reason, resp.headers, body)
        try:
            body, whole = await read_capped(resp, cap)
        except Undecodable as e:
            raise unreadable(kind, resp.status, str(e)) from None
        if not whole:
            resp.close()  # read no further: the rest is never wanted
            raise unreadable(kind, resp.status, f"more than {cap} bytes (the cap)")
        return Reply(resp.status, resp.reason, resp.headers, body)

    def http_error(self, reply: Reply, kind: Kind) -> ApiError:
        """The exception for a non-success ``reply``, its texts scrubbed of the secret."""
        return error_for_status(
            reply.status,
            reply.headers,
            reply.body,
            kind,
            reply.reason,
            scrub=self.credential.scrub,
        )

    def text(self, body: bytes) -> str:
        """A body as text for a message, scrubbed (clip it before use)."""
        return self.credential.scrub(body.decode("utf-8", "replace"))
