"""The Cloud Storage I/O of the simulator's Vertex AI service: the media it reads, the
videos it writes.

Split from the service (``vertex``) because it is the only part that does I/O beyond its
own socket: into the simulator's own Cloud Storage (``gcs.ObjectStore``, served at
``/storage/v1/b/...``), or, with ``storage_upload_base``, over HTTP to another (an
emulator), through one client session closed with the simulator.

Inputs: a submit's ``gs://`` images and videos are read before anything else counts; one
that cannot be read, or is not what its ``mimeType`` says, refuses the submit (400).

Outputs: with ``storageUri`` each returned sample is written, when a poll first finds the
operation done, as ``gs://BUCKET/PREFIX/<operation id>/sample_<n>.mp4``, once (under a
lock: polls may overlap). A write that fails makes the operation fail, with a message
naming where it could not write. Objects in the simulator's own store carry the
operation's ``[sim:truncatedxN]``, ``[sim:corruptxN]`` and ``[sim:file403]`` to their reads.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from batchveo.sim.config import SimConfig
from batchveo.sim.gcs import ObjectStore, read_object, split_gcs_uri, upload_object
from batchveo.sim.ops import Operations, VertexOp
from batchveo.sim.storage import video_tail
from batchveo.sim.vertex_rules import GcsRef, check_media

log = logging.getLogger(__name__)

STORAGE_TIMEOUT_S = 30.0
"""How long one read or write of the simulator's to another Cloud Storage may take."""


class VertexStorage:
    """Reads the media a request names; writes a finished operation's videos."""

    def __init__(self, objects: ObjectStore, sample: bytes) -> None:
        self.objects = objects
        self._sample = sample
        self._write_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.objects_written = 0
        self.write_failures = 0

    async def check_refs(self, cfg: SimConfig, refs: tuple[GcsRef, ...]) -> str | None:
        """The service reads every ``gs://`` image or video a request names, first."""
        for ref in refs:
            data = await self._read_object(cfg, ref.uri)
            if data is None:
                return (
                    f"{ref.where}.gcsUri: cannot read {ref.uri}: no such object, or the "
                    "Vertex AI service agent may not read it."
                )
            if err := check_media(data, ref.mime, ref.where):
                return err
        return None

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
            bucket = op.storage[0]
            try:
                for n in range(op.returned):
                    name, tail = op.object_name(n), video_tail(op.tag(n))
                    if cfg.storage_upload_base is None:
                        self.objects.put(bucket, name, self._sample, tail=tail,
                                         truncate=op.trunc, corrupt=op.corrupt,
                                         forbidden=op.file403)  # fmt: skip
                    else:
                        await upload_object(
                            self._http(), cfg.storage_upload_base, bucket, name, self._sample + tail
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
