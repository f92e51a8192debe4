"""The HTTP client against the simulator (and a few tiny servers), over real sockets.

Each test asserts what the runner will be told. An autouse fixture checks that the key
appears in no log record, and ``expect`` checks every exception's text and repr.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import batchveo.api as api
from batchveo.api import (
    DownloadResult,
    OperationStatus,
    Provider,
    VeoClient,
    build_request_body,
    parse_operation,
    probe,
    resolve_api_key,
    resolve_provider,
    split_operation_name,
)
from batchveo.api.urls import strip_key
from batchveo.errors import (
    AccountError,
    ApiError,
    BadRequest,
    ConfigError,
    ContentRejected,
    FileRefused,
    ModelUnavailable,
    NotFound,
    NotSent,
    QuotaExhausted,
    RateLimited,
    StopRun,
    SubmitOutcomeUnknown,
    Transient,
    UnusableVideo,
    WrongBytes,
)
from batchveo.redact import REDACTED, Secret
from batchveo.sim import SimConfig, Simulator
from batchveo.spec import ImageRef
from tests.helpers import make_spec
from tests.pipeline_helpers import SAMPLE_MP4, is_sim_video

KEY = "sk-test-7f3a9c0e51b24d6e8a1f-SECRET"
MODEL = "veo-3.1-generate-preview"
VIDEO = SAMPLE_MP4


def whole_sim_video(result: DownloadResult) -> bool:
    """The file is the simulator's video for one operation (its sample, then a free box),
    and the size and sha256 the client reported are those of the file on disk."""
    data = result.path.read_bytes()
    return (
        is_sim_video(result.path)
        and result.size == len(data)
        and result.sha256 == hashlib.sha256(data).hexdigest()
    )


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(64))


class Clock:
    """The simulator's injectable clock: time moves only when a test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.exc_info or "")
        assert KEY not in text, f"key leaked into a log record: {record.name}"


@asynccontextmanager
async def simulated(key: str = KEY, **cfg: Any) -> AsyncIterator[tuple[Simulator, VeoClient]]:
    cfg.setdefault("generation_s", (0.0, 0.0))
    sim = Simulator(SimConfig(api_key=KEY, **cfg))
    await sim.start()
    try:
        async with VeoClient(resolve_provider("custom", sim.url), key) as client:
            assert KEY not in repr(client) and KEY not in str(client)
            yield sim, client
    finally:
        await sim.stop()


