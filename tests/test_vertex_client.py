"""The Vertex AI client over real sockets: a fake Vertex of our own (``fake_vertex``) with
google-auth's real token flow against it, and the real gcp-storage-emulator for Cloud
Storage. Each test asserts what the run will be told, and every test checks that no
access token reached a log record, an exception, a URL or a host it must not reach.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from batchveo.api import VertexClient, probe
from batchveo.api.bearer import MAX_REMEMBERED_TOKENS, BearerToken
from batchveo.api.errormap import STORAGE_ROLE, VERTEX_ROLE, vertex_error_for_status
from batchveo.api.gauth import GoogleIdentity, TokenSource, find_identity
from batchveo.api.vertex import (
    MAX_INLINE_VIDEO_BYTES,
    MAX_INLINE_VIDEOS,
    MAX_POLL_ANSWER_BYTES,
    VERTEX_MODEL_IDS,
)
from batchveo.api.vertex_body import build_vertex_body
from batchveo.errors import (
    AccountError,
    ApiError,
    BadRequest,
    ConfigError,
    MalformedAnswer,
    ModelUnavailable,
    NotFound,
    NotSent,
    RateLimited,
    SubmitOutcomeUnknown,
    Transient,
    UnusableVideo,
    WrongBytes,
)
from batchveo.redact import REDACTED, Secret
from batchveo.routes import Route
from batchveo.sim.gcs import crc32c_b64, md5_b64, upload_object
from batchveo.spec import ImageRef
from tests.fake_vertex import FakeVertex, in_bucket, inline, vertex_error
from tests.helpers import make_spec
from tests.pipeline_helpers import SAMPLE_MP4

MODEL = "veo-3.1-generate-001"
ROUTE = Route("vertex", "proj-1", "us-central1")
MODEL_PATH = "/v1/projects/proj-1/locations/us-central1/publishers/google/models/" + MODEL


@pytest.fixture(autouse=True)
def _google_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real credentials of the machine, no wait on a metadata server."""
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
async def fake(caplog: pytest.LogCaptureFixture) -> AsyncIterator[FakeVertex]:
    """The fake; afterwards, no token it handed out is in a log record or a URL it saw."""
    caplog.set_level(logging.DEBUG)
    async with FakeVertex() as server:
        yield server
    tokens = tokens_seen(server)
    assert tokens, "no request carried a token"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.exc_info or "")
        assert not any(t in text for t in tokens), f"token in a log record: {record.name}"
    for seen in server.seen:
        assert not any(t in seen.url for t in tokens), f"token in a URL: {seen.url}"


def tokens_seen(server: FakeVertex) -> set[str]:
    """Every bearer token a request to the fake carried."""
    return {
        s.headers["Authorization"].removeprefix("Bearer ")
        for s in server.seen
        if "Authorization" in s.headers
    }


@pytest.fixture
async def identity(
    fake: FakeVertex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> GoogleIdentity:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake.key_file(tmp_path / "sa.json")))
    return await asyncio.to_thread(find_identity)


@asynccontextmanager
async def vertex(
    fake: FakeVertex, identity: GoogleIdentity, **kw: Any
) -> AsyncIterator[tuple[VertexClient, TokenSource]]:
    tokens = TokenSource(identity.credentials)
    kw.setdefault("base_url", fake.url)
    kw.setdefault("storage_base_url", fake.url)
    async with VertexClient(identity, tokens, **kw) as client:
        yield client, tokens
    assert not any(t in repr(client) for t in tokens_seen(fake))


async def expect(cls: type[ApiError], aw: Awaitable[Any], fake: FakeVertex) -> ApiError:
    """Await ``aw``, require ``cls``, and check no token is anywhere in the exception."""
    with pytest.raises(ApiError) as info:
        await aw
    exc = info.value
    assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    tokens = tokens_seen(fake)
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen) + repr(seen) + str(seen.args)
        assert not any(t in text for t in tokens), f"token in {type(seen).__name__}"
        seen = seen.__cause__ or seen.__context__
    return exc


