"""The Cloud Storage I/O of the simulator's Vertex AI service: the media it reads, the
videos it writes.

Split from the service (``vertex``) because it is the only part that does I/O beyond its
own socket: into the simulator's own Cloud Storage (``gcs.ObjectStore``, served at
``/storage/v1/b/...``), or, with ``storage_upload_base``, over HTTP to another (an
emulator), through one client session closed with the simulator.

Inputs: a submit's ``gs://`` images and videos are read before anything else counts; one
that cannot be read, or is not what its ``mimeType`` says, refuses the submit (400). Their
bytes are handed back (``read_refs``): a video to extend is judged by its own header.

Outputs: with ``storageUri`` each returned sample is written, when a poll first finds the
operation done, as ``gs://BUCKET/PREFIX/<operation id>/sample_<n>.mp4``, once (under a
lock: polls may overlap). A write that fails makes the operation fail, with a message
naming where it could not write. Objects in the simulator's own store carry the
operation's ``[sim:truncatedxN]``, ``[sim:corruptxN]`` and ``[sim:file403]`` to their reads.
Each video lasts its operation's length (``storage.sample_lasting``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

import aiohttp

from batchveo.sim.config import SimConfig
from batchveo.sim.gcs import ObjectStore, read_object, split_gcs_uri, upload_object
from batchveo.sim.ops import Operations, VertexOp
from batchveo.sim.storage import sample_lasting, tag_of, video_tail
from batchveo.sim.vertex_rules import GcsRef, VertexRequest, check_media, extension_input

log = logging.getLogger(__name__)

STORAGE_TIMEOUT_S = 30.0
"""How long one read or write of the simulator's to another Cloud Storage may take."""


@dataclass(frozen=True)
class InputVideo:
    """The video an extension extends, as the service found it."""

    key: str
    """Its key in ``chains.Chains``: what its ``free`` box names (``<operation id>/
    sample_<n>``), else its URI (or a digest of its inline bytes)."""
    length_s: float
    named: str
    """How the request named it: its ``gcsUri``, or ``inline``."""
    op_id: str | None
    """The operation that made it, when the simulator did."""


def input_video(asked: VertexRequest, read: dict[str, bytes]) -> InputVideo | str | None:
    """The video ``asked`` extends (None if none; ``read``: what ``read_refs`` read), or
    the 400's message (``vertex_rules.extension_input``)."""
    if asked.video is None:
        return None
    if isinstance(asked.video, bytes):
        data, named = asked.video, "inline"
    else:
        data, named = read[asked.video.uri], asked.video.uri
    length_s = extension_input(data)
    if isinstance(length_s, str):
        return length_s
    tag = tag_of(data)
    if tag is not None:
        return InputVideo(tag, length_s, named, tag.split("/", 1)[0])
    key = named if named != "inline" else f"inline:{hashlib.sha256(data).hexdigest()[:16]}"
    return InputVideo(key, length_s, named, None)


class VertexStorage:
    """Reads the media a request names; writes a finished operation's videos."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._write_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.objects_written = 0
        self.write_failures = 0

    async def read_refs(self, cfg: SimConfig, refs: tuple[GcsRef, ...]) -> str | dict[str, bytes]:
        """The service reads every ``gs://`` image or video a request names, first: their
        bytes by URI, or the 400's message for the first that cannot be read or is not
        what its ``mimeType`` says."""
        found: dict[str, bytes] = {}
        for ref in refs:
            data = await self._read_object(cfg, ref.uri)
            if data is None:
                return (
                    f"{ref.where}.gcsUri: cannot read {ref.uri}: no such object, or the "
                    "Vertex AI service agent may not read it."
                )
            if err := check_media(data, ref.mime, ref.where):
                return err
            found[ref.uri] = data
        return found

    async def read(self, cfg: SimConfig, uri: str) -> bytes | None:
        """An object's bytes as the service reads them (a review's ``fileData``), or None."""
        return await self._read_object(cfg, uri)

    async def _read_object(self, cfg: SimConfig, uri: str) -> bytes | None:
        if cfg.storage_upload_base is None:
            obj = self.objects.get_object(uri)
            return obj.data if obj is not None else None
        bucket, name = split_gcs_uri(uri)
        try:
            return await read_object(self._http(), cfg.storage_upload_base, bucket, name)
        except (aiohttp.ClientError, OSError):
            return None

    async def write(self, cfg: SimConfig, ops: Operations, op: VertexOp, now: float) -> None:
        """Write a finished operation's videos into the bucket, once (a failure fails it)."""
        assert op.storage is not None
        async with self._write_lock:
            if op.written:
                return
            bucket, head = op.storage[0], sample_lasting(op.length_s)
            try:
                for n in range(op.returned):
                    name, tail = op.object_name(n), video_tail(op.tag(n))
                    if cfg.storage_upload_base is None:
                        self.objects.put(bucket, name, head, tail=tail,
                                         truncate=op.trunc, corrupt=op.corrupt,
                                         forbidden=op.file403)  # fmt: skip
                    else:
                        await upload_object(
                            self._http(), cfg.storage_upload_base, bucket, name, head + tail
                        )
                    self.objects_written += 1
            except (RuntimeError, aiohttp.ClientError, OSError) as e:
                self.write_failures += 1
                where = f"gs://{bucket}/{op.storage[1]}"
                op.error_message = f"Failed to write the generated videos to {where}: {e}"[:300]
                ops.fail_finished(op, now)
                log.warning("simulator: %s", op.error_message)
            op.written = True

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=STORAGE_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
