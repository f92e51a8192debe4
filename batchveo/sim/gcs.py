"""Cloud Storage for the simulator's Vertex route: where generated videos land.

With ``storageUri`` a Vertex operation writes its videos into the user's bucket as
``gs://BUCKET/PREFIX/<operation>/sample_<n>.mp4``. The simulator writes them either into
a real Cloud Storage emulator (the tests use ``gcp-storage-emulator``, through its JSON
upload API: ``upload_object``) or into its own small store (``ObjectStore``), which
serves the two JSON API calls batchveo makes, as Google does:

- ``GET /storage/v1/b/{bucket}/o/{object}``: the object's metadata, ``size``, ``md5Hash``
  and ``crc32c`` (base64 of the big-endian digest), ``contentType``, ``generation``;
- ``GET /storage/v1/b/{bucket}/o/{object}?alt=media``: its bytes.

The object name is URL-encoded in the path (``a%2Fb.mp4``). Both need a live bearer
token (``TokenIssuer.verify``): 401 without, 404 for an object that is not there, 403 for
one its reader may not see. An object may be told to misbehave on its next media reads
(cut short, one byte changed: what a client's size and ``md5Hash`` checks are for), and
media reads may be redirected to a signed URL on another host (``redirect``), where the
bearer token must not follow.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from batchveo.sim.tokens import Refusal, TokenIssuer

CHUNK_BYTES = 1 << 20
ANONYMOUS_MESSAGE = (
    "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage"
    " object. Permission 'storage.objects.get' denied on resource (or it may not exist)."
)


def crc32c_b64(data: bytes) -> str:
    """Cloud Storage's ``crc32c`` field: base64 of the big-endian CRC32C."""
    import google_crc32c

    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def md5_b64(data: bytes) -> str:
    """Cloud Storage's ``md5Hash`` field: base64 of the MD5 digest."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@dataclass
class StoredObject:
    """One object. Its bytes are ``head + tail``: a video shares the sample's bytes as its
    head and keeps only its own small tail, so a long rehearsal's bucket stays small."""

    bucket: str
    name: str
    head: bytes
    content_type: str
    tail: bytes = b""
    generation: str = field(default_factory=lambda: str(secrets.randbits(52)))
    truncate: int = 0
    """Media reads still to cut short (a full Content-Length, half the bytes, a close)."""
    corrupt: int = 0
    """Media reads still to answer with one byte changed (same size, wrong md5Hash)."""
    forbidden: bool = False
    """Every read answers 403, as for a reader without ``storage.objects.get``."""

    @property
    def data(self) -> bytes:
        return self.head + self.tail

    def metadata(self) -> dict[str, Any]:
        data = self.data
        return {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "name": self.name,
            "bucket": self.bucket,
            "generation": self.generation,
            "contentType": self.content_type,
            "size": str(len(data)),
            "md5Hash": md5_b64(data),
            "crc32c": crc32c_b64(data),
        }


def _gcs_error(status: int, message: str) -> web.Response:
    reason = {401: "required", 403: "forbidden", 404: "notFound"}.get(status, "invalid")
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason}]}}
    return web.json_response(body, status=status)


Redirect = Callable[[web.Request, StoredObject], str | None]
"""Where a media read is sent instead (a signed URL on another host), or None."""


class ObjectStore:
    """An in-memory bucket store serving the JSON API's metadata and media reads."""

    def __init__(self, issuer: TokenIssuer):
        self.issuer = issuer
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.reads: dict[str, int] = {"metadata": 0, "media": 0, "corrupted": 0, "truncated": 0}
        self.redirect: Redirect | None = None

    def put(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = "video/mp4",
        *,
        tail: bytes = b"",
        truncate: int = 0,
        corrupt: int = 0,
        forbidden: bool = False,
    ) -> StoredObject:
        obj = StoredObject(bucket, name, data, content_type, tail, truncate=truncate,
                           corrupt=corrupt, forbidden=forbidden)  # fmt: skip
        self.objects[(bucket, name)] = obj
        return obj

    def get_object(self, uri: str) -> StoredObject | None:
        """The object a ``gs://`` URI names, if it is here."""
        try:
            return self.objects.get(split_gcs_uri(uri))
        except ValueError:
            return None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/storage/v1/b/{bucket}/o/{object:.+}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /storage/v1/b/{bucket}/o/{object}`` (``?alt=media`` for the bytes)."""
        verdict = self.issuer.verify(request.headers.get("Authorization"))
        if isinstance(verdict, Refusal):
            if verdict.reason == "CREDENTIALS_MISSING":
                return _gcs_error(401, ANONYMOUS_MESSAGE)
            return _gcs_error(401, "Invalid Credentials")
        # aiohttp decodes %2F in the path; the object's name is the rest of the path.
        key = (request.match_info["bucket"], request.match_info["object"])
        obj = self.objects.get(key)
        if obj is None:
            return _gcs_error(404, f"No such object: {key[0]}/{key[1]}")
        if obj.forbidden:
            return _gcs_error(
                403,
                f"{verdict} does not have storage.objects.get access to the Google Cloud"
                f" Storage object. Permission 'storage.objects.get' denied on resource (or it"
                " may not exist).",
            )
        if request.query.get("alt") != "media":
            self.reads["metadata"] += 1
            return web.json_response(obj.metadata())
        location = self.redirect(request, obj) if self.redirect is not None else None
        if location is not None:
            return web.Response(status=302, headers={"Location": location})
        return await self.send_media(request, obj)

    async def send_media(self, request: web.Request, obj: StoredObject) -> web.StreamResponse:
        """The object's bytes, with whatever fault it still has to show."""
        self.reads["media"] += 1
        data = obj.data
        if obj.corrupt > 0:
            obj.corrupt -= 1
            self.reads["corrupted"] += 1
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        if obj.truncate <= 0:
            return web.Response(body=data, content_type=obj.content_type)
        obj.truncate -= 1
        self.reads["truncated"] += 1
        resp = web.StreamResponse(headers={"Content-Type": obj.content_type})
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        if request.transport is not None:
            request.transport.close()
        return resp


async def read_object(
    session: aiohttp.ClientSession, storage_base: str, bucket: str, name: str
) -> bytes | None:
    """An object's bytes from a Cloud Storage emulator (or GCS), None if it is not there."""
    url = (
        f"{storage_base.rstrip('/')}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
    )
    async with session.get(url, params={"alt": "media"}) as resp:
        if resp.status != 200:
            return None
        return await resp.read()


async def upload_object(
    session: aiohttp.ClientSession,
    storage_base: str,
    bucket: str,
    name: str,
    data: bytes,
    content_type: str = "video/mp4",
) -> None:
    """Write an object into a Cloud Storage emulator (or GCS) by the JSON API's media upload."""
    url = f"{storage_base.rstrip('/')}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
    params = {"uploadType": "media", "name": name}
    async with session.post(
        url, params=params, data=data, headers={"Content-Type": content_type}
    ) as resp:
        if resp.status >= 300:
            text = (await resp.text())[:200]
            raise RuntimeError(f"upload of gs://{bucket}/{name} failed: {resp.status} {text}")


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/some/object`` -> ("bucket", "some/object"); ValueError if not one."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[len("gs://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, name