def spec(job_id: str = "j1", **kw: Any) -> Any:
    kw.setdefault("params", {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 8})
    kw.setdefault("model", MODEL)
    return make_spec(job_id, route=kw.pop("route", ROUTE), **kw)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- happy paths


async def test_submit_then_poll_inline_videos_with_one_filtered(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    job = spec(params={"durationSeconds": 8, "sampleCount": 3})
    async with vertex(fake, identity) as (client, tokens):
        name = await client.submit(job)
        assert name == f"{MODEL_PATH.removeprefix('/v1/')}/operations/op-1"
        assert (await client.poll(name, MODEL)).state == "running"
        fake.results[name] = inline(
            SAMPLE_MP4, SAMPLE_MP4 + b"x", filtered=1, reasons=("58061214",)
        )
        status = await client.poll(name, MODEL)
        saved = await client.save(status.inline_videos[0], tmp_path / "a.mp4")
    assert status.state == "done" and status.video_uris == ()
    assert status.inline_videos == (SAMPLE_MP4, SAMPLE_MP4 + b"x")
    assert (status.samples_filtered, status.filtered_reasons) == (1, ("58061214",))
    assert saved.path.read_bytes() == SAMPLE_MP4
    assert saved.sha256 == hashlib.sha256(SAMPLE_MP4).hexdigest()
    polls = fake.requests("poll")
    assert [p.raw_path for p in polls] == [f"{MODEL_PATH}:fetchPredictOperation"] * 2
    assert [p.json() for p in polls] == [{"operationName": name}] * 2
    assert [p.status for p in fake.seen] == [200, 200, 200]  # the done one asked once
    assert tokens.refreshes == 1 and fake.issuer.issued == 1  # one token for everything


async def test_the_body_is_what_vertex_takes(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(32))
    (tmp_path / "first.png").write_bytes(png)
    first = ImageRef(str(tmp_path / "first.png"), hashlib.sha256(png).hexdigest(), "image/png")
    last = ImageRef("", "", "image/jpeg", gcs_uri="gs://imgs/last frame.jpg")
    route = Route("vertex", "other-proj", "europe-west4", "gs://out/batch/")
    params = {"durationSeconds": 6, "generateAudio": False, "sampleCount": 2, "seed": None}
    job = spec(params=params, image=first, last_frame=last, route=route)
    async with vertex(fake, identity) as (client, _):
        await client.submit(job)
        await client.submit(spec("j2", route=Route("vertex")))  # the client's defaults
    sent, defaulted = fake.requests("submit")
    assert sent.raw_path == (
        "/v1/projects/other-proj/locations/europe-west4/publishers/google/models/"
        f"{MODEL}:predictLongRunning"
    )
    body = sent.json()
    assert body["parameters"] == {
        "durationSeconds": 6,
        "generateAudio": False,
        "sampleCount": 2,
        "storageUri": "gs://out/batch/",
    }
    assert type(body["parameters"]["durationSeconds"]) is int
    assert body["instances"] == [
        {
            "prompt": job.prompt,
            "image": {
                "mimeType": "image/png",
                "bytesBase64Encoded": base64.b64encode(png).decode(),
            },
            "lastFrame": {"gcsUri": "gs://imgs/last frame.jpg", "mimeType": "image/jpeg"},
        }
    ]
    assert defaulted.raw_path == f"{MODEL_PATH}:predictLongRunning"  # identity's project
    assert defaulted.json()["parameters"] == {
        "aspectRatio": "16:9",
        "resolution": "720p",
        "durationSeconds": 8,
        "generateAudio": True,  # explicit, as Vertex expects
        "sampleCount": 1,
    }
    assert sent.headers["Content-Type"] == "application/json"


def test_a_video_to_extend_must_be_in_cloud_storage() -> None:
    body = build_vertex_body(spec(video_uri="gs://b/prev.mp4"), None)
    assert body["instances"][0]["video"] == {"gcsUri": "gs://b/prev.mp4", "mimeType": "video/mp4"}
    with pytest.raises(BadRequest, match="Cloud Storage only"):
        build_vertex_body(spec(video_uri="https://files.example/v.mp4?sig=secret"), None)


@pytest.fixture
def emulator() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="bkt")
    server.start()
    try:
        yield f"http://127.0.0.1:{server._api._httpd.server_address[1]}"
    finally:
        server.stop()


