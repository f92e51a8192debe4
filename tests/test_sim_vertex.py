"""The simulator's Vertex AI mode behaves like the documented Vertex service, over real
sockets, with tokens from google-auth's own flow (a key file the simulator made, named by
``GOOGLE_APPLICATION_CREDENTIALS``), and answers that the client's own parser
(``batchveo.api.vertex_wire``) reads as the service means them.

Time never passes for real: generation, quotas and token lifetimes run on a FakeClock the
test advances.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from click.testing import CliRunner

from batchveo.api.errormap import error_for_status
from batchveo.api.gauth import SCOPE, TokenSource, find_identity
from batchveo.api.vertex_wire import (
    OperationName,
    model_path,
    parse_vertex_operation,
    vertex_parameters,
)
from batchveo.cli import main
from batchveo.errors import (
    AccountError,
    BadRequest,
    ContentRejected,
    ModelUnavailable,
    QuotaExhausted,
    RateLimited,
)
from batchveo.sim import SimConfig, Simulator, serve_forever
from batchveo.sim.markers import filtered_samples
from batchveo.sim.tokens import ServiceAccountKey, make_service_account_key
from batchveo.sim.vertex import project_number
from batchveo.sim.vertex_rules import VERTEX_MODELS, storage_target, validate
from tests.helpers import FakeClock
from tests.pipeline_helpers import SAMPLE_MP4, sim_head

PROJECT = "proj-vsim"
LOCATION = "us-central1"
MODEL = "veo-3.1-generate-001"
PARAMS: dict[str, Any] = {"durationSeconds": 8, "generateAudio": True}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def img(data: bytes = PNG, mime: str = "image/png") -> dict[str, str]:
    return {"mimeType": mime, "bytesBase64Encoded": base64.b64encode(data).decode()}


def tag_of(video: bytes) -> str:
    """What the simulator's ``free`` box names: each video's bytes are its own."""
    head = sim_head(video)
    assert video.startswith(head)
    tail = video[len(head) :]
    assert int.from_bytes(tail[:4], "big") == len(tail) and tail[4:8] == b"free"
    payload = tail[8:].decode()
    assert payload.startswith("batchveo-sim ")
    return payload[len("batchveo-sim ") :]


@pytest.fixture(autouse=True)
def _no_machine_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the key a test names; no wait on a metadata server."""
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)


@dataclass
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def error(self) -> dict[str, Any]:
        err: dict[str, Any] = self.body["error"]
        return err


class V:
    """A bare Vertex caller over a real session, its bearer tokens from google-auth."""

    def __init__(self, http: aiohttp.ClientSession, sim: Simulator, tokens: TokenSource):
        self.http, self.sim, self.tokens = http, sim, tokens

    async def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(await self.tokens.token()).reveal()}"}

    async def _send(
        self, method: str, url: str, headers: dict[str, str] | None, **kw: Any
    ) -> Answer:
        headers = await self.auth() if headers is None else headers
        async with self.http.request(method, url, headers=headers, **kw) as r:
            body = await r.read()
            parsed = json.loads(body) if r.content_type == "application/json" else body
            return Answer(r.status, parsed, r.headers)

    async def submit(
        self,
        prompt: str = "a lighthouse at dawn",
        params: dict[str, Any] | None = None,
        *,
        model: str = MODEL,
        project: str = PROJECT,
        location: str = LOCATION,
        headers: dict[str, str] | None = None,
        body: Any = None,
        **instance: Any,
    ) -> Answer:
        if body is None:
            params = PARAMS if params is None else params
            body = {"instances": [{"prompt": prompt, **instance}], "parameters": params}
        url = f"{self.sim.url}/v1/projects/{project}/locations/{location}/publishers/google"
        url = f"{url}/models/{model}:predictLongRunning"
        return await self._send("POST", url, headers, json=body)

    async def fetch(
        self,
        name: str,
        *,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> Answer:
        """Poll as the client does: the path rebuilt from the name, the name sent back."""
        path = path or OperationName.parse(name).fetch_path()
        payload = {"operationName": name} if body is None else body
        return await self._send("POST", f"{self.sim.url}{path}", headers, json=payload)

    async def run(self, prompt: str = "a lighthouse at dawn", **kw: Any) -> dict[str, Any]:
        """Submit, finish, poll: the done operation."""
        answer = await self.submit(prompt, **kw)
        assert answer.status == 200, answer.body
        self.sim.finish_all()
        done = await self.fetch(answer.body["name"])
        assert done.status == 200 and done.body["done"] is True, done.body
        op: dict[str, Any] = done.body
        return op

    async def storage(
        self, uri: str, *, media: bool = False, headers: dict[str, str] | None = None, **kw: Any
    ) -> Answer:
        """Cloud Storage's JSON API on the simulator, the object name URL-encoded."""
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        url = f"{self.sim.url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
        params = {"alt": "media"} if media else {}
        return await self._send("GET", url, headers, params=params, **kw)


MakeSim = Callable[..., Awaitable[tuple[Simulator, V]]]


@functools.cache
def _shared_key() -> ServiceAccountKey:
    return make_service_account_key("http://unused/token", project=PROJECT)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeSim]:
    sims: list[Simulator] = []
    async with aiohttp.ClientSession() as http:

        async def factory(**kw: Any) -> tuple[Simulator, V]:
            kw = {"clock": clock, "generation_s": (10.0, 20.0), "seed": 7, **kw}
            sim = Simulator(SimConfig(**kw))
            await sim.start()
            sims.append(sim)
            # What ``sim.make_key`` writes, but one RSA key for the module: generating
            # one per test would cost more than the test.
            info = {**_shared_key().info, "token_uri": f"{sim.url}/token"}
            sim.trust_key(info)
            key = ServiceAccountKey(info, "").write(tmp_path / f"sa-{len(sims)}.json")
            monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
            identity = await asyncio.to_thread(find_identity)
            assert identity.project == PROJECT and not identity.user_credentials
            return sim, V(http, sim, TokenSource(identity.credentials))

        yield factory
        for sim in sims:
            await sim.stop()


