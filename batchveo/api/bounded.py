"""Reading a server's JSON answer under a cap, inflating it ourselves, never past the cap.

A proxy, a broken reseller or an attacker may send a body without end, or a gzip bomb: a
few KB that inflate to gigabytes. So aiohttp never inflates anything
(``auto_decompress=False``): answers to submits and polls are read up to a cap
(``MAX_JSON_BYTES`` by default) after the client's own bounded inflating (gzip or deflate,
the only encodings asked for: ``JSON_ENCODINGS``), and no further. A Content-Length over the
cap is not read at all. What an answer over the cap means is the caller's to say (a submit
that was sent, a malformed poll); error answers are read only as far as their message.
Videos are never inflated at all (``download``).
"""

from __future__ import annotations

import zlib
from typing import Any

import aiohttp

from batchveo.api.texts import token

READ_BYTES = 64 * 1024
"""One read of a JSON answer: small, so a cap is never overshot by much."""
MAX_JSON_BYTES = 4 << 20
"""Default cap on a submit's or poll's answer, after decompression. A Gemini operation is a
few KB; 4 MiB leaves a thousand times that. (Vertex's inline videos will need a larger cap
on their route: ``VeoClient(max_json_bytes=...)``.)"""
MAX_ERROR_BODY_BYTES = 64 * 1024
"""An error answer is read this far for its message (which is clipped far shorter)."""
JSON_ENCODINGS = "gzip, deflate"
"""What JSON answers may be compressed with: only what ``Inflater`` can bound."""


class Undecodable(Exception):
    """An answer in a Content-Encoding we did not ask for, or corrupt."""


class Inflater:
    """Inflates a gzip or deflate body a piece at a time, never past a given length.

    zlib's ``max_length`` stops each call at the room left under the cap, so a bomb costs
    at most the cap, whatever it would inflate to.
    """

    def __init__(self, encoding: str):
        self.encoding = encoding.strip().lower()
        self._z: Any = None
        if self.encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding not in ("", "identity", "deflate"):
            raise Undecodable(f"Content-Encoding {token(self.encoding)}")

    def feed(self, data: bytes, room: int) -> bytes:
        """At most ``room`` (>= 1) bytes of output; input beyond that is dropped."""
        if self.encoding == "deflate" and self._z is None and data:
            # RFC 9110 deflate is zlib-wrapped; some servers send it raw.
            self._z = zlib.decompressobj(zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS)
        if self._z is None:
            return data
        try:
            out: bytes = self._z.decompress(data, room)
        except zlib.error:
            raise Undecodable(f"a corrupt {self.encoding} body") from None
        return out


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """The body, inflated, up to ``cap`` bytes; and whether that was all of it.

    Reads no further than needed: a Content-Length over the cap is not read at all, and
    reading stops at the first byte past the cap (counted both as received and inflated).
    Raises ``Undecodable`` for an encoding ``Inflater`` does not bound, or a corrupt body.
    """
    length = resp.content_length
    inflater = Inflater(resp.headers.get("Content-Encoding", "identity"))
    if length is not None and length > cap:
        return b"", False
    out = bytearray()
    received = 0
    while True:
        data = await resp.content.read(READ_BYTES)
        if not data:
            return bytes(out), True
        received += len(data)
        out += inflater.feed(data, cap + 1 - len(out))
        if len(out) > cap or received > cap:
            return bytes(out[:cap]), False


async def read_error_body(resp: aiohttp.ClientResponse) -> bytes:
    """Enough of an error answer for its message; nothing if it cannot be decoded."""
    try:
        body, _ = await read_capped(resp, MAX_ERROR_BODY_BYTES)
    except Undecodable:
        return b""  # the status still says what it is
    return body