async def test_videos_in_a_bucket_come_from_the_storage_emulator_verified(
    fake: FakeVertex, identity: GoogleIdentity, emulator: str, tmp_path: Path
) -> None:
    names = ["out/op-1/sample_0.mp4", "out/op-1/sample 1 (b).mp4"]
    async with aiohttp.ClientSession() as session:
        for i, name in enumerate(names):
            await upload_object(session, emulator, "bkt", name, SAMPLE_MP4 + bytes([i]))
    job = spec(route=replace(ROUTE, storage_uri="gs://bkt/out/"))
    async with vertex(fake, identity, storage_base_url=emulator) as (client, _):
        name = await client.submit(job)
        fake.results[name] = in_bucket(*(f"gs://bkt/{n}" for n in names))
        status = await client.poll(name, MODEL)
        assert status.video_uris == ("gs://bkt/out/op-1/sample_0.mp4", f"gs://bkt/{names[1]}")
        results = [
            await client.download(uri, tmp_path / f"v{i}.mp4")
            for i, uri in enumerate(status.video_uris)
        ]
        await expect(NotFound, client.download("gs://bkt/out/gone.mp4", tmp_path / "g.mp4"), fake)
    assert fake.requests("submit")[0].json()["parameters"]["storageUri"] == "gs://bkt/out/"
    for i, result in enumerate(results):
        data = SAMPLE_MP4 + bytes([i])
        assert result.path.read_bytes() == data and result.size == len(data)
        assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert files_in(tmp_path) == ["sa.json", "v0.mp4", "v1.mp4"]


