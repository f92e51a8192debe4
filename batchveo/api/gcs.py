"""Videos from Cloud Storage (``gs://BUCKET/OBJECT``): the metadata, then the bytes, verified.

With ``storageUri`` Vertex AI writes its videos into the user's bucket and the poll
answers with their ``gs://`` URIs. A download is two requests of the JSON API, each with
the bearer token (``bearer.BearerToken``, refreshed once on a 401):

1. ``GET {storage}/storage/v1/b/{bucket}/o/{object}``, the object's name URL-encoded as
   one segment (``a%2Fb.mp4``): its ``size``, ``md5Hash`` and ``crc32c`` (base64);
2. ``GET`` the same with ``?alt=media`` (pinned to the metadata's ``generation``),
   streamed through ``download`` (redirects by hand, the token to the storage host only,
   identity encoding, the size cap, the MP4 check, fsync and rename).

The bytes count only if their size and checksum are the metadata's (``Checksums``, a
``download.BodyCheck``): ``md5Hash``, or ``crc32c`` when the object has no MD5
(composite objects). A mismatch discards the ``.part`` and raises ``WrongBytes``: the
downloader tries again and, past its limits, fails the job with the reason; the bytes
never pass for the video.

These objects stay until the user deletes them: no two-day retention applies to them
(the run decides that; nothing here counts time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import google_crc32c
from yarl import URL

from batchveo.api.bearer import BearerToken, Unauthorized
from batchveo.api.download import VideoDownloads
from batchveo.api.errormap import vertex_error_for_status
from batchveo.api.results import DownloadResult
from batchveo.api.texts import clip
from batchveo.api.transport import Reply, Transport
from batchveo.api.urls import host_key
from batchveo.errors import ApiError, MalformedAnswer, Transient, UnusableVideo, WrongBytes

STORAGE_BASE = "https://storage.googleapis.com"
"""Cloud Storage's JSON API (``--storage-base-url`` replaces it for the simulator)."""
MAX_OBJECT_NAME_BYTES = 1024
"""Cloud Storage's own limit on an object's name (UTF-8)."""
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_GENERATION = re.compile(r"^[0-9]{1,20}$")


@dataclass(frozen=True)
class GcsObject:
    """One object of a bucket, as a ``gs://`` URI names it."""

    bucket: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> GcsObject:
        """``gs://bucket/some/object``; ``UnusableVideo`` for anything else."""
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        if (
            not uri.startswith("gs://")
            or not _BUCKET.match(bucket)
            or not name
            or len(name.encode("utf-8", "replace")) > MAX_OBJECT_NAME_BYTES
            or any(c in name for c in "\r\n\0")
        ):
            raise UnusableVideo(f"not a Cloud Storage object URI: {clip(uri[:200])!r}")
        return cls(bucket, name)

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def url(self, base: str, query: str = "") -> URL:
        """The JSON API's URL of the object: its name one percent-encoded segment."""
        path = f"/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(self.name, safe='')}"
        return URL(base.rstrip("/") + path + (f"?{query}" if query else ""), encoded=True)


@dataclass(frozen=True)
class ObjectMetadata:
    """What the metadata says the bytes are."""

    size: int
    md5: bytes | None
    crc32c: bytes | None
    generation: str | None

    @classmethod
    def from_json(cls, data: Any, obj: GcsObject) -> ObjectMetadata:
        """The fields batchveo checks, or ``MalformedAnswer`` naming what is wrong."""
        if not isinstance(data, dict):
            raise MalformedAnswer(f"{obj.uri}: the object's metadata is not a JSON object")
        size = data.get("size")
        if not (isinstance(size, str | int) and str(size).isdigit()):
            raise MalformedAnswer(f"{obj.uri}: the object's metadata has no size")
        generation = data.get("generation")
        return cls(
            size=int(size),
            md5=_digest(data.get("md5Hash"), 16, "md5Hash", obj),
            crc32c=_digest(data.get("crc32c"), 4, "crc32c", obj),
            generation=str(generation) if _GENERATION.match(str(generation)) else None,
        )


def _digest(value: Any, length: int, what: str, obj: GcsObject) -> bytes | None:
    if value is None or value == "":
        return None
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != length:
        raise MalformedAnswer(f"{obj.uri}: the object's {what} is not a {length}-byte digest")
    return raw


