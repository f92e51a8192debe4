"""The simulator's Cloud Storage answers the JSON API calls batchveo makes as a real
Cloud Storage emulator does (gcp-storage-emulator, in process, on a real socket)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from batchveo.sim.gcs import ObjectStore, split_gcs_uri, upload_object
from batchveo.sim.tokens import TokenIssuer
from tests.pipeline_helpers import SAMPLE_MP4


@pytest.fixture
def emulator() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="bkt")
    server.start()
    try:
        yield f"http://127.0.0.1:{server._api._httpd.server_address[1]}"
    finally:
        server.stop()


@pytest.fixture
async def own_store() -> AsyncIterator[tuple[str, ObjectStore, str]]:
    issuer = TokenIssuer()
    store = ObjectStore(issuer)
    app = web.Application()
    app.add_routes(store.routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", store, issuer.grant("test@sim")
    finally:
        await runner.cleanup()


async def _read(session: aiohttp.ClientSession, base: str, token: str) -> tuple[Any, bytes]:
    url = f"{base}/storage/v1/b/bkt/o/out%2F1%2Fsample_0.mp4"
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200
        meta = await resp.json()
    async with session.get(url, params={"alt": "media"}, headers=headers) as resp:
        assert resp.status == 200
        return meta, await resp.read()


async def test_the_simulators_store_answers_like_the_emulator(
    emulator: str, own_store: tuple[str, ObjectStore, str]
) -> None:
    own_url, store, token = own_store
    bucket, name = split_gcs_uri("gs://bkt/out/1/sample_0.mp4")
    store.put(bucket, name, SAMPLE_MP4)
    async with aiohttp.ClientSession() as session:
        await upload_object(session, emulator, bucket, name, SAMPLE_MP4)
        real_meta, real_bytes = await _read(session, emulator, token)
        own_meta, own_bytes = await _read(session, own_url, token)
        async with session.get(f"{own_url}/storage/v1/b/bkt/o/out%2F1%2Fsample_0.mp4") as r:
            assert r.status == 401  # no token: refused, as Google does
    keys = ("name", "bucket", "size", "md5Hash", "crc32c", "contentType")
    assert {k: own_meta[k] for k in keys} == {k: real_meta[k] for k in keys}
    assert own_bytes == real_bytes == SAMPLE_MP4