async def test_the_object_name_is_one_encoded_segment_and_crc32c_serves_without_md5(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    uri = fake.put("bkt", "a/b c/sample_0.mp4", SAMPLE_MP4, md5Hash=None)  # composite: no md5
    async with vertex(fake, identity) as (client, _):
        result = await client.download(uri, tmp_path / "v.mp4")
    assert result.path.read_bytes() == SAMPLE_MP4
    meta, media = fake.requests("metadata")[0], fake.requests("media")[0]
    assert meta.raw_path == "/storage/v1/b/bkt/o/a%2Fb%20c%2Fsample_0.mp4"
    assert media.url.endswith("?alt=media&generation=1700000000000001")


# --------------------------------------------------------------------------- tokens


async def test_a_token_expired_mid_run_is_refreshed_once_and_the_request_retried(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    uri = fake.put("bkt", "v.mp4", SAMPLE_MP4)
    async with vertex(fake, identity) as (client, tokens):
        name = await client.submit(spec())
        fake.issuer.expire_all()  # Google's side: the token stopped working
        fake.results[name] = in_bucket(uri)
        status = await client.poll(name, MODEL)
        fake.issuer.expire_all()
        second = await client.submit(spec("j2"))
        fake.issuer.expire_all()
        result = await client.download(uri, tmp_path / "v.mp4")
        # A 401 on the media read itself (after the metadata's 200): refreshed too.
        fake.then("media", lambda r: async_value(vertex_error(401, "UNAUTHENTICATED", "expired")))
        again = await client.download(uri, tmp_path / "w.mp4")
    assert status.video_uris == (uri,) and second.endswith("/op-2")
    assert result.path.read_bytes() == again.path.read_bytes() == SAMPLE_MP4
    assert [(s.endpoint, s.status) for s in fake.seen] == [
        ("submit", 200),
        ("poll", 401),
        ("poll", 200),
        ("submit", 401),  # a 401 means the server did not act: sent again
        ("submit", 200),
        ("metadata", 401),
        ("metadata", 200),
        ("media", 200),
        ("metadata", 200),
        ("media", 401),
        ("media", 200),
    ]
    assert tokens.refreshes == fake.issuer.issued == 5
    assert len(tokens_seen(fake)) == 5


async def test_a_burst_of_401s_costs_one_new_token(
    fake: FakeVertex, identity: GoogleIdentity
) -> None:
    async with vertex(fake, identity) as (client, tokens):
        names = [await client.submit(spec(f"j{i}")) for i in range(5)]
        fake.issuer.expire_all()
        states = await asyncio.gather(*(client.poll(n, MODEL) for n in names))
    assert [s.state for s in states] == ["running"] * 5
    assert tokens.refreshes == fake.issuer.issued == 2
    assert sorted(s.status for s in fake.requests("poll")) == [200] * 5 + [401] * 5


async def async_value(response: web.StreamResponse) -> web.StreamResponse:
    return response


@pytest.mark.parametrize("stage", ["submit", "poll", "download"])
async def test_a_401_after_the_refresh_is_an_account_error(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path, stage: str
) -> None:
    name = f"{MODEL_PATH.removeprefix('/v1/')}/operations/op-9"
    uri = fake.put("bkt", "v.mp4", SAMPLE_MP4)
    fake.refuse_every_token = True
    async with vertex(fake, identity) as (client, tokens):
        call = {
            "submit": lambda: client.submit(spec()),
            "poll": lambda: client.poll(name, MODEL),
            "download": lambda: client.download(uri, tmp_path / "v.mp4"),
        }[stage]
        exc = await expect(AccountError, call(), fake)
    assert "HTTP 401 UNAUTHENTICATED" in str(exc) and "freshly minted" in str(exc)
    assert [s.status for s in fake.seen] == [401, 401]  # one refresh, one retry, no more
    assert tokens.refreshes == 2
    assert files_in(tmp_path) == ["sa.json"]


async def test_the_token_never_goes_to_another_host(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    """A storage redirect to another host (a signed URL, say) gets neither the token nor
    the billing project; Vertex and the storage host get both."""
    elsewhere_seen: list[dict[str, str]] = []

    async def signed(request: web.Request) -> web.Response:
        elsewhere_seen.append(dict(request.headers))
        return web.Response(body=SAMPLE_MP4, content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/signed/v.mp4", signed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    user = replace(identity, user_credentials=True)  # gcloud user credentials bill a project
    uri = fake.put("bkt", "v.mp4", SAMPLE_MP4)
    fake.redirect_media = f"http://{host}:{port}/signed/v.mp4?X-Goog-Signature=abc"
    try:
        async with vertex(fake, user) as (client, _):
            name = await client.submit(spec())
            await client.poll(name, MODEL)
            result = await client.download(uri, tmp_path / "v.mp4")
    finally:
        await runner.cleanup()
    assert result.path.read_bytes() == SAMPLE_MP4
    assert len(elsewhere_seen) == 1
    lowered = {k.lower() for k in elsewhere_seen[0]}
    assert "authorization" not in lowered and "x-goog-user-project" not in lowered
    for seen in fake.seen:
        assert seen.headers["Authorization"].startswith("Bearer ya29.")
        assert seen.headers["x-goog-user-project"] == "proj-1"


def test_the_credential_trusts_only_the_hosts_it_was_given() -> None:
    class Tokens:
        def secrets(self) -> list[Secret]:
            return []

    credential = BearerToken(Tokens(), {"x-goog-user-project": "p"})  # type: ignore[arg-type]
    credential.trust("https://us-central1-aiplatform.googleapis.com")
    credential.trust("http://127.0.0.1:8123")
    token = Secret("ya29.a-token-of-some-length")
    trusted = [
        "https://us-central1-aiplatform.googleapis.com/v1/x",
        "http://127.0.0.1:8123/storage/v1/b/b/o/x",
        "https://127.0.0.1:8123/x",
    ]
    untrusted = [
        "http://us-central1-aiplatform.googleapis.com/v1/x",  # never downgraded to http
        "https://europe-west4-aiplatform.googleapis.com/v1/x",  # not this client's
        "http://127.0.0.1:8124/x",
        "https://storage.googleapis.com.evil.example/x",
    ]
    assert all(credential.headers_for(URL(u)) == {} for u in trusted)  # no token in flight
    with credential.sending(token):
        for u in trusted:
            assert credential.headers_for(URL(u)) == {
                "x-goog-user-project": "p",
                "Authorization": f"Bearer {token.reveal()}",
            }
        assert all(credential.headers_for(URL(u)) == {} for u in untrusted)
    assert credential.headers_for(URL(trusted[0])) == {}  # the block is over


def test_every_token_handed_out_is_scrubbed_not_just_the_current_one() -> None:
    class Tokens:
        def secrets(self) -> list[Secret]:
            return []

    credential = BearerToken(Tokens())  # type: ignore[arg-type]
    tokens = [Secret(f"ya29.token-number-{i:05d}") for i in range(MAX_REMEMBERED_TOKENS + 1)]
    for token in tokens:
        with credential.sending(token):
            pass
    echoed = f"refused {tokens[1].reveal()} and {tokens[-1].reveal()}"
    assert credential.scrub(echoed) == f"refused {REDACTED} and {REDACTED}"
    assert credential.found_in(tokens[1].reveal()) and not credential.found_in(tokens[0].reveal())
    assert tokens[-1].reveal() not in repr(credential)


async def test_a_token_echoed_by_the_server_never_reaches_a_message_or_the_store(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    def echo(status: int, grpc: str) -> Any:
        async def answer(request: web.Request) -> web.Response:
            return vertex_error(status, grpc, f"bad {request.headers['Authorization']} here")

        return answer

    async def token_in_name(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        return web.json_response({"name": f"{MODEL_PATH[4:]}/operations/{token}"})

    async with vertex(fake, identity) as (client, _):
        fake.then("submit", echo(400, "INVALID_ARGUMENT"))
        exc = await expect(BadRequest, client.submit(spec()), fake)
        assert f"bad Bearer {REDACTED} here" in str(exc)
        fake.then("submit", token_in_name)
        exc = await expect(SubmitOutcomeUnknown, client.submit(spec()), fake)
        assert "holds the access token" in str(exc)
        name = await client.submit(spec())
        old = next(iter(tokens_seen(fake)))
        # A 401, so a new token; then the old one echoed: it must still be scrubbed.
        fake.then("poll", lambda r: async_value(vertex_error(401, "UNAUTHENTICATED", "x")))
        fake.then("poll", lambda r: async_value(vertex_error(500, "INTERNAL", f"was {old}")))
        exc = await expect(Transient, client.poll(name, MODEL), fake)
        assert f"was {REDACTED}" in str(exc)
        fake.results[name] = in_bucket(f"gs://bkt/{old}/sample_0.mp4")
        await expect(MalformedAnswer, client.poll(name, MODEL), fake)
        await expect(UnusableVideo, client.download(f"gs://bkt/{old}.mp4", tmp_path / "v"), fake)
    assert len(tokens_seen(fake)) == 2


# --------------------------------------------------------------------------- storage lies


@pytest.mark.parametrize(
    ("lie", "why"),
    [
        ({"md5Hash": md5_b64(b"another video")}, "is not the object's md5Hash"),
        ({"md5Hash": None, "crc32c": crc32c_b64(b"another video")}, "is not the object's crc32c"),
        ({"size": str(len(SAMPLE_MP4) + 100)}, "the object's metadata says"),  # a short object
    ],
    ids=["wrong-md5", "wrong-crc32c", "short"],
)
async def test_bytes_that_are_not_the_objects_never_count(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path, lie: dict[str, Any], why: str
) -> None:
    uri = fake.put("bkt", "v.mp4", SAMPLE_MP4, **lie)
    dest = tmp_path / "out" / "v.mp4"
    dest.parent.mkdir()
    async with vertex(fake, identity) as (client, _):
        exc = await expect(WrongBytes, client.download(uri, dest), fake)
        assert why in str(exc) and "gs://bkt/v.mp4" in str(exc)
        assert files_in(dest.parent) == []  # no video, no .part
        fake.objects[("bkt", "v.mp4")].meta.clear()  # the next try gets the right bytes
        result = await client.download(uri, dest)
    assert result.path == dest and dest.read_bytes() == SAMPLE_MP4


async def test_an_object_over_the_video_cap_is_not_fetched(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    uri = fake.put("bkt", "big.mp4", SAMPLE_MP4, size=str(10 << 20))
    async with vertex(fake, identity, max_video_bytes=1 << 20) as (client, _):
        exc = await expect(UnusableVideo, client.download(uri, tmp_path / "v.mp4"), fake)
        assert "over the cap" in str(exc)
        await expect(UnusableVideo, client.download("https://x.example/v.mp4", tmp_path), fake)
    assert fake.requests("media") == []


# --------------------------------------------------------------------------- caps


async def test_an_inline_answer_over_the_cap_is_refused_without_reading_it_all(
    fake: FakeVertex, identity: GoogleIdentity
) -> None:
    total, sent, ended = 64 << 20, [0], asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            await resp.write(b'{"done": true, "response": {"videos": [{"bytesBase64Encoded": "')
            while sent[0] < total:
                await resp.write(b"A" * 65536)
                sent[0] += 65536
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            ended.set()
        return resp

    name = f"{MODEL_PATH[4:]}/operations/op-1"
    async with vertex(fake, identity, max_poll_bytes=1 << 20) as (client, _):
        fake.then("poll", endless)
        exc = await expect(MalformedAnswer, client.poll(name, MODEL), fake)
        await asyncio.wait_for(ended.wait(), 60)
    assert "(the cap)" in str(exc)
    assert sent[0] < total // 4  # the client stopped reading at the cap


async def test_poll_answers_get_the_large_cap_and_submit_answers_keep_theirs(
    fake: FakeVertex, identity: GoogleIdentity
) -> None:
    big_video = SAMPLE_MP4 + bytes(64 << 10)

    async def padded(request: web.Request) -> web.Response:
        return web.json_response({"name": f"{MODEL_PATH[4:]}/operations/x", "pad": "p" * 8192})

    async with vertex(fake, identity, max_json_bytes=4096) as (client, _):
        name = await client.submit(spec())
        fake.results[name] = inline(big_video)  # ~90 KB of JSON, far over 4096
        status = await client.poll(name, MODEL)
        fake.then("submit", padded)
        await expect(SubmitOutcomeUnknown, client.submit(spec()), fake)
    assert status.inline_videos == (big_video,)


async def test_an_inline_video_over_the_video_cap_is_not_decoded(
    fake: FakeVertex, identity: GoogleIdentity
) -> None:
    async with vertex(fake, identity, max_video_bytes=1024) as (client, _):
        name = await client.submit(spec())
        fake.results[name] = inline(SAMPLE_MP4)
        exc = await expect(MalformedAnswer, client.poll(name, MODEL), fake)
        assert "over the cap of 1024" in str(exc)
        fake.results[name] = {"response": {"videos": [{"bytesBase64Encoded": "not base64!"}]}}
        await expect(MalformedAnswer, client.poll(name, MODEL), fake)


def test_the_poll_cap_holds_four_of_the_largest_inline_videos_in_base64() -> None:
    largest_answer = MAX_INLINE_VIDEOS * len(base64.b64encode(bytes(MAX_INLINE_VIDEO_BYTES)))
    assert largest_answer < MAX_POLL_ANSWER_BYTES < largest_answer + (2 << 20)


# --------------------------------------------------------------------------- poll outcomes


async def test_poll_outcomes_and_the_name_sent_back_as_received(
    fake: FakeVertex, identity: GoogleIdentity
) -> None:
    by_number = (
        f"projects/123456/locations/us-central1/publishers/google/models/{MODEL}/operations/o1"
    )

    async def numbered(request: web.Request) -> web.Response:
        return web.json_response({"name": by_number})

    reason = "Veo could not generate 1 videos based on the prompt provided. Support codes: 4223"
    async with vertex(fake, identity) as (client, _):
        fake.then("submit", numbered)
        name = await client.submit(spec())
        fake.results[name] = {
            "response": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [reason]}
        }
        filtered = await client.poll(name, MODEL)
        fake.results[name] = {
            "error": {"code": 13, "message": "internal\nerror", "status": "INTERNAL"}
        }
        failed = await client.poll(name, MODEL)
        fake.results[name] = {"response": {}}
        empty = await client.poll(name, MODEL)
        await expect(BadRequest, client.poll("models/x/operations/y", MODEL), fake)
    assert name == by_number
    assert fake.requests("poll")[0].raw_path == (
        f"/v1/projects/123456/locations/us-central1/publishers/google/models/{MODEL}"
        ":fetchPredictOperation"
    )
    assert fake.requests("poll")[0].json() == {"operationName": by_number}
    assert (filtered.state, filtered.samples_filtered, filtered.filtered_reasons) == (
        "filtered",
        1,
        (reason,),
    )
    assert (failed.state, failed.error_code, failed.error_message) == (
        "failed",
        13,
        "internal error",
    )
    assert empty.state == "failed" and "known intermittent" in (empty.error_message or "")


# --------------------------------------------------------------------------- errors


async def test_vertex_errors_tell_the_run_what_to_do(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    retired = "veo-3.1-generate-preview"
    not_found = (
        f"Publisher Model `{MODEL_PATH[4:].replace(MODEL, retired)}` was not found or your "
        "project does not have access to it."
    )
    quota = (
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
        f"with base model: {MODEL}. Please submit a quota increase request."
    )
    retry = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45.8s"}]

    def answer(status: int, grpc: str, message: str, **extra: Any) -> Any:
        return lambda r: async_value(vertex_error(status, grpc, message, **extra))

    async with vertex(fake, identity) as (client, _):
        fake.then("submit", answer(404, "NOT_FOUND", not_found))
        gone = await expect(ModelUnavailable, client.submit(spec(model=retired)), fake)
        fake.then("submit", answer(403, "PERMISSION_DENIED", "Permission denied"))
        denied = await expect(AccountError, client.submit(spec()), fake)
        fake.then("submit", answer(429, "RESOURCE_EXHAUSTED", quota, details=retry))
        limited = await expect(RateLimited, client.submit(spec()), fake)
        fake.then("submit", answer(502, "BAD_GATEWAY", "upstream"))
        await expect(SubmitOutcomeUnknown, client.submit(spec()), fake)
        fake.then("metadata", answer(403, "PERMISSION_DENIED", "no storage.objects.get"))
        no_read = await expect(AccountError, client.download("gs://bkt/v.mp4", tmp_path), fake)
        await expect(NotFound, client.download("gs://bkt/missing.mp4", tmp_path), fake)
    assert retired in str(gone) and all(
        m in str(gone) for m in ("veo-3.1-generate-001", "veo-3.1-fast-generate-001")
    )
    assert VERTEX_ROLE in str(denied) and STORAGE_ROLE in str(no_read)
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 45.8


def _map(status: int, body: dict[str, Any], kind: Any = "submit", **kw: Any) -> ApiError:
    return vertex_error_for_status(status, {}, json.dumps(body).encode(), kind, **kw)


def test_the_vertex_rows_of_the_error_map() -> None:
    err = {
        "error": {"code": 404, "status": "NOT_FOUND", "message": "Publisher Model x was not found"}
    }
    gone = _map(404, err, model="veo-9", served_models=("a-001", "b-001"))
    assert type(gone) is ModelUnavailable
    assert "model veo-9 is not served" in str(gone) and "Vertex serves: a-001, b-001" in str(gone)
    assert type(_map(404, err, "poll")) is NotFound
    assert type(_map(404, err, "download", storage=True)) is NotFound
    denied = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "denied"}}
    assert type(_map(403, denied, "poll")) is AccountError
    assert STORAGE_ROLE in str(_map(403, denied, "download", storage=True))
    unauth = {
        "error": {"code": 401, "status": "UNAUTHENTICATED", "message": "bad token ya29.abcdef"}
    }
    refused = _map(
        401, unauth, "download", storage=True, scrub=lambda t: t.replace("ya29.abcdef", "X")
    )
    assert type(refused) is AccountError and "ya29" not in str(refused)
    retry = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
    quota = {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota", "details": retry}
    limited = _map(429, {"error": quota})
    assert type(limited) is RateLimited and limited.retry_after_s == 7.0
    billing = {"error": {"code": 400, "status": "FAILED_PRECONDITION", "message": "billing off"}}
    assert "the Google Cloud project" in str(_map(400, billing))
    assert type(_map(400, {"error": {"message": "bad prompt"}})) is BadRequest
    assert type(_map(503, {"error": {"message": "busy"}}, "poll")) is Transient


def test_the_served_ids_are_the_ga_ids_not_the_retired_previews() -> None:
    assert {"veo-3.1-generate-001", "veo-3.1-fast-generate-001"} <= set(VERTEX_MODEL_IDS)
    assert not any(m.endswith("-preview") for m in VERTEX_MODEL_IDS)


# --------------------------------------------------------------------------- was it sent?


async def test_a_submit_lost_after_sending_is_outcome_unknown(
    fake: FakeVertex, identity: GoogleIdentity
) -> None:
    async def reset(request: web.Request) -> web.Response:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async with vertex(fake, identity) as (client, _):
        fake.then("submit", reset)
        exc = await expect(SubmitOutcomeUnknown, client.submit(spec()), fake)
    assert "may have reached the server" in str(exc)
    assert len(fake.requests("submit")) == 1  # never resent by the client


async def test_a_pooled_connection_found_closing_at_write_is_resent_once(
    fake: FakeVertex, identity: GoogleIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def close_it(session: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
        for proto in list(session.connector._acquired):  # type: ignore[union-attr]
            if proto.transport is not None:
                proto.transport.close()

    def traced() -> aiohttp.TraceConfig:
        tc = original()
        tc.on_connection_reuseconn.append(close_it)
        return tc

    original = probe.trace_config
    monkeypatch.setattr(probe, "trace_config", traced)
    async with vertex(fake, identity) as (client, _):
        await client.submit(spec(prompt="first"))
        await client.submit(spec(prompt="second"))
    prompts = [s.json()["instances"][0]["prompt"] for s in fake.requests("submit")]
    assert prompts == ["first", "second"]  # received exactly once each


async def test_an_unreachable_vertex_sends_nothing(
    fake: FakeVertex, identity: GoogleIdentity, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with vertex(fake, identity, base_url=f"http://127.0.0.1:{port}") as (client, _):
        exc = await expect(NotSent, client.submit(spec()), fake)
        assert fake.seen == []
        await client.download(fake.put("bkt", "v.mp4", SAMPLE_MP4), tmp_path / "v.mp4")
    assert isinstance(exc, NotSent) and exc.unreachable


def test_base_urls_holding_a_secret_are_refused() -> None:
    class Creds:
        token = None

    ident = GoogleIdentity(Creds(), "p", False)
    tokens = TokenSource(Creds())
    for bad in ("http://h/?token=x", "http://user:pw@h", "ftp://h"):
        with pytest.raises(ConfigError) as caught:
            VertexClient(ident, tokens, base_url=bad)
        assert "pw" not in str(caught.value) and "token=x" not in str(caught.value)
