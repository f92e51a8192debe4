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
token (``TokenIssuer.check``): 401 without, 404 for an object that is not there.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from batchveo.sim.tokens import TokenIssuer

CHUNK_BYTES = 1 << 20


def crc32c_b64(data: bytes) -> str:
    """Cloud Storage's ``crc32c`` field: base64 of the big-endian CRC32C."""
    import google_crc32c

    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def md5_b64(data: bytes) -> str:
    """Cloud Storage's ``md5Hash`` field: base64 of the MD5 digest."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@dataclass
class StoredObject:
    bucket: str
    name: str
    data: bytes
    content_type: str
    generation: str = field(default_factory=lambda: str(secrets.randbits(52)))

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "name": self.name,
            "bucket": self.bucket,
            "generation": self.generation,
            "contentType": self.content_type,
            "size": str(len(self.data)),
            "md5Hash": md5_b64(self.data),
            "crc32c": crc32c_b64(self.data),
        }


def _gcs_error(status: int, message: str) -> web.Response:
    reason = {401: "required", 403: "forbidden", 404: "notFound"}.get(status, "invalid")
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason}]}}
    return web.json_response(body, status=status)


class ObjectStore:
    """An in-memory bucket store serving the JSON API's metadata and media reads."""

    def __init__(self, issuer: TokenIssuer):
        self.issuer = issuer
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.reads: dict[str, int] = {"metadata": 0, "media": 0}

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "video/mp4") -> None:
        self.objects[(bucket, name)] = StoredObject(bucket, name, data, content_type)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/storage/v1/b/{bucket}/o/{object:.+}", self._get)]

    async def _get(self, request: web.Request) -> web.StreamResponse:
        refused = self.issuer.check(request.headers.get("Authorization"))
        if refused is not None:
            return _gcs_error(401, refused)
        # aiohttp decodes %2F in the path; the object's name is the rest of the path.
        key = (request.match_info["bucket"], request.match_info["object"])
        obj = self.objects.get(key)
        if obj is None:
            return _gcs_error(404, f"No such object: {key[0]}/{key[1]}")
        if request.query.get("alt") == "media":
            self.reads["media"] += 1
            return web.Response(body=obj.data, content_type=obj.content_type)
        self.reads["metadata"] += 1
        return web.json_response(obj.metadata())


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