class Checksums:
    """A ``download.BodyCheck``: the bytes must have the metadata's size and checksum."""

    def __init__(self, obj: GcsObject, meta: ObjectMetadata):
        self._obj, self._meta = obj, meta
        self._md5 = hashlib.md5(usedforsecurity=False) if meta.md5 is not None else None
        self._crc: int | None = 0 if self._md5 is None and meta.crc32c else None

    def update(self, chunk: bytes) -> None:
        if self._md5 is not None:
            self._md5.update(chunk)
        elif self._crc is not None:
            self._crc = int(google_crc32c.extend(self._crc, chunk))

    def verify(self, size: int) -> None:
        uri, meta = self._obj.uri, self._meta
        if size != meta.size:
            raise WrongBytes(f"{uri}: got {size} bytes, the object's metadata says {meta.size}")
        if self._md5 is not None and self._md5.digest() != meta.md5:
            got, want = _b64(self._md5.digest()), _b64(meta.md5)
            raise WrongBytes(f"{uri}: the bytes' md5 {got} is not the object's md5Hash {want}")
        if self._crc is not None and self._crc.to_bytes(4, "big") != meta.crc32c:
            got, want = _b64(self._crc.to_bytes(4, "big")), _b64(meta.crc32c)
            raise WrongBytes(f"{uri}: the bytes' crc32c {got} is not the object's crc32c {want}")


def _b64(raw: bytes | None) -> str:
    return base64.b64encode(raw or b"").decode()


class CloudStorage:
    """Downloads of ``gs://`` objects over a client's transport and its bearer token."""

    def __init__(
        self,
        transport: Transport,
        videos: VideoDownloads,
        credential: BearerToken,
        *,
        base: str = STORAGE_BASE,
        max_video_bytes: int,
    ):
        self._http = transport
        self._videos = videos
        self._credential = credential
        self.base = base.rstrip("/")
        self._max_video_bytes = max_video_bytes
        credential.trust(self.base)

    async def download(self, uri: str, dest: Path) -> DownloadResult:
        """The object at ``uri`` to ``dest``, counted only with the metadata's size and hash."""
        if self._credential.found_in(uri):
            raise UnusableVideo("the video URI holds the access token: not fetched")
        obj = GcsObject.parse(uri)
        meta = await self.metadata(obj)
        if meta.size > self._max_video_bytes:
            raise UnusableVideo(
                f"{obj.uri} is {meta.size} bytes, over the cap of {self._max_video_bytes}: "
                "not downloaded"
            )
        query = "alt=media" + (f"&generation={meta.generation}" if meta.generation else "")
        url = obj.url(self.base, query)
        try:
            return await self._credential.with_token(
                lambda: self._videos.fetch(url, dest, self._refused, Checksums(obj, meta))
            )
        except Unauthorized as e:
            raise self._error(e.reply) from None

    async def metadata(self, obj: GcsObject) -> ObjectMetadata:
        url = obj.url(self.base)

        async def attempt() -> Reply:
            reply = await self._http.call("GET", url, "download", None)
            if reply.status == 401:
                raise Unauthorized(reply)
            return reply

        try:
            reply = await self._credential.with_token(attempt)
        except Unauthorized as e:
            raise self._error(e.reply) from None
        if not reply.ok:
            raise self._error(reply)
        try:
            data = json.loads(reply.body)
        except ValueError:
            raise MalformedAnswer(f"{obj.uri}: the object's metadata is not JSON") from None
        return ObjectMetadata.from_json(data, obj)

    def _refused(self, reply: Reply, url: URL) -> ApiError:
        """A media answer other than 200 or a redirect, by who said it."""
        if reply.status in (401, 403) and not self._credential.trusts(url):
            # A host we were redirected to, which never saw the token: a signed URL
            # refused, say. The next try starts again from the metadata.
            return Transient(f"storage redirect target {host_key(url)} refused: {reply.status}")
        if reply.status == 401:
            return Unauthorized(reply)
        return self._error(reply)

    def _error(self, reply: Reply) -> ApiError:
        return vertex_error_for_status(
            reply.status,
            reply.headers,
            reply.body,
            "download",
            reply.reason,
            scrub=self._credential.scrub,
            storage=True,
        )