@pytest.fixture
def emulator() -> Iterator[str]:
    """A real Cloud Storage emulator (gcp-storage-emulator) in process, bucket ``bkt``."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="bkt")
    server.start()
    try:
        yield f"http://127.0.0.1:{server._api._httpd.server_address[1]}"
    finally:
        server.stop()


def videos_of(op: dict[str, Any]) -> list[dict[str, str]]:
    videos: list[dict[str, str]] = op["response"].get("videos", [])
    return videos


# --------------------------------------------------------------------------- endpoints


async def test_submit_poll_inline_videos_through_google_auth(
    make: MakeSim, clock: FakeClock
) -> None:
    sim, v = await make()
    params = vertex_parameters({"durationSeconds": 8, "sampleCount": 2}, None)
    answer = await v.submit(params=params)
    assert answer.status == 200, answer.body
    name = answer.body["name"]
    parts = OperationName.parse(name)
    assert (parts.project, parts.location, parts.model) == (PROJECT, LOCATION, MODEL)
    assert len(parts.operation_id) == 36 and parts.operation_id.count("-") == 4  # a UUID
    # Still running: "done" false or absent, both forms appear.
    running = [await v.fetch(name), await v.fetch(name)]
    assert all(a.status == 200 and not a.body.get("done") for a in running)
    assert {"done" in a.body for a in running} == {True, False}
    assert parse_vertex_operation(running[0].body).state == "running"
    # A GET on the operation name answers 404, as on Vertex.
    get = await v._send("GET", f"{sim.url}/v1/{name}", None)
    assert get.status == 404 and get.error["status"] == "NOT_FOUND"
    clock.advance(20.0)
    done = await v.fetch(name)
    assert done.status == 200 and done.body["name"] == name and done.body["done"] is True
    response = done.body["response"]
    assert response["@type"].endswith("cloud.ai.large_models.vision.GenerateVideoResponse")
    assert response["raiMediaFilteredCount"] == 0
    outcome = parse_vertex_operation(done.body)
    assert outcome.state == "done" and len(outcome.videos) == 2 and outcome.filtered_count == 0
    datas = [base64.b64decode(video.inline_b64 or "") for video in outcome.videos]
    assert [tag_of(d) for d in datas] == [f"{parts.operation_id}/sample_{n}" for n in (0, 1)]
    assert all(vid.mime_type == "video/mp4" and vid.gcs_uri is None for vid in outcome.videos)
    stats = sim.stats()
    assert stats["requests"]["vertex_submit"] == {"200": 1}
    assert stats["requests"]["vertex_poll"] == {"200": 3}
    assert stats["requests"]["vertex_operation"] == {"404": 1}
    assert stats["requests"]["token"] == {"200": 1}
    assert stats["operations"] == {"created": 1, "done": 1, "failed": 0, "filtered": 0}
    assert stats["submits_by_prompt"] == {"a lighthouse at dawn": 1}
    assert stats["vertex"]["submits_by_location"] == {f"{PROJECT}/{LOCATION}": 1}
    assert stats["vertex"]["samples"] == {"requested": 2, "returned": 2, "filtered": 0}
    assert stats["vertex"]["tokens"] == {"issued": 1, "refused": 0}
    assert stats["bearer_leaks"] == 0 and stats["key_leaks"] == 0
    # Polling a done operation again is counted: inline answers are megabytes each.
    assert (await v.fetch(name)).status == 200
    assert sim.stats()["polls_after_done"] == 1


async def test_both_formats_on_one_port(make: MakeSim) -> None:
    sim, v = await make(api_key="gem-key")
    url = f"{sim.url}/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
    body = {"instances": [{"prompt": "gemini"}], "parameters": {"durationSeconds": "8"}}
    async with v.http.post(url, json=body, headers={"x-goog-api-key": "gem-key"}) as r:
        assert r.status == 200 and (await r.json())["name"].startswith("models/")
    await v.run("vertex")
    stats = sim.stats()
    assert stats["submits_by_prompt"] == {"gemini": 1, "vertex": 1}
    assert stats["operations"]["created"] == 2
    assert stats["bearer_leaks"] == 0 and stats["key_leaks"] == 0


async def test_storage_outputs_in_the_simulators_own_store(make: MakeSim) -> None:
    sim, v = await make()
    params = {**PARAMS, "sampleCount": 2, "storageUri": "gs://bkt/out/"}
    answer = await v.submit("to the bucket", params)
    assert answer.status == 200
    op_id = OperationName.parse(answer.body["name"]).operation_id
    early = await v.storage(f"gs://bkt/out/{op_id}/sample_0.mp4")
    assert early.status == 404  # nothing in the bucket before the operation is done
    sim.finish_all()
    done = await v.fetch(answer.body["name"])
    uris = [video["gcsUri"] for video in videos_of(done.body)]
    assert uris == [f"gs://bkt/out/{op_id}/sample_{n}.mp4" for n in (0, 1)]
    assert all(video["mimeType"] == "video/mp4" for video in videos_of(done.body))
    outcome = parse_vertex_operation(done.body)
    assert [vid.gcs_uri for vid in outcome.videos] == uris
    seen = set()
    for n, uri in enumerate(uris):
        meta = await v.storage(uri)
        assert meta.status == 200, meta.body
        data = await v.storage(uri, media=True)
        assert data.status == 200 and data.headers["Content-Type"] == "video/mp4"
        assert tag_of(data.body) == f"{op_id}/sample_{n}"
        assert int(meta.body["size"]) == len(data.body)
        assert meta.body["md5Hash"] == base64.b64encode(hashlib.md5(data.body).digest()).decode()
        assert meta.body["name"] == f"out/{op_id}/sample_{n}.mp4" and meta.body["bucket"] == "bkt"
        seen.add(data.body)
    assert len(seen) == 2
    refused = await v.storage(uris[0], media=True, headers={})
    assert refused.status == 401  # Cloud Storage wants the bearer token too
    assert refused.error["message"].startswith("Anonymous caller does not have storage.objects")
    stale = await v.storage(uris[0], headers={"Authorization": "Bearer ya29.unknown"})
    assert stale.status == 401 and stale.error["message"] == "Invalid Credentials"
    stats = sim.stats()
    assert stats["requests"]["gcs"] == {"404": 1, "200": 4, "401": 2}
    assert stats["vertex"]["objects_written"] == 2


async def test_storage_outputs_uploaded_to_a_real_emulator(make: MakeSim, emulator: str) -> None:
    sim, v = await make(storage_upload_base=emulator)
    op = await v.run("emulated", params={**PARAMS, "sampleCount": 3, "storageUri": "gs://bkt/a"})
    op_id = OperationName.parse(op["name"]).operation_id
    uris = [video["gcsUri"] for video in videos_of(op)]
    assert uris == [f"gs://bkt/a/{op_id}/sample_{n}.mp4" for n in range(3)]
    async with aiohttp.ClientSession() as http:
        for n, uri in enumerate(uris):
            name = quote(uri.removeprefix("gs://bkt/"), safe="")
            async with http.get(f"{emulator}/storage/v1/b/bkt/o/{name}") as r:
                meta = await r.json()
            async with http.get(f"{emulator}/storage/v1/b/bkt/o/{name}?alt=media") as r:
                data = await r.read()
            assert tag_of(data) == f"{op_id}/sample_{n}"
            assert int(meta["size"]) == len(data)
            assert meta["md5Hash"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert (await v.storage(uris[0])).status == 404  # not in the simulator's own store
    # A bucket the emulator does not have: the write fails, and so does the operation.
    failed = await v.run("nowhere", params={**PARAMS, "storageUri": "gs://no-such-bucket/x/"})
    outcome = parse_vertex_operation(failed)
    assert outcome.state == "failed" and "Failed to write" in (outcome.error_message or "")
    stats = sim.stats()
    assert stats["vertex"]["objects_written"] == 3 and stats["vertex"]["write_failures"] == 1
    assert stats["operations"] == {"created": 2, "done": 1, "failed": 1, "filtered": 0}


async def test_gcs_images_are_read_from_the_store_they_name(make: MakeSim, emulator: str) -> None:
    sim, v = await make()
    sim.objects.put("bkt", "in/first.png", PNG, "image/png")
    image = {"gcsUri": "gs://bkt/in/first.png", "mimeType": "image/png"}
    assert (await v.submit("from gcs", image=image)).status == 200
    missing = await v.submit("x", image={**image, "gcsUri": "gs://bkt/in/none.png"})
    assert missing.status == 400 and "cannot read gs://bkt/in/none.png" in missing.error["message"]
    wrong = await v.submit("x", image={**image, "mimeType": "image/jpeg"})
    assert wrong.status == 400 and "not a valid image/jpeg" in wrong.error["message"]
    # With another Cloud Storage, the images are read from there.
    sim.configure(storage_upload_base=emulator)
    async with aiohttp.ClientSession() as http:
        url = f"{emulator}/upload/storage/v1/b/bkt/o"
        params = {"uploadType": "media", "name": "in/emu.jpg"}
        async with http.post(url, params=params, data=JPEG) as r:
            assert r.status == 200
    emu_image = {"gcsUri": "gs://bkt/in/emu.jpg", "mimeType": "image/jpeg"}
    assert (await v.submit("from the emulator", image=emu_image)).status == 200
    assert (await v.submit("x", image=image)).status == 400  # only in the own store


async def test_extension_takes_a_previous_output_from_the_bucket(make: MakeSim) -> None:
    _, v = await make()
    op = await v.run("source", params={**PARAMS, "storageUri": "gs://bkt/v/"})
    video = {"gcsUri": videos_of(op)[0]["gcsUri"], "mimeType": "video/mp4"}
    assert (await v.submit("extend", video=video)).status == 200
    not_mp4 = await v.submit("extend", video={**video, "mimeType": "video/webm"})
    assert not_mp4.status == 400 and "mimeType" in not_mp4.error["message"]
    inline_video = {
        "bytesBase64Encoded": base64.b64encode(SAMPLE_MP4).decode(),
        "mimeType": "video/mp4",
    }
    inline = await v.submit("extend inline", video=inline_video)
    assert inline.status == 200
    lite = await v.submit("extend", model="veo-3.1-lite-generate-001", video=video)
    assert lite.status == 400 and "not supported" in lite.error["message"]


# --------------------------------------------------------------------------- filtering


async def test_partial_and_total_filtering(make: MakeSim) -> None:
    sim, v = await make()
    three = {**PARAMS, "sampleCount": 3}
    partial = await v.run("risky [sim:filteredx1]", params=three)
    response = partial["response"]
    assert response["raiMediaFilteredCount"] == 1
    assert response["raiMediaFilteredReasons"] == ["58061214"]  # a bare support code
    outcome = parse_vertex_operation(partial)
    assert outcome.state == "done" and len(outcome.videos) == 2 and outcome.filtered_count == 1
    total = await v.run("blocked [sim:filtered]", params=three)
    assert "videos" not in total["response"]
    assert total["response"]["raiMediaFilteredCount"] == 3
    [reason] = total["response"]["raiMediaFilteredReasons"]
    assert "You will not be charged" in reason
    assert parse_vertex_operation(total).state == "filtered"
    over = await v.run("all of them [sim:filteredx9]", params=three)
    assert parse_vertex_operation(over).state == "filtered"
    stored = await v.run("bucket [sim:filteredx2]", params={**three, "storageUri": "gs://bkt1/"})
    assert [u["gcsUri"].rsplit("/", 1)[1] for u in videos_of(stored)] == ["sample_0.mp4"]
    stats = sim.stats()
    assert stats["operations"]["filtered"] == 2 and stats["operations"]["done"] == 2
    assert stats["vertex"]["samples"] == {"requested": 12, "returned": 3, "filtered": 9}
    assert stats["vertex"]["partial"] == 2 and stats["vertex"]["objects_written"] == 1


async def test_the_known_empty_answer(make: MakeSim) -> None:
    sim, v = await make()
    empty = await v.run("nothing [sim:empty]")
    assert empty == {
        "name": empty["name"],
        "done": True,
        "response": {"@type": empty["response"]["@type"]},
    }
    outcome = parse_vertex_operation(empty)
    assert outcome.state == "failed" and "no video" in (outcome.error_message or "")
    sim.configure(rate_empty=1.0)
    assert parse_vertex_operation(await v.run("also")).state == "failed"
    stats = sim.stats()
    assert stats["vertex"]["empty"] == 2 and stats["operations"]["failed"] == 2


def test_filtered_marker_counts() -> None:
    assert filtered_samples("p [sim:filtered]", 3) == 3
    assert filtered_samples("p [sim:filteredx2]", 3) == 2
    assert filtered_samples("p [sim:filteredx5]", 3) == 3
    assert filtered_samples("plain", 3) == 0


async def test_operation_error_marker(make: MakeSim) -> None:
    _, v = await make()
    failed = await v.run("boom [sim:op_error]")
    assert failed["error"]["code"] == 13 and "response" not in failed
    outcome = parse_vertex_operation(failed)
    assert outcome.state == "failed" and outcome.error_code == 13


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("instance", "params", "expect"),
    [
        ({}, {"durationSeconds": "8", "generateAudio": True}, "durationSeconds must be an integer"),
        ({}, {"durationSeconds": 8.0, "generateAudio": True}, "durationSeconds must be an integer"),
        ({}, {"durationSeconds": 5, "generateAudio": True}, "durationSeconds"),
        ({}, {"durationSeconds": 8}, "generateAudio is required"),
        ({}, {**PARAMS, "generateAudio": "true"}, "generateAudio must be a boolean"),
        ({}, {**PARAMS, "sampleCount": 0}, "sampleCount"),
        ({}, {**PARAMS, "sampleCount": 5}, "sampleCount"),
        ({}, {**PARAMS, "sampleCount": True}, "sampleCount"),
        ({}, {**PARAMS, "storageUri": "s3://bucket/x/"}, "storageUri"),
        ({}, {**PARAMS, "storageUri": "gs://Bad_Bucket/x/"}, "not a valid bucket"),
        ({}, {**PARAMS, "storageUri": "gs://bkt//x/"}, "not a valid object prefix"),
        ({}, {**PARAMS, "resolution": "1080p", "durationSeconds": 6}, "requires durationSeconds 8"),
        ({}, {**PARAMS, "resolution": "2k"}, "resolution"),
        ({}, {**PARAMS, "aspectRatio": "1:1"}, "aspectRatio"),
        ({}, {**PARAMS, "fps": 24}, 'Unknown name "fps"'),
        ({}, {**PARAMS, "personGeneration": "allow_none"}, "personGeneration"),
        ({}, {**PARAMS, "seed": -1}, "seed"),
        ({}, {**PARAMS, "enhancePrompt": "yes"}, "enhancePrompt"),
        (
            {"image": {"inlineData": {"mimeType": "image/png", "data": "AA=="}}},
            PARAMS,
            "inlineData",
        ),
        ({"image": {**img(), "gcsUri": "gs://b/x.png"}}, PARAMS, "exactly one of"),
        ({"image": {"gcsUri": "gs://b/", "mimeType": "image/png"}}, PARAMS, "gs://BUCKET/OBJECT"),
        ({"image": {"gcsUri": "http://b/x.png", "mimeType": "image/png"}}, PARAMS, "gs://BUCKET"),
        ({"image": img(JPEG, "image/png")}, PARAMS, "not a valid image/png"),
        ({"image": img(PNG, "image/gif")}, PARAMS, "mimeType"),
        ({"image": {"mimeType": "image/png", "bytesBase64Encoded": "%%%"}}, PARAMS, "Base64"),
        ({"lastFrame": img()}, PARAMS, "lastFrame requires image"),
        (
            {"referenceImages": [{"image": img(), "referenceType": "asset"}] * 4},
            PARAMS,
            "at most 3",
        ),
        ({"video": {"uri": "https://x/v1beta/files/a:download"}}, PARAMS, 'Unknown name "uri"'),
        ({"audio": True}, PARAMS, 'Unknown name "audio"'),
    ],
)
async def test_validation_rejects(
    make: MakeSim, instance: dict[str, Any], params: dict[str, Any], expect: str
) -> None:
    sim, v = await make()
    answer = await v.submit("p", params, **instance)
    assert answer.status == 400, answer.body
    assert answer.error["status"] == "INVALID_ARGUMENT" and answer.error["code"] == 400
    assert expect in answer.error["message"]
    # A rule broken is not the content filter: the client must not read it as one.
    err = error_for_status(400, {}, json.dumps(answer.body).encode(), "submit")
    assert type(err) is BadRequest
    assert sim.stats()["operations"]["created"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"instances": []},
        {"instances": [{"prompt": "a"}, {"prompt": "b"}]},
        {"instances": [{"prompt": " "}]},
        {"instances": [{"prompt": "a"}], "parameters": PARAMS, "extra": 1},
        {"instances": [{"prompt": "a"}], "parameters": []},
        "not an object",
    ],
)
async def test_malformed_bodies_rejected(make: MakeSim, body: Any) -> None:
    _, v = await make()
    answer = await v.submit(body=body)
    assert answer.status == 400 and answer.error["status"] == "INVALID_ARGUMENT"


async def test_valid_variants_accepted(make: MakeSim) -> None:
    _, v = await make()
    ref = {"image": img(), "referenceType": "asset"}
    ok_cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({}, vertex_parameters({"durationSeconds": 4, "generateAudio": False}, None)),
        ({}, {**PARAMS, "sampleCount": 4, "resolution": "4k", "seed": 2**32 - 1}),
        ({}, {**PARAMS, "storageUri": "gs://bkt"}),
        ({"image": img(JPEG, "image/jpeg"), "lastFrame": img()}, {**PARAMS, "durationSeconds": 6}),
        ({"referenceImages": [ref] * 3}, {**PARAMS, "negativePrompt": "blur"}),
        ({}, {**PARAMS, "personGeneration": "allow_adult", "enhancePrompt": False}),
    ]
    for instance, params in ok_cases:
        answer = await v.submit("p", params, **instance)
        assert answer.status == 200, (instance.keys(), params, answer.body)
    assert (await v.submit("global", location="global")).status == 200


def test_storage_uris_and_the_model_catalogue() -> None:
    assert storage_target("gs://bkt") == ("bkt", "")
    assert storage_target("gs://bkt/") == ("bkt", "")
    assert storage_target("gs://bkt/out") == ("bkt", "out/")
    assert storage_target("gs://bkt/out/deep/") == ("bkt", "out/deep/")
    assert storage_target(None) is None
    assert sorted(VERTEX_MODELS) == [
        "veo-3.1-fast-generate-001",
        "veo-3.1-generate-001",
        "veo-3.1-lite-generate-001",
    ]
    lite = VERTEX_MODELS["veo-3.1-lite-generate-001"]
    body = {"instances": [{"prompt": "p"}], "parameters": {**PARAMS, "resolution": "4k"}}
    assert validate(body, lite) == "resolution '4k' is not supported by veo-3.1-lite-generate-001."


@pytest.mark.parametrize(
    "model", ["veo-3.1-generate-preview", "veo-3.1-fast-generate-preview", "veo-9"]
)
async def test_retired_and_unknown_models_answer_404_publisher_model(
    make: MakeSim, model: str
) -> None:
    sim, v = await make()
    answer = await v.submit(model=model)
    assert answer.status == 404 and answer.error["status"] == "NOT_FOUND"
    assert answer.error["message"].startswith(
        f"Publisher Model projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
        f"{model} was not found or your project does not have access to it."
    )
    err = error_for_status(404, {}, json.dumps(answer.body).encode(), "submit")
    assert isinstance(err, ModelUnavailable)
    assert sim.stats()["requests"]["vertex_submit"] == {"404": 1}


async def test_a_ga_id_can_be_retired_by_the_knob(make: MakeSim) -> None:
    _, v = await make(retired_models=("veo-3.1-fast-generate-001",))
    assert (await v.submit(model="veo-3.1-fast-generate-001")).status == 404
    assert (await v.submit(model="veo-3.1-generate-001")).status == 200


# --------------------------------------------------------------------------- credentials


async def test_requests_without_a_live_token_are_refused(make: MakeSim, clock: FakeClock) -> None:
    sim, v = await make(token_lifetime_s=100.0)
    missing = await v.submit(headers={})
    assert missing.status == 401 and missing.error["status"] == "UNAUTHENTICATED"
    assert missing.error["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer ")
    unknown = await v.submit(headers={"Authorization": "Bearer ya29.not-one-of-ours"})
    assert unknown.status == 401 and 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    assert (await v.submit(headers={"Authorization": "Basic abc"})).status == 401
    stale = await v.tokens.token()
    name = (await v.submit()).body["name"]
    clock.advance(100.0)  # the token's lifetime, on the simulator's clock
    expired = await v.fetch(name)
    assert expired.status == 401
    assert expired.error["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    assert isinstance(
        error_for_status(401, {}, json.dumps(expired.body).encode(), "poll"), AccountError
    )
    fresh = await v.tokens.refreshed(stale)  # what the client does after a 401
    assert fresh.reveal() != stale.reveal()
    assert (
        await v.fetch(name, headers={"Authorization": f"Bearer {fresh.reveal()}"})
    ).status == 200
    async with v.http.post(f"{sim.url}/__sim/expire_tokens") as r:
        assert r.status == 200
    auth = {"Authorization": f"Bearer {fresh.reveal()}"}
    assert (await v.fetch(name, headers=auth)).status == 401
    assert (await v.storage("gs://b/o", headers=auth)).status == 401
    stats = sim.stats()
    assert stats["vertex"]["tokens"] == {"issued": 2, "refused": 0}
    assert stats["requests"]["vertex_submit"] == {"401": 3, "200": 1}
    assert stats["operations"]["created"] == 1


async def test_an_api_key_is_refused_and_counted(make: MakeSim) -> None:
    sim, v = await make()
    answer = await v.submit(headers={"x-goog-api-key": "sim-key"})
    assert answer.status == 401 and "API keys are not supported" in answer.error["message"]
    url = f"{sim.url}{model_path(PROJECT, LOCATION, MODEL)}:predictLongRunning?key=sim-key"
    async with v.http.post(url, json={}, headers=await v.auth()) as r:
        assert r.status == 401
    stats = sim.stats()
    assert stats["key_leaks"] == 1 and stats["key_in_url"] == 1
    assert stats["operations"]["created"] == 0


async def test_a_key_the_simulator_does_not_trust_gets_no_token(
    make: MakeSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, _ = await make()
    stranger = make_service_account_key(f"{sim.url}/token", project=PROJECT)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(stranger.write(tmp_path / "x.json")))
    source = TokenSource((await asyncio.to_thread(find_identity)).credentials)
    with pytest.raises(AccountError, match="invalid_grant"):
        await source.token()
    stats = sim.stats()
    assert stats["vertex"]["tokens"] == {"issued": 0, "refused": 1}
    assert stats["requests"]["token"] == {"400": 1}


async def test_403_permission_denied(make: MakeSim, tmp_path: Path) -> None:
    sim, v = await make()
    other = await v.submit(project="someone-elses")  # the key's account is PROJECT's only
    assert other.status == 403 and other.error["status"] == "PERMISSION_DENIED"
    assert other.error["message"] == (
        "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis"
        f".com/projects/someone-elses/locations/{LOCATION}/publishers/google/models/{MODEL}' "
        "(or it may not exist)."
    )
    assert other.error["details"][0]["reason"] == "IAM_PERMISSION_DENIED"
    name = (await v.submit()).body["name"]
    sim.configure(vertex_permission_denied=True)
    assert (await v.submit()).status == 403
    assert (await v.fetch(name)).status == 403
    err = error_for_status(403, {}, json.dumps(other.body).encode(), "submit")
    assert isinstance(err, AccountError)
    assert sim.stats()["requests"]["vertex_submit"] == {"403": 2, "200": 1}


# --------------------------------------------------------------------------- polls


async def test_fetch_needs_the_name_exactly_as_handed_out(make: MakeSim) -> None:
    sim, v = await make(project_number_names=True)
    answer = await v.submit()
    name = answer.body["name"]
    number = project_number(PROJECT)
    assert name.startswith(f"projects/{number}/locations/{LOCATION}/publishers/google/models/")
    assert len(number) == 12 and number.isdigit()
    assert (await v.fetch(name)).status == 200  # the path rebuilt from the name: the number
    by_id = name.replace(number, PROJECT, 1)
    assert (await v.fetch(by_id)).status == 404  # not the name it was given
    other_model = OperationName.parse(name.replace(MODEL, "veo-3.1-fast-generate-001"))
    assert (await v.fetch(name, path=other_model.fetch_path())).status == 404
    unknown = name.rsplit("/", 1)[0] + "/00000000-0000-4000-8000-000000000000"
    assert (await v.fetch(unknown)).status == 404
    bad = await v.fetch(name, body={"name": name})
    assert bad.status == 400 and 'Unknown name "name"' in bad.error["message"]
    assert (await v.fetch(name, body={"operationName": "operations/x"})).status == 400
    # The number is the same project: its quota and its permission.
    assert (await v.submit(project=number)).status == 200
    assert sim.stats()["vertex"]["submits_by_location"] == {f"{PROJECT}/{LOCATION}": 2}


async def test_a_get_on_the_operation_name_is_404_and_needs_a_token(make: MakeSim) -> None:
    sim, v = await make()
    name = (await v.submit()).body["name"]
    assert (await v._send("GET", f"{sim.url}/v1/{name}", {})).status == 401
    ops = f"{sim.url}/v1/projects/{PROJECT}/locations/{LOCATION}/operations/x"
    assert (await v._send("GET", ops, None)).status == 404


async def test_retention_forgets_operations_but_not_bucket_objects(
    make: MakeSim, clock: FakeClock
) -> None:
    _, v = await make(retention_s=100.0, token_lifetime_s=10_000.0)
    op = await v.run("kept", params={**PARAMS, "storageUri": "gs://bkt/r/"})
    clock.advance(100.0)
    assert (await v.fetch(op["name"])).status == 404
    assert (await v.storage(videos_of(op)[0]["gcsUri"], media=True)).status == 200


# --------------------------------------------------------------------------- quotas


async def test_rpm_limit_is_per_project_and_region_with_retry_info(
    make: MakeSim, clock: FakeClock, tmp_path: Path
) -> None:
    from google.oauth2 import service_account

    sim, v = await make(rpm_limit=2, rate_window_s=60.0)
    for n in range(2):
        assert (await v.submit(f"p{n}")).status == 200
        clock.advance(10.0)
    late = await v.submit("late")
    assert late.status == 429 and late.error["status"] == "RESOURCE_EXHAUSTED"
    assert "Retry-After" not in late.headers  # Google sends no header
    message = late.error["message"]
    assert (
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model"
        in message
    )
    assert f"with base model: {MODEL}" in message
    details = {d["@type"].rsplit(".", 1)[1]: d for d in late.error["details"]}
    assert details["RetryInfo"]["retryDelay"] == "40s"  # the first submit frees at t+60
    violation = details["QuotaFailure"]["violations"][0]
    assert violation["quotaMetric"] == (
        "aiplatform.googleapis.com/online_prediction_requests_per_base_model"
    )
    assert violation["quotaDimensions"] == {"region": LOCATION, "base_model": MODEL}
    err = error_for_status(429, late.headers, json.dumps(late.body).encode(), "submit")
    assert isinstance(err, RateLimited) and err.retry_after_s == 40.0
    # Another region of the same project has its own quota.
    assert (await v.submit("elsewhere", location="europe-west4")).status == 200
    # So has another project (another service account, its own key).
    key = sim.make_key(tmp_path / "other.json", project="other-proj")
    creds = service_account.Credentials.from_service_account_file(str(key), scopes=[SCOPE])
    other = V(v.http, sim, TokenSource(creds))
    assert (await other.submit("theirs", project="other-proj")).status == 200
    assert (await other.submit("not mine")).status == 403  # and not PROJECT's
    clock.advance(40.0)
    assert (await v.submit("late")).status == 200
    stats = sim.stats()
    assert stats["quota_violations"] == 1
    assert stats["submits_by_prompt"] == dict.fromkeys(
        ("p0", "p1", "elsewhere", "theirs", "late"), 1
    )
    assert stats["vertex"]["submits_by_location"] == {
        f"{PROJECT}/{LOCATION}": 3,
        f"{PROJECT}/europe-west4": 1,
        f"other-proj/{LOCATION}": 1,
    }
    assert stats["max_submits_in_window"] == 2


async def test_max_concurrent_ops_and_other_retry_styles(make: MakeSim, clock: FakeClock) -> None:
    sim, v = await make(
        max_concurrent_ops=1, generation_s=(10.0, 10.0), vertex_retry_after_style="message"
    )
    assert (await v.submit("a")).status == 200
    clock.advance(4.0)
    busy = await v.submit("b")
    assert busy.status == 429 and "Please retry in 6s." in busy.error["message"]
    assert [d["@type"].rsplit(".", 1)[1] for d in busy.error["details"]] == ["QuotaFailure"]
    clock.advance(6.0)
    assert (await v.submit("b")).status == 200
    sim.configure(vertex_retry_after_style="none", rate_429=1.0)
    shared = await v.submit("c")
    assert shared.status == 429 and "error-code-429" in shared.error["message"]
    assert "details" not in shared.error and "Retry-After" not in shared.headers
    assert sim.stats()["max_concurrent_ops"] == 1


async def test_a_per_day_quota_is_told_apart(make: MakeSim) -> None:
    _, v = await make(rpd_limit=1, day_s=1000.0)
    assert (await v.submit("p0")).status == 200
    spent = await v.submit("p1")
    assert spent.status == 429
    err = error_for_status(429, spent.headers, json.dumps(spent.body).encode(), "submit")
    assert isinstance(err, QuotaExhausted) and err.retry_after_s == 1000.0


# --------------------------------------------------------------------------- chaos


async def test_counted_faults_and_lost_replies(make: MakeSim) -> None:
    sim, v = await make()
    prompt = "x [sim:503x1][sim:429x1]"
    first, second, third = [await v.submit(prompt) for _ in range(3)]
    assert first.status == 503 and first.error["status"] == "UNAVAILABLE"
    assert second.status == 429
    assert second.error["details"][0]["retryDelay"] == "1s"  # RetryInfo, by default
    assert third.status == 200
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await v.submit("paid [sim:lostx1]")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await v.submit("never [sim:resetx1]")
    stats = sim.stats()
    assert stats["submits_by_prompt"] == {prompt: 1, "paid [sim:lostx1]": 1}
    assert stats["received_by_prompt"] == {
        prompt: 3,
        "paid [sim:lostx1]": 1,
        "never [sim:resetx1]": 1,
    }
    assert stats["requests"]["vertex_submit"] == {"503": 1, "429": 1, "200": 1, "reset": 2}


async def test_random_faults_and_first_polls(make: MakeSim) -> None:
    sim, v = await make(fail_first_polls=1)
    name = (await v.submit()).body["name"]
    assert (await v.fetch(name)).status == 503
    assert (await v.fetch(name)).status == 200
    sim.configure(rate_5xx=1.0)
    assert {(await v.submit(f"p{n}")).status for n in range(12)} == {500, 503}
    sim.configure(rate_5xx=0.0, rate_reset=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await v.fetch(name)
    sim.configure(rate_reset=0.0, rate_content_policy=1.0)
    refused = await v.submit()
    assert refused.status == 400 and "Responsible AI" in refused.error["message"]
    err = error_for_status(400, {}, json.dumps(refused.body).encode(), "submit")
    assert isinstance(err, ContentRejected)


async def test_storage_faults_for_the_clients_checks(make: MakeSim) -> None:
    sim, v = await make()
    params = {**PARAMS, "storageUri": "gs://bkt/f/"}
    corrupt = videos_of(await v.run("c [sim:corruptx1]", params=params))[0]["gcsUri"]
    meta = (await v.storage(corrupt)).body
    bad = (await v.storage(corrupt, media=True)).body
    assert len(bad) == int(meta["size"])
    assert base64.b64encode(hashlib.md5(bad).digest()).decode() != meta["md5Hash"]
    good = (await v.storage(corrupt, media=True)).body
    assert base64.b64encode(hashlib.md5(good).digest()).decode() == meta["md5Hash"]
    cut = videos_of(await v.run("t [sim:truncatedx1]", params=params))[0]["gcsUri"]
    bucket, _, obj = cut.removeprefix("gs://").partition("/")
    url = f"{sim.url}/storage/v1/b/{bucket}/o/{quote(obj, safe='')}?alt=media"
    async with v.http.get(url, headers=await v.auth()) as r:
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    assert (await v.storage(cut, media=True)).status == 200
    hidden = videos_of(await v.run("h [sim:file403]", params=params))[0]["gcsUri"]
    denied = await v.storage(hidden, media=True)
    assert denied.status == 403 and "storage.objects.get" in denied.body["error"]["message"]
    sim.configure(rate_truncated_download=1.0)
    async with v.http.get(url, headers=await v.auth()) as r:
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    reads = sim.stats()["vertex"]["storage_reads"]
    assert reads["corrupted"] == 1 and reads["truncated"] == 2


async def test_latency_applies_to_vertex_too(make: MakeSim) -> None:
    _, v = await make(latency_s=(0.02, 0.02))
    loop = asyncio.get_running_loop()
    start = loop.time()
    await v.submit()
    assert loop.time() - start >= 0.02


# --------------------------------------------------------------------------- secrets


async def test_a_bearer_token_where_it_must_not_be_is_counted(make: MakeSim) -> None:
    sim, v = await make(files_host="localhost", redirect_downloads=True)
    auth = await v.auth()
    gemini = f"{sim.url}/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
    async with v.http.post(gemini, json={}, headers={**auth, "x-goog-api-key": "sim-key"}):
        pass
    assert sim.stats()["bearer_leaks"] == 1  # a Gemini-format endpoint
    uri = videos_of(await v.run("redirected", params={**PARAMS, "storageUri": "gs://bkt/s/"}))[0][
        "gcsUri"
    ]
    first = await v.storage(uri, media=True, allow_redirects=False)
    assert first.status == 302
    location = first.headers["Location"]
    port = sim.url.rsplit(":", 1)[1]
    assert location.startswith(f"http://localhost:{port}/__storage/gcs/bkt/")
    async with v.http.get(location) as r:  # what a careful client does: no token there
        assert r.status == 200 and tag_of(await r.read()).endswith("/sample_0")
    assert sim.stats()["bearer_leaks"] == 1
    async with v.http.get(location.replace("sig=", "sig=0")) as r:
        assert r.status == 403
    # aiohttp itself drops Authorization on a redirect to another host...
    followed = await v.storage(uri, media=True)
    assert followed.status == 200 and tag_of(followed.body).endswith("/sample_0")
    assert sim.stats()["bearer_leaks"] == 1
    # ...but a client that sends its token along to the signed URL is caught.
    async with v.http.get(location, headers=auth) as r:
        assert r.status == 200
    assert sim.stats()["bearer_leaks"] == 2
    # A host other than the simulator's own serves no Vertex API, and counts the token.
    other_host = sim.url.replace("127.0.0.1", "localhost")
    name = (await v.submit()).body["name"]
    path = OperationName.parse(name).fetch_path()
    async with v.http.post(f"{other_host}{path}", json={"operationName": name}, headers=auth) as r:
        assert r.status == 404
    stats = sim.stats()
    assert stats["bearer_leaks"] == 3 and stats["key_leaks"] == 0
    assert stats["requests"]["storage"] == {"200": 3, "403": 1}


# --------------------------------------------------------------------------- setup


async def test_a_key_file_named_in_the_config_is_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Simulator(SimConfig(generation_s=(0.0, 0.0))) as sim:
        key = make_service_account_key(f"{sim.url}/token", project=PROJECT)
        path = key.write(tmp_path / "k.json")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{sim.url}/__sim/config", json={"vertex_keys": [str(path)]}) as r:
                assert r.status == 200 and (await r.json())["vertex_keys"] == [str(path)]
            monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
            source = TokenSource((await asyncio.to_thread(find_identity)).credentials)
            op = await V(http, sim, source).run("trusted from the config")
        assert parse_vertex_operation(op).state == "done"
        refused = sim.config
        with pytest.raises(ValueError, match="not a usable service-account key"):
            sim.configure(vertex_keys=[str(path), str(tmp_path / "missing.json")])
        assert sim.config is refused  # a key refused changes nothing
    with pytest.raises(ValueError, match="not a usable service-account key"):
        Simulator(SimConfig(vertex_keys=(str(tmp_path / "missing.json"),)))


async def test_serve_forever_writes_a_key_google_auth_can_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="batchveo.sim")
    key = tmp_path / "demo-key.json"
    config = SimConfig(generation_s=(0.0, 0.0))
    task = asyncio.create_task(serve_forever(config, "127.0.0.1", 0, write_vertex_key=key))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if "wrote a service-account key" in caplog.text:
            break
    try:
        assert key.stat().st_mode & 0o077 == 0  # a private key: its owner's only
        url = caplog.text.split("listening on ", 1)[1].split()[0]
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        identity = await asyncio.to_thread(find_identity)
        assert identity.project == "batchveo-sim"
        token = (await TokenSource(identity.credentials).token()).reveal()
        assert token not in caplog.text
        body = {"instances": [{"prompt": "demo"}], "parameters": PARAMS}
        path = model_path("batchveo-sim", LOCATION, MODEL)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{url}{path}:predictLongRunning",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as r,
        ):
            assert r.status == 200
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_simulate_refuses_an_unusable_key_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--port", "0", "--vertex-key", str(tmp_path / "none.json")]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "none.json: not a usable service-account key" in lines[0]


def test_every_simulate_flag_is_a_knob() -> None:
    """A flag of ``batchveo simulate`` that sets no SimConfig field would do nothing."""
    from batchveo.cli.commands import simulate

    fields = {f.name for f in dataclasses.fields(SimConfig)}
    own = {"host", "port", "write_vertex_key", "vertex_key_project"}
    flags = {p.name for p in simulate.params if p.name not in own}
    assert flags <= fields, sorted(flags - fields)
    vertex_knobs = {
        "token_lifetime_s",
        "vertex_keys",
        "storage_upload_base",
        "project_number_names",
        "vertex_permission_denied",
        "vertex_retry_after_style",
        "rate_empty",
    }
    assert vertex_knobs <= flags
    cfg = SimConfig.from_mapping(
        {
            "token-lifetime-s": "30",
            "vertex-keys": "a.json,b.json",
            "storage-upload-base": "http://127.0.0.1:9023",
            "project-number-names": "true",
            "vertex-permission-denied": "yes",
            "vertex-retry-after-style": "message",
            "rate-empty": "0.5",
        }
    )
    assert cfg.token_lifetime_s == 30.0 and cfg.vertex_keys == ("a.json", "b.json")
    assert cfg.storage_upload_base == "http://127.0.0.1:9023"
    assert cfg.project_number_names and cfg.vertex_permission_denied
    assert cfg.vertex_retry_after_style == "message" and cfg.rate_empty == 0.5
    for bad in ({"token_lifetime_s": 0}, {"vertex_retry_after_style": "header"}):
        with pytest.raises(ValueError):
            SimConfig.from_mapping(bad)