@asynccontextmanager
async def tiny_server(app: web.Application) -> AsyncIterator[str]:
    """A throwaway aiohttp.web server for one wire shape the simulator does not make."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def client_for(url: str, **kw: Any) -> VeoClient:
    return VeoClient(resolve_provider("custom", url), KEY, **kw)


async def expect(cls: type[ApiError], aw: Awaitable[Any]) -> ApiError:
    """Await ``aw``, require ``cls``, and check the key is nowhere in the exception."""
    with pytest.raises(ApiError) as info:
        await aw
    exc = info.value
    assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    seen: BaseException | None = exc
    while seen is not None:
        assert KEY not in str(seen) and KEY not in repr(seen) and KEY not in str(seen.args)
        seen = seen.__cause__ or seen.__context__
    return exc


def image_ref(path: Path, data: bytes, mime: str = "image/png") -> ImageRef:
    path.write_bytes(data)
    return ImageRef(str(path), hashlib.sha256(data).hexdigest(), mime)


def uri_of(status: OperationStatus) -> str:
    assert status.state == "done", status
    assert len(status.video_uris) == 1
    return status.video_uris[0]


def no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------ providers


def test_providers_and_trusted_hosts() -> None:
    gp = resolve_provider()
    assert (gp.name, gp.submit_base, gp.query_base) == (
        "gptproto",
        "https://gptproto.com",
        "https://api.gptproto.com",
    )
    assert gp.trusted_hosts() == frozenset({"gptproto.com", "api.gptproto.com"})
    gem = resolve_provider("gemini")
    assert gem.submit_base == gem.query_base == "https://generativelanguage.googleapis.com"
    custom = resolve_provider("custom", "http://127.0.0.1:8123/")
    assert custom.submit_base == custom.query_base == "http://127.0.0.1:8123"
    assert custom.trusted_hosts() == frozenset({"127.0.0.1:8123"})
    assert resolve_provider("gemini", "http://sim:9/").name == "gemini"
    with pytest.raises(ConfigError, match="unknown provider"):
        resolve_provider("openai")
    with pytest.raises(ConfigError, match="base URL"):
        resolve_provider("custom")
    with pytest.raises(ConfigError, match="base URL"):
        resolve_provider("custom", "ftp://example.com")


@pytest.mark.parametrize(
    "base_url",
    [
        f"http://127.0.0.1:8080/?key={KEY}",
        f"https://gptproto.com/v1beta?alt=json&key={KEY}#x",
        f"https://user:{KEY}@gptproto.com",
        f"https://{KEY}@gptproto.com/",
    ],
)
def test_a_base_url_holding_a_secret_is_refused_without_showing_it(base_url: str) -> None:
    """The message goes to stderr, so to cron.log: it shows neither query nor user info."""
    with pytest.raises(ConfigError) as info:
        resolve_provider("custom", base_url)
    text = str(info.value)
    assert KEY not in text and "key=" not in text and "\n" not in text
    assert "gptproto.com" in text or "127.0.0.1:8080" in text
    assert "BATCHVEO_API_KEY" in text


def test_key_goes_only_to_provider_hosts() -> None:
    from yarl import URL

    gp = resolve_provider()
    assert gp.trusts(URL("https://api.gptproto.com/upload/v1beta/files/a:download?alt=media"))
    assert gp.trusts(URL("https://API.gptproto.com:443/x"))
    assert not gp.trusts(URL("http://api.gptproto.com/x"))  # never downgraded to plain http
    assert not gp.trusts(URL("https://api.gptproto.com:8443/x"))
    assert not gp.trusts(URL("https://storage.googleapis.com/bucket/v.mp4?X-Goog-Signature=1"))
    assert not gp.trusts(URL("https://api.gptproto.com.evil.example/x"))


def test_resolve_api_key() -> None:
    assert resolve_api_key("gptproto", {"BATCHVEO_API_KEY": "a", "GPTPROTO_API_KEY": "b"}) == "a"
    assert resolve_api_key("gptproto", {"GPTPROTO_API_KEY": " b \n"}) == "b"
    assert resolve_api_key("custom", {"GPTPROTO_API_KEY": "b"}) == "b"
    assert resolve_api_key("gemini", {"GEMINI_API_KEY": "g", "GPTPROTO_API_KEY": "b"}) == "g"
    with pytest.raises(ConfigError, match="BATCHVEO_API_KEY or GEMINI_API_KEY"):
        resolve_api_key("gemini", {"GPTPROTO_API_KEY": "b", "BATCHVEO_API_KEY": ""})
    with pytest.raises(ConfigError, match="BATCHVEO_API_KEY or GPTPROTO_API_KEY"):
        resolve_api_key("gptproto", {})


# ------------------------------------------------------------------------------ request bodies


def test_request_body_shape(tmp_path: Path) -> None:
    first = image_ref(tmp_path / "a.png", PNG)
    last = image_ref(tmp_path / "b.jpg", JPEG, "image/jpeg")
    spec = make_spec(
        "j1",
        image=first,
        last_frame=last,
        params={"aspectRatio": "9:16", "durationSeconds": 8, "seed": None},
    )
    body = build_request_body(spec)
    assert "inlineData" not in json.dumps(body)
    (inst,) = body["instances"]
    assert inst["image"] == {
        "mimeType": "image/png",
        "bytesBase64Encoded": base64.b64encode(PNG).decode(),
    }
    assert inst["lastFrame"]["mimeType"] == "image/jpeg"
    assert body["parameters"] == {"aspectRatio": "9:16", "durationSeconds": "8"}
    refs = make_spec("j2", reference_images=(first, first), params={"seed": 7})
    body = build_request_body(refs)
    assert body["parameters"] == {"seed": 7}
    assert [r["referenceType"] for r in body["instances"][0]["referenceImages"]] == ["asset"] * 2
    ext = build_request_body(make_spec("j3", video_uri="https://x/files/f:download?alt=media"))
    assert ext["instances"][0]["video"] == {"uri": "https://x/files/f:download?alt=media"}


# ------------------------------------------------------------------------------ happy paths


async def test_text_to_video_end_to_end(tmp_path: Path) -> None:
    async with simulated() as (sim, client):
        name = await client.submit(make_spec("t2v", prompt="a red fox in snow"))
        assert name.startswith(f"models/{MODEL}/operations/")
        status = await client.poll(name, MODEL)
        dest = tmp_path / "videos" / "batch" / "t2v.mp4"
        result = await client.download(uri_of(status), dest)
        stats = sim.stats()
    assert stats["requests"]["submit"] == {"200": 1}
    assert stats["submits_by_prompt"] == {"a red fox in snow": 1}
    assert stats["key_leaks"] == stats["key_in_url"] == 0
    assert result.path == dest and whole_sim_video(result)
    assert no_leftovers(tmp_path) == ["t2v.mp4"]


async def test_image_to_video_with_last_frame(tmp_path: Path) -> None:
    spec = make_spec(
        "i2v",
        image=image_ref(tmp_path / "first.png", PNG),
        last_frame=image_ref(tmp_path / "last.jpg", JPEG, "image/jpeg"),
        params={"aspectRatio": "9:16", "durationSeconds": 6, "personGeneration": "allow_adult"},
    )
    async with simulated() as (sim, client):
        name = await client.submit(spec)
        result = await client.download(uri_of(await client.poll(name, MODEL)), tmp_path / "o.mp4")
        assert sim.stats()["requests"]["submit"] == {"200": 1}
    assert whole_sim_video(result)


async def test_reference_images_and_seed_are_accepted(tmp_path: Path) -> None:
    ref = image_ref(tmp_path / "ref.png", PNG)
    spec = make_spec("refs", reference_images=(ref,), params={"durationSeconds": 8, "seed": 42})
    async with simulated() as (sim, client):
        await client.submit(spec)
        assert sim.stats()["requests"]["submit"] == {"200": 1}


async def test_changed_or_vanished_image_is_a_bad_request_before_sending(tmp_path: Path) -> None:
    ref = image_ref(tmp_path / "a.png", PNG)
    async with simulated() as (sim, client):
        (tmp_path / "a.png").write_bytes(PNG + b"edited")
        exc = await expect(BadRequest, client.submit(make_spec("j", image=ref)))
        assert "changed since the manifest was loaded" in str(exc)
        (tmp_path / "a.png").unlink()
        exc = await expect(BadRequest, client.submit(make_spec("j", image=ref)))
        assert "a.png" in str(exc) and "can no longer be read" in str(exc)
        assert sim.stats()["requests"]["submit"] == {}


# ------------------------------------------------------------------------------ submit errors


@pytest.mark.parametrize(
    ("style", "expected"),
    [("header", 8.0), ("retryinfo", 7.5), ("message", 7.5), ("none", None)],
)
async def test_rate_limited_carries_the_delay(style: str, expected: float | None) -> None:
    async with simulated(retry_after_style=style, retry_after_s=7.5) as (sim, client):
        exc = await expect(RateLimited, client.submit(make_spec("j", prompt="p [sim:429x1]")))
        assert isinstance(exc, RateLimited) and exc.retry_after_s == expected
        assert exc.status == 429 and str(exc).startswith("HTTP 429 RESOURCE_EXHAUSTED: ")
        await client.submit(make_spec("j", prompt="p [sim:429x1]"))  # the retry goes through
        assert sim.stats()["requests"]["submit"] == {"429": 1, "200": 1}


async def test_rpm_quota_is_rate_limited_not_exhausted() -> None:
    async with simulated(rpm_limit=1, retry_after_style="retryinfo") as (_, client):
        await client.submit(make_spec("a"))
        exc = await expect(RateLimited, client.submit(make_spec("b")))
        assert isinstance(exc, RateLimited) and exc.retry_after_s is not None


@pytest.mark.parametrize("code", [500, 503])
async def test_server_errors_are_transient(code: int) -> None:
    async with simulated() as (_, client):
        exc = await expect(Transient, client.submit(make_spec("j", prompt=f"x [sim:{code}x1]")))
        assert exc.status == code


async def test_content_policy_and_bad_request() -> None:
    async with simulated() as (_, client):
        exc = await expect(
            ContentRejected, client.submit(make_spec("j", prompt="[sim:content_policy] x"))
        )
        assert isinstance(exc, ContentRejected) and exc.kind == "content_policy"
        assert str(exc).startswith("HTTP 400 INVALID_ARGUMENT: ")
        exc = await expect(BadRequest, client.submit(make_spec("j", prompt="[sim:bad_request] x")))
        assert isinstance(exc, BadRequest) and exc.kind == "bad_request"
        bad = make_spec("j", params={"durationSeconds": 5})
        await expect(BadRequest, client.submit(bad))


async def test_wrong_key_and_no_balance_are_account_errors() -> None:
    async with simulated(key="sk-wrong-key-000000") as (_, client):
        exc = await expect(AccountError, client.submit(make_spec("j")))
        assert exc.status == 401 and "Invalid signature" in str(exc)
        await expect(AccountError, client.poll(f"models/{MODEL}/operations/abc", MODEL))
    async with simulated(balance_submits=1) as (_, client):
        await client.submit(make_spec("a"))
        exc = await expect(AccountError, client.submit(make_spec("b")))
        assert exc.status == 403 and "insufficient balance" in str(exc)


async def test_retired_and_unknown_models_stop_the_run() -> None:
    retired = "veo-3.1-fast-generate-preview"
    async with simulated(retired_models=(retired,)) as (_, client):
        exc = await expect(ModelUnavailable, client.submit(make_spec("j", model=retired)))
        assert "no longer available" in str(exc)
        await expect(ModelUnavailable, client.submit(make_spec("j", model="veo-9-imaginary")))
        await expect(BadRequest, client.submit(make_spec("j", model="../../etc")))


async def test_reset_after_sending_is_outcome_unknown() -> None:
    prompt = "p [sim:resetx1]"
    async with simulated() as (sim, client):
        exc = await expect(SubmitOutcomeUnknown, client.submit(make_spec("j", prompt=prompt)))
        assert "may have reached the server" in str(exc)
        stats = sim.stats()
        assert stats["received_by_prompt"] == {prompt: 1}
        assert stats["submits_by_prompt"] == {}
        await client.submit(make_spec("j", prompt=prompt))  # a human's decision, not ours
        assert sim.stats()["submits_by_prompt"] == {prompt: 1}


async def test_lost_reply_is_outcome_unknown_and_was_paid() -> None:
    prompt = "p [sim:lostx1]"
    async with simulated() as (sim, client):
        await expect(SubmitOutcomeUnknown, client.submit(make_spec("j", prompt=prompt)))
        assert sim.stats()["submits_by_prompt"] == {prompt: 1}  # why it is never resent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_is_transient_not_unknown() -> None:
    async with client_for(f"http://127.0.0.1:{free_port()}") as client:
        exc = await expect(NotSent, client.submit(make_spec("j")))
        assert isinstance(exc, NotSent) and exc.unreachable  # the whole service is out of reach
        assert "not sent" in str(exc)
        await expect(Transient, client.poll("operations/x", MODEL))
        await expect(Transient, client.download(f"{client.provider.query_base}/f", Path("/nope")))


async def test_read_timeout_after_sending_is_outcome_unknown() -> None:
    hang = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await hang.wait()
        return web.json_response({"name": "operations/late"})

    app = web.Application()
    app.router.add_post(f"/v1beta/models/{MODEL}:predictLongRunning", slow)
    async with tiny_server(app) as url, client_for(url, request_timeout_s=0.2) as client:
        await expect(SubmitOutcomeUnknown, client.submit(make_spec("j")))
        hang.set()


async def test_pooled_connection_closed_by_server_between_requests() -> None:
    """The server closes each keep-alive connection after answering: nothing is lost."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        seen.append(1)
        body = json.dumps({"name": f"operations/op{len(seen)}"}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, client_for(f"http://127.0.0.1:{port}") as client:
        names = [await client.submit(make_spec(f"j{i}")) for i in range(3)]
    assert names == ["operations/op1", "operations/op2", "operations/op3"] and len(seen) == 3


async def test_pooled_connection_found_closing_at_write_is_resent_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race: the pooled connection starts closing after it was handed out, before the
    first byte is written. aiohttp refuses the write, so the submit provably never left,
    and the client sends it again at once on a fresh connection: received exactly once."""

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
    async with simulated() as (sim, client):
        await client.submit(make_spec("a", prompt="first"))
        name = await client.submit(make_spec("b", prompt="second"))
        assert name.startswith("models/") or name.startswith("operations/")
        assert sim.stats()["received_by_prompt"] == {"first": 1, "second": 1}


async def test_submit_200_without_a_name_is_outcome_unknown() -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.Response(text="<html>ok</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post(f"/v1beta/models/{MODEL}:predictLongRunning", odd)
    async with tiny_server(app) as url, client_for(url) as client:
        await expect(SubmitOutcomeUnknown, client.submit(make_spec("j")))


# ------------------------------------------------------------------------------ error envelopes


def google_429(details: list[dict[str, Any]], message: str = "Quota exceeded.") -> dict[str, Any]:
    return {
        "error": {
            "code": 429,
            "message": message,
            "status": "RESOURCE_EXHAUSTED",
            "details": details,
        }
    }


@asynccontextmanager
async def answering(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> AsyncIterator[VeoClient]:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        if isinstance(body, str):
            return web.Response(status=status, text=body, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with tiny_server(app) as url, client_for(url) as client:
        yield client


async def test_per_day_quota_is_exhausted() -> None:
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model_per_day",
        "quotaId": "GenerateRequestsPerDayPerProjectPerModel",
    }
    body = google_429(
        [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}]
    )
    async with answering(429, body) as client:
        exc = await expect(QuotaExhausted, client.submit(make_spec("j")))
        assert exc.status == 429


async def test_retry_after_as_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    async with answering(429, google_429([]), {"Retry-After": when}) as client:
        exc = await expect(RateLimited, client.submit(make_spec("j")))
        assert isinstance(exc, RateLimited)
        assert exc.retry_after_s is not None and 27 <= exc.retry_after_s <= 31


async def test_retry_delay_from_message_and_retryinfo() -> None:
    async with answering(429, google_429([], "Please RETRY IN 43.7s.")) as client:
        exc = await expect(RateLimited, client.submit(make_spec("j")))
        assert isinstance(exc, RateLimited) and exc.retry_after_s == 43.7
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45.8s"}
    async with answering(429, google_429([info], "Please retry in 3s.")) as client:
        exc = await expect(RateLimited, client.submit(make_spec("j")))
        assert isinstance(exc, RateLimited) and exc.retry_after_s == 45.8


async def test_non_json_and_reseller_envelopes() -> None:
    async with answering(502, "<html><body>Bad   Gateway</body></html>") as client:
        exc = await expect(Transient, client.poll("operations/x", MODEL))
        assert str(exc) == "HTTP 502 Bad Gateway: <html><body>Bad Gateway</body></html>"
    reseller = {"error": {"message": "503 Content policy violation", "type": "400"}}
    async with answering(400, reseller) as client:
        exc = await expect(ContentRejected, client.submit(make_spec("j")))
        assert str(exc) == "HTTP 400 Bad Request: 503 Content policy violation"
    async with answering(418, "x" * 5000) as client:
        exc = await expect(BadRequest, client.submit(make_spec("j")))
        assert len(str(exc)) < 400
    async with answering(301, "", {"Location": "https://elsewhere.example/"}) as client:
        await expect(StopRun, client.submit(make_spec("j")))


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (502, "submit", SubmitOutcomeUnknown),
        (504, "submit", SubmitOutcomeUnknown),
        (500, "submit", Transient),
        (503, "submit", Transient),
        (502, "poll", Transient),
        (504, "poll", Transient),
        (504, "download", Transient),
    ],
)
def test_a_gateway_error_on_submit_may_have_created_the_operation(
    status: int, kind: api.Kind, cls: type[ApiError]
) -> None:
    """A 502/504 comes from a proxy (the reseller is one) that may have passed the submit
    on before it gave up: the operation may exist, so it is never resent silently. A 500
    or 503 is the service's own answer that it did not do it; polls and downloads are
    free to repeat."""
    page = b"<html><head><title>504 Gateway Time-out</title></head></html>"
    exc = api.error_for_status(status, {}, page, kind, "Gateway Time-out")
    assert type(exc) is cls and exc.status == status
    assert str(exc).startswith(f"HTTP {status} Gateway Time-out: ")
    if cls is SubmitOutcomeUnknown:
        assert "not resent automatically" in str(exc)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_compressed_json_answers_are_read(coding: str) -> None:
    """Google compresses its JSON when asked; the client inflates it itself (under its cap)."""
    done = {"name": "operations/x", "done": True, "error": {"code": 13, "message": "boom"}}
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        if request.path.endswith(":predictLongRunning"):
            resp = web.json_response(google_429([], "Please retry in 2s."), status=429)
        else:
            resp = web.json_response(done)
        resp.enable_compression(web.ContentCoding(coding))
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with tiny_server(app) as url, client_for(url) as client:
        exc = await expect(RateLimited, client.submit(make_spec("j")))
        assert isinstance(exc, RateLimited) and exc.retry_after_s == 2.0
        status = await client.poll("operations/x", MODEL)
        assert (status.state, status.error_message) == ("failed", "boom")
    assert seen == ["gzip, deflate"] * 2


async def test_control_characters_from_a_server_never_reach_a_message() -> None:
    body = {"error": {"code": 400, "message": "bad\x1b[2J\x00 request\r\nX-Injected: 1"}}
    async with answering(400, body) as client:
        exc = await expect(BadRequest, client.submit(make_spec("j")))
    assert str(exc) == "HTTP 400 Bad Request: bad [2J request X-Injected: 1"


async def test_google_invalid_key_400_is_an_account_error() -> None:
    body = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ],
        }
    }
    async with answering(400, body) as client:
        await expect(AccountError, client.submit(make_spec("j")))


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("User location is not supported for the API use.", "not available from this location"),
        (
            "Gemini API free tier is not available in your country. Please enable billing on "
            "your project in Google AI Studio.",
            "enable billing",
        ),
        ("Precondition check failed.", "enable billing"),
    ],
)
async def test_a_failed_precondition_on_submit_stops_the_run(message: str, hint: str) -> None:
    """Google answers every request of a project it will not serve this way: the next
    submit would get the same, so the run stops instead of failing each job."""
    body = {"error": {"code": 400, "message": message, "status": "FAILED_PRECONDITION"}}
    async with answering(400, body) as client:
        exc = await expect(AccountError, client.submit(make_spec("j")))
        text = str(exc)
        assert text.startswith(f"HTTP 400 FAILED_PRECONDITION: {message}")
        assert hint in text and "\n" not in text and exc.status == 400


async def test_key_echoed_by_a_server_is_scrubbed() -> None:
    body = {
        "error": {"code": 403, "message": f"key {KEY} is suspended", "status": "PERMISSION_DENIED"}
    }
    async with answering(403, body) as client:
        exc = await expect(AccountError, client.submit(make_spec("j")))
        assert REDACTED in str(exc)
        done_with_echo = {"done": True, "error": {"code": 7, "message": f"bad {KEY}"}}
    async with answering(200, done_with_echo) as client:
        status = await client.poll("operations/x", MODEL)
        assert status.state == "failed" and KEY not in (status.error_message or "")


async def test_a_key_at_the_clip_boundary_leaves_no_prefix_behind() -> None:
    """Scrubbed before clipped: a key cut in half by the clip would escape the scrub."""
    message = "x" * (api.MAX_MESSAGE_CHARS - 10) + KEY + " suspended"
    body = {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}
    async with answering(403, body) as client:
        exc = await expect(AccountError, client.submit(make_spec("j")))
        assert KEY[:8] not in str(exc)
    done = {"done": True, "error": {"code": 7, "message": message}}
    async with answering(200, done) as client:
        status = await client.poll("operations/x", MODEL)
        assert KEY[:8] not in (status.error_message or "")


# ------------------------------------------------------------------------------ polling


async def test_poll_running_then_done_nested() -> None:
    clock = Clock()
    async with simulated(generation_s=(60.0, 60.0), clock=clock) as (_, client):
        name = await client.submit(make_spec("j"))
        first = await client.poll(name, MODEL)
        second = await client.poll(name, MODEL)  # the simulator alternates done:false / absent
        assert first == second == OperationStatus("running")
        clock.t += 61
        assert uri_of(await client.poll(name, MODEL)).endswith(":download?alt=media")


async def test_poll_flat_samples_and_short_names(tmp_path: Path) -> None:
    async with simulated(response_style="flat", name_style="short") as (_, client):
        name = await client.submit(make_spec("j"))
        assert name.startswith("operations/") and name.count("/") == 1
        uri = uri_of(await client.poll(name, MODEL))
        assert "/upload/v1beta/files/" in uri
        result = await client.download(uri, tmp_path / "v.mp4")
        assert whole_sim_video(result)


async def test_poll_operation_error_and_filtered() -> None:
    for style in ("nested", "flat"):
        async with simulated(response_style=style) as (_, client):
            failed = await client.poll(
                await client.submit(make_spec("e", prompt="[sim:op_error]")), MODEL
            )
            assert failed.state == "failed" and failed.error_code == 13
            assert failed.error_message == "Video generation failed."
            name = await client.submit(make_spec("f", prompt="[sim:filtered]"))
            filtered = await client.poll(name, MODEL)
            assert filtered.state == "filtered" and filtered.video_uris == ()
            assert len(filtered.filtered_reasons) == 1
            assert "will not be charged" in filtered.filtered_reasons[0]


async def test_poll_unknown_operation_is_not_found() -> None:
    async with simulated() as (_, client):
        await expect(NotFound, client.poll(f"models/{MODEL}/operations/deadbeef", MODEL))
        await expect(NotFound, client.poll("operations/deadbeef", MODEL))
        await expect(BadRequest, client.poll("operations/a?b", MODEL))


async def test_poll_falls_back_to_post_spending_one_405() -> None:
    async with simulated(poll_methods="post") as (sim, client):
        names = [await client.submit(make_spec(f"j{i}")) for i in range(4)]
        await client.poll(names[0], MODEL)
        results = await asyncio.gather(*(client.poll(n, MODEL) for n in names))
        assert all(r.state == "done" for r in results)
        assert sim.stats()["requests"]["poll"] == {"405": 1, "200": 5}


async def test_concurrent_first_polls_spend_one_405() -> None:
    async with simulated(poll_methods="post") as (sim, client):
        names = [await client.submit(make_spec(f"j{i}")) for i in range(5)]
        await asyncio.gather(*(client.poll(n, MODEL) for n in names))
        assert sim.stats()["requests"]["poll"] == {"405": 1, "200": 5}


async def test_405_to_both_methods_stops_the_run() -> None:
    async with answering(405, "Method Not Allowed") as client:
        await expect(StopRun, client.poll("operations/x", MODEL))


@pytest.mark.parametrize(("status", "cls"), [(503, Transient), (429, RateLimited)])
async def test_a_busy_answer_does_not_settle_the_poll_method(
    status: int, cls: type[ApiError]
) -> None:
    cfg = {"poll_methods": "post", "fail_first_polls": 1, "fail_first_polls_status": status}
    async with simulated(**cfg) as (sim, client):
        name = await client.submit(make_spec("j"))
        await expect(cls, client.poll(name, MODEL))  # GET met the front door: proves nothing
        assert (await client.poll(name, MODEL)).state == "done"
        assert (await client.poll(name, MODEL)).state == "done"
        assert sim.stats()["requests"]["poll"] == {str(status): 1, "405": 1, "200": 2}


async def test_a_405_after_settling_negotiates_again() -> None:
    """The server (or a proxy put in front of it) changed its mind about the method."""
    async with simulated(poll_methods="get") as (sim, client):
        name = await client.submit(make_spec("j"))
        assert (await client.poll(name, MODEL)).state == "done"
        sim.configure(poll_methods="post")
        assert (await client.poll(name, MODEL)).state == "done"
        assert (await client.poll(name, MODEL)).state == "done"
        assert sim.stats()["requests"]["poll"] == {"200": 3, "405": 1}


async def test_get_only_server_never_sees_post() -> None:
    async with simulated(poll_methods="get") as (sim, client):
        name = await client.submit(make_spec("j"))
        await client.poll(name, MODEL)
        await client.poll(name, MODEL)
        assert sim.stats()["requests"]["poll"] == {"200": 2}


def test_operation_parsing_edge_cases() -> None:
    assert split_operation_name(f"models/{MODEL}/operations/abc", "other") == (MODEL, "abc")
    assert split_operation_name("operations/abc", MODEL) == (MODEL, "abc")
    assert parse_operation({"name": "x"}) == OperationStatus("running")
    flat = {"done": True, "response": {"raiMediaFilteredCount": 1}}
    assert parse_operation(flat) == OperationStatus("filtered")
    nothing = parse_operation({"done": True, "response": {}})
    assert nothing.state == "failed" and "no video" in (nothing.error_message or "")
    assert parse_operation({"done": True}).state == "failed"


# ------------------------------------------------------------------------------ downloads


async def test_truncated_download_leaves_nothing_and_retry_succeeds(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "v.mp4"
    async with simulated() as (_, client):
        uri = uri_of(
            await client.poll(
                await client.submit(make_spec("j", prompt="[sim:truncatedx1]")), MODEL
            )
        )
        exc = await expect(WrongBytes, client.download(uri, dest))
        assert "truncated download" in str(exc)
        assert no_leftovers(tmp_path) == []
        result = await client.download(uri, dest)
    assert whole_sim_video(result) and no_leftovers(tmp_path) == ["v.mp4"]


@pytest.mark.parametrize("redirect", [True, False])
async def test_keyless_files_host(tmp_path: Path, redirect: bool) -> None:
    async with simulated(files_host="localhost", redirect_downloads=redirect) as (sim, client):
        uri = uri_of(await client.poll(await client.submit(make_spec("j")), MODEL))
        result = await client.download(uri, tmp_path / "v.mp4")
        stats = sim.stats()
    assert whole_sim_video(result)
    assert stats["key_leaks"] == 0 and stats["key_in_url"] == 0
    if redirect:
        assert stats["requests"]["download"] == {"302": 1}
        assert stats["requests"]["storage"] == {"200": 1}
    else:
        assert stats["requests"]["download"] == {"200": 1}


async def test_retention_expiry_is_not_found(tmp_path: Path) -> None:
    clock = Clock()
    async with simulated(clock=clock, retention_s=3600.0) as (_, client):
        name = await client.submit(make_spec("j"))
        uri = uri_of(await client.poll(name, MODEL))
        clock.t += 3601
        await expect(NotFound, client.download(uri, tmp_path / "v.mp4"))
        await expect(NotFound, client.poll(name, MODEL))
    assert no_leftovers(tmp_path) == []


async def test_not_an_mp4_and_redirect_loops(tmp_path: Path) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>captive portal</html>")

    async def loop(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/loop"})

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/loop", loop)
    async with tiny_server(app) as url, client_for(url) as client:
        exc = await expect(WrongBytes, client.download(f"{url}/page", tmp_path / "a.mp4"))
        assert "not an MP4" in str(exc)
        exc = await expect(UnusableVideo, client.download(f"{url}/loop", tmp_path / "b.mp4"))
        assert "redirects" in str(exc)
    assert no_leftovers(tmp_path) == []


async def test_key_sent_to_provider_host_only(tmp_path: Path) -> None:
    """One server under two names: the provider's (127.0.0.1) and a storage one (localhost)."""
    got: list[tuple[str, bool]] = []

    async def hop(request: web.Request) -> web.Response:
        got.append((request.host.rsplit(":", 1)[0], api.KEY_HEADER in request.headers))
        port = request.url.port
        if request.path == "/start":
            return web.Response(
                status=307, headers={"Location": f"http://localhost:{port}/s?sig=1"}
            )
        if request.path == "/s":
            return web.Response(status=302, headers={"Location": f"http://127.0.0.1:{port}/end"})
        return web.Response(body=VIDEO, content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/{p}", hop)
    async with tiny_server(app) as url, client_for(url) as client:
        result = await client.download(f"{url}/start", tmp_path / "v.mp4")
    assert result.size == len(VIDEO)
    assert got == [("127.0.0.1", True), ("localhost", False), ("127.0.0.1", True)]


async def test_storage_refusal_is_transient_not_an_account_error(tmp_path: Path) -> None:
    async def start(request: web.Request) -> web.Response:
        port = request.url.port
        return web.Response(status=302, headers={"Location": f"http://localhost:{port}/s?sig=0"})

    async def storage(request: web.Request) -> web.Response:
        return web.Response(status=403, text="AccessDenied: signature expired")

    app = web.Application()
    app.router.add_get("/start", start)
    app.router.add_get("/s", storage)
    async with tiny_server(app) as url, client_for(url) as client:
        await expect(Transient, client.download(f"{url}/start", tmp_path / "v.mp4"))
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_file_on_the_provider_host_concerns_that_file_only(
    tmp_path: Path, status: int
) -> None:
    """The Files API answers 403 "You do not have permission to access the File ... or it
    may not exist" of a missing or expired file: retry it later, do not stop the run."""
    message = "You do not have permission to access the File abc or it may not exist."
    body = {"error": {"code": status, "message": message, "status": "PERMISSION_DENIED"}}
    async with answering(status, body) as client:
        uri = f"{client.provider.query_base}/v1beta/files/abc:download?alt=media"
        exc = await expect(FileRefused, client.download(uri, tmp_path / "v.mp4"))
        assert exc.status == status and message in str(exc)
        await expect(AccountError, client.poll("operations/x", MODEL))  # the account's word
        await expect(AccountError, client.submit(make_spec("j")))
    assert no_leftovers(tmp_path) == []


def test_a_key_in_a_query_is_stripped_and_the_rest_kept_byte_for_byte() -> None:
    secret = Secret(KEY)
    signed = "https://h/v%20x?X-Goog-Signature=a%2Fb&alt=media"
    assert strip_key(signed, secret) is signed  # nothing to do: untouched
    assert strip_key(f"https://h/v%20x?X-Goog-Signature=a%2Fb&key={KEY}&alt=media#t", secret) == (
        "https://h/v%20x?X-Goog-Signature=a%2Fb&alt=media#t"
    )
    assert strip_key(f"https://h/v?KEY={KEY}", secret) == "https://h/v"
    assert strip_key(f"https://h/v?token=Bearer%20{KEY}", secret) == "https://h/v"
    assert strip_key(f"https://h/{KEY}/v?alt=media", secret) is None
    assert strip_key(f"https://h/v#{KEY}", secret) is None


@pytest.mark.parametrize(
    "name",
    ["operations/a?b", "models/x y/operations/1", "operations/..", "operations/" + "a" * 2000],
)
async def test_an_operation_name_that_cannot_be_polled_is_outcome_unknown(name: str) -> None:
    async with answering(200, {"name": name}) as client:
        exc = await expect(SubmitOutcomeUnknown, client.submit(make_spec("j")))
    assert "neither stored nor polled" in str(exc) and len(str(exc)) < 600


def test_repr_never_shows_the_key() -> None:
    client = VeoClient(Provider("custom", "http://h:1", "http://h:1"), KEY)
    assert KEY not in repr(client) and KEY not in str(vars(client))
