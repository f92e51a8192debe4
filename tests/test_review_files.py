"""Reviews of takes too large to send inline, through the Gemini API's Files API, over
real sockets against the real simulator: the upload (started, then streamed from disk),
the wait until the file is ``ACTIVE`` (on an injected clock: nothing sleeps), the review
by ``fileUri``, the deletion; and where the key may go, what a route without the Files
API does, and what the simulator refuses.

The inline budget is made small for the client (``review_inline_limit_bytes``), so a take
of a few kilobytes stands for one of 130 MB.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from batchveo.api import VeoClient, resolve_provider
from batchveo.api.files import (
    ReadyPolicy,
    parse_file,
    start_headers,
    upload_headers,
)
from batchveo.api.transport import Transport
from batchveo.errors import (
    BadRequest,
    FileRefused,
    MalformedAnswer,
    TooLargeToReview,
    Transient,
)
from batchveo.models import has_files_api
from batchveo.mp4 import with_duration
from batchveo.sim import SimConfig, Simulator
from batchveo.verdicts import MediaResolution, ReviewAsk
from tests.helpers import FakeClock
from tests.pipeline_helpers import SAMPLE_MP4

KEY = "sk-files-51d0c3e7aa94-SECRET"
MODEL = "gemini-3.5-flash"
SMALL_BUDGET_BYTES = 1024
"""Under any review's body: every take goes through the Files API."""


@dataclass
class Seen:
    """What reached one server: each request's method, URL and whether it had the key."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    review_bodies: list[dict[str, Any]] = field(default_factory=list)
    before_review: Callable[[], None] = lambda: None

    def middleware(self) -> Any:
        @web.middleware
        async def record(req: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
            self.requests.append((req.method, str(req.url), req.headers.get("x-goog-api-key")))
            if req.path.endswith(":generateContent"):
                self.review_bodies.append(json.loads(await req.read()))
                self.before_review()
            return await handler(req)

        return record

    def paths(self) -> list[str]:
        return [f"{m} {url.split('?')[0].split('/', 3)[3]}" for m, url, _ in self.requests]


@dataclass
class Files:
    sim: Simulator
    seen: Seen
    clock: FakeClock
    sleeps: list[float]
    tmp: Path

    def client(self, provider: str = "custom", **kw: Any) -> VeoClient:
        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            self.clock.advance(seconds)

        options: dict[str, Any] = {
            "review_inline_limit_bytes": SMALL_BUDGET_BYTES,
            "clock": self.clock,
            "sleep": sleep,
            **kw,
        }
        return VeoClient(resolve_provider(provider, self.sim.url), KEY, **options)

    def take(self, seconds: float = 8.0, name: str = "j1~2.mp4") -> Path:
        path = self.tmp / name
        path.write_bytes(with_duration(SAMPLE_MP4, seconds))
        return path

    def requests(self, kind: str) -> dict[str, int]:
        counts: dict[str, int] = self.sim.stats()["requests"][kind]
        return counts


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[Files]:
    clock = FakeClock()
    sim = Simulator(SimConfig(api_key=KEY, seed=11, clock=clock))
    seen = Seen()
    sim.app.middlewares.append(seen.middleware())
    await sim.start()
    try:
        yield Files(sim, seen, clock, [], tmp_path)
    finally:
        await sim.stop()
    stats = sim.stats()
    assert (stats["key_in_url"], stats["key_leaks"], stats["bearer_leaks"]) == (0, 0, 0)
    assert all(KEY not in url for _, url, _ in seen.requests), "the key in a URL"
    # Every call to the provider's own host carried the key in its header.
    assert all(key == KEY for _, _, key in seen.requests)


def ask_for(video: Path, prompt: str = "a lighthouse at dawn") -> ReviewAsk:
    return ReviewAsk(
        video_path=video,
        prompt=prompt,
        rubric="No extra limbs.",
        model=MODEL,
        fps=2.0,
        media_resolution=MediaResolution.LOW,
    )


async def test_a_take_over_the_budget_is_uploaded_reviewed_by_its_uri_and_deleted(
    files: Files,
) -> None:
    video = files.take()
    async with files.client() as client:
        verdict = await client.review(ask_for(video, "a fox [sim:review=3] in snow"))
    assert verdict.score == 3.0 and [d.at for d in verdict.defects] == ["00:05"]
    assert files.seen.paths() == [
        "POST upload/v1beta/files",  # start
        "POST upload/v1beta/files",  # the bytes, to the URL the start gave
        "GET v1beta/files/" + files.seen.paths()[2].rsplit("/", 1)[1],  # PROCESSING
        files.seen.paths()[2],  # ACTIVE
        f"POST v1beta/models/{MODEL}:generateContent",
        "DELETE " + files.seen.paths()[2].removeprefix("GET "),
    ]
    assert files.sleeps == [1.0, 2.0]  # on the injected clock: nothing slept
    stats = files.sim.stats()
    assert (stats["files_uploaded"], stats["files_deleted"]) == (1, 1)
    digest = hashlib.sha256(video.read_bytes()).hexdigest()[:16]
    assert stats["reviews_by_video"] == {digest: 1}  # the very bytes on disk were judged
    [body] = files.seen.review_bodies
    video_part = body["contents"][0]["parts"][0]
    assert "inlineData" not in video_part
    file_id = files.seen.paths()[2].rsplit("/", 1)[1]
    assert video_part["fileData"] == {
        "mimeType": "video/mp4",
        "fileUri": f"{files.sim.url}/v1beta/files/{file_id}",
    }
    assert body["contents"][0]["parts"][1]["text"].startswith("This video was generated")
    assert files.requests("upload") == {"200": 2}
    assert files.requests("file") == {"200": 3}


async def test_a_take_under_the_budget_still_goes_inline(files: Files) -> None:
    async with files.client(review_inline_limit_bytes=20 << 20) as client:
        assert (await client.review(ask_for(files.take()))).score == 8.0
    assert files.seen.paths() == [f"POST v1beta/models/{MODEL}:generateContent"]
    assert "inlineData" in files.seen.review_bodies[0]["contents"][0]["parts"][0]


async def test_the_upload_is_streamed_from_the_file_never_read_whole(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A take of 130 MB must not sit in memory: the transport is handed the open file,
    which aiohttp reads in chunks on a worker thread."""
    bodies: list[tuple[str, object]] = []
    real_call = Transport.call

    async def spy(self: Transport, method: str, url: Any, kind: Any, body: Any, **kw: Any) -> Any:
        bodies.append((kind, body))
        return await real_call(self, method, url, kind, body, **kw)

    monkeypatch.setattr(Transport, "call", spy)
    padding = 3 << 20  # megabytes: as one write, aiohttp would warn that it blocks the loop
    video = files.tmp / "long.mp4"
    video.write_bytes(
        with_duration(SAMPLE_MP4, 8.0) + (padding + 8).to_bytes(4, "big") + b"free" + bytes(padding)
    )
    async with files.client() as client:
        assert (await client.review(ask_for(video))).score == 8.0
    uploads = [b for kind, b in bodies if kind == "file" and not isinstance(b, bytes | None)]
    assert [type(b) for b in uploads] == [io.BufferedReader]
    [upload] = uploads
    assert isinstance(upload, io.BufferedReader) and upload.name == str(video) and upload.closed
    assert all(len(b) < 64 << 10 for _, b in bodies if isinstance(b, bytes))  # JSON only
    digest = hashlib.sha256(video.read_bytes()).hexdigest()[:16]
    assert files.sim.stats()["reviews_by_video"] == {digest: 1}


async def test_an_upload_url_on_another_host_gets_neither_the_bytes_nor_the_key(
    files: Files,
) -> None:
    elsewhere = Seen()
    app = web.Application(middlewares=[elsewhere.middleware()])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    files.sim.configure(upload_host=f"{host}:{port}")
    try:
        async with files.client() as client:
            with pytest.raises(MalformedAnswer) as info:
                await client.review(ask_for(files.take()))
    finally:
        await runner.cleanup()
    assert "another host" in str(info.value) and f"{host}:{port}" in str(info.value)
    assert KEY not in str(info.value) and "upload_id" not in str(info.value)
    assert elsewhere.requests == []
    assert files.seen.paths() == ["POST upload/v1beta/files"]  # the start only
    assert files.sim.stats()["files_uploaded"] == 0


async def test_a_video_the_service_cannot_process_is_a_review_error_and_is_deleted(
    files: Files,
) -> None:
    video = files.tmp / "broken.mp4"
    with video.open("wb") as f:  # sparse, and no MP4: the service fails it
        f.truncate(64 << 10)
    async with files.client() as client:
        with pytest.raises(BadRequest) as info:
            await client.review(ask_for(video))
    assert "could not process" in str(info.value) and "not an MP4" in str(info.value)
    stats = files.sim.stats()
    assert (stats["files_uploaded"], stats["files_deleted"], stats["reviews"]) == (1, 1, 0)
    assert files.requests("review") == {}


async def test_a_file_still_processing_when_time_is_up_is_tried_later(files: Files) -> None:
    files.sim.configure(file_processing_polls=1000)
    policy = ReadyPolicy(first_wait_s=1.0, max_wait_s=4.0, timeout_s=20.0)
    async with files.client(files_ready=policy) as client:
        with pytest.raises(Transient) as info:
            await client.review(ask_for(files.take()))
    assert "still PROCESSING after 20 s" in str(info.value)
    assert files.sleeps == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 1.0]  # bounded: 20 s in all
    stats = files.sim.stats()
    assert (stats["files_uploaded"], stats["files_deleted"], stats["reviews"]) == (1, 1, 0)


async def test_a_file_gone_while_waiting_is_that_files_trouble_not_the_accounts(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    """The Files API says 403 of a missing or expired file: not an account error (which
    would stop every review), and its failed deletion is only logged."""
    caplog.set_level(logging.INFO)

    async def sleep_two_days(seconds: float) -> None:
        files.clock.advance(48 * 3600)

    async with files.client(sleep=sleep_two_days) as client:
        with pytest.raises(FileRefused) as info:
            await client.review(ask_for(files.take()))
    assert "PERMISSION_DENIED" in str(info.value)
    assert files.requests("file") == {"403": 2}  # the state, then the deletion
    assert any("could not delete files/" in r.getMessage() for r in caplog.records)


async def test_a_file_gone_by_the_review_is_that_files_trouble_too(files: Files) -> None:
    files.seen.before_review = lambda: files.clock.advance(48 * 3600)  # expired on the way
    async with files.client() as client:
        with pytest.raises(FileRefused) as info:
            await client.review(ask_for(files.take()))
    assert "PERMISSION_DENIED" in str(info.value) and "the uploaded files/" in str(info.value)
    assert files.requests("review") == {"403": 1}


async def test_gptproto_has_no_files_api_so_a_large_take_is_not_sent(files: Files) -> None:
    assert not has_files_api("gptproto") and has_files_api("gemini") and has_files_api("custom")
    async with files.client("gptproto") as client:
        with pytest.raises(TooLargeToReview) as info:
            await client.review(ask_for(files.take()))
    assert "not sent" in str(info.value)
    assert files.seen.requests == []


async def test_the_gemini_provider_uses_the_files_api(files: Files) -> None:
    async with files.client("gemini") as client:
        assert (await client.review(ask_for(files.take()))).score == 8.0
    assert files.sim.stats()["files_uploaded"] == 1


# --------------------------------------------------------------------------- the simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _start(
    http: aiohttp.ClientSession, sim: Simulator, size: int, **headers: str
) -> aiohttp.ClientResponse:
    sent = {"x-goog-api-key": KEY, **start_headers(size), **headers}
    body = json.dumps({"file": {"display_name": "t.mp4"}})
    return await http.post(f"{sim.url}/upload/v1beta/files", data=body, headers=sent)


async def test_the_simulator_checks_an_upload_as_the_service_does(
    files: Files, http: aiohttp.ClientSession
) -> None:
    sim, data = files.sim, with_duration(SAMPLE_MP4, 4.0)
    no_key = await http.post(f"{sim.url}/upload/v1beta/files", headers=start_headers(10))
    assert no_key.status == 401
    files.seen.requests.clear()  # that one had no key on purpose
    assert (await _start(http, sim, 10, **{"X-Goog-Upload-Protocol": "multipart"})).status == 400
    sim.configure(upload_max_bytes=len(data) - 1)
    assert (await _start(http, sim, len(data))).status == 400
    sim.configure(upload_max_bytes=len(data))
    started = await _start(http, sim, len(data))
    assert started.status == 200
    url = started.headers["X-Goog-Upload-URL"]
    assert url.startswith(f"{sim.url}/upload/v1beta/files?upload_id=")
    key = {"x-goog-api-key": KEY}
    wrong_offset = {**key, **upload_headers(len(data)), "X-Goog-Upload-Offset": "5"}
    assert (await http.post(url, data=data, headers=wrong_offset)).status == 400
    longer = {**key, **upload_headers(len(data) + 1)}  # not the size declared at the start
    assert (await http.post(url, data=data + b"x", headers=longer)).status == 400
    unknown = url.replace("upload_id=", "upload_id=x")
    assert (
        await http.post(unknown, data=data, headers={**key, **upload_headers(len(data))})
    ).status == 404
    done = await http.put(url, data=data, headers={**key, **upload_headers(len(data))})
    assert done.status == 200 and done.headers["X-Goog-Upload-Status"] == "final"
    uploaded = parse_file(await done.json())
    assert uploaded.state == "PROCESSING" and uploaded.size_bytes == len(data)
    assert uploaded.uri == f"{sim.url}{uploaded.path}"
    states = []
    for _ in range(2):
        async with http.get(f"{sim.url}{uploaded.path}", headers=key) as resp:
            states.append(parse_file(await resp.json()).state)
    assert states == ["PROCESSING", "ACTIVE"]
    assert sim.stats()["files_uploaded"] == 1


async def test_the_simulator_reviews_only_an_active_file_of_its_own(
    files: Files, http: aiohttp.ClientSession
) -> None:
    sim, data = files.sim, with_duration(SAMPLE_MP4, 4.0)
    key = {"x-goog-api-key": KEY}
    started = await _start(http, sim, len(data))
    url = started.headers["X-Goog-Upload-URL"]
    done = await http.post(url, data=data, headers={**key, **upload_headers(len(data))})
    file = parse_file(await done.json())

    async def review(uri: str) -> tuple[int, str]:
        part = {"fileData": {"mimeType": "video/mp4", "fileUri": uri}, "videoMetadata": {"fps": 1}}
        body = {
            "contents": [{"role": "user", "parts": [part, {"text": "Judge it."}]}],
            "generationConfig": {"responseMimeType": "application/json", "responseSchema": {}},
        }
        review_url = f"{sim.url}/v1beta/models/{MODEL}:generateContent"
        async with http.post(review_url, json=body, headers=key) as resp:
            answer = await resp.json()
        return resp.status, str(answer.get("error", {}).get("status", "OK"))

    assert await review(file.uri) == (400, "FAILED_PRECONDITION")  # still PROCESSING
    for _ in range(2):
        (await http.get(f"{sim.url}{file.path}", headers=key)).close()
    assert await review(file.uri) == (200, "OK")
    assert await review("https://elsewhere.example/v1beta/files/abc") == (400, "INVALID_ARGUMENT")
    assert await review(f"{sim.url}/v1beta/files/nosuchfile") == (403, "PERMISSION_DENIED")
    deleted = await http.delete(f"{sim.url}{file.path}", headers=key)
    assert deleted.status == 200
    assert (await http.get(f"{sim.url}{file.path}", headers=key)).status == 403
    assert await review(file.uri) == (403, "PERMISSION_DENIED")
    assert sim.stats()["files_deleted"] == 1


async def test_the_simulators_files_expire_after_two_days(
    files: Files, http: aiohttp.ClientSession
) -> None:
    sim, data, key = files.sim, with_duration(SAMPLE_MP4, 4.0), {"x-goog-api-key": KEY}
    url = (await _start(http, sim, len(data))).headers["X-Goog-Upload-URL"]
    done = await http.post(url, data=data, headers={**key, **upload_headers(len(data))})
    file = parse_file(await done.json())
    files.clock.advance(48 * 3600 - 1)
    assert (await http.get(f"{sim.url}{file.path}", headers=key)).status == 200
    files.clock.advance(1)
    assert (await http.get(f"{sim.url}{file.path}", headers=key)).status == 403


# --------------------------------------------------------------------------- pure rules


def test_the_wait_doubles_up_to_its_cap() -> None:
    waits = ReadyPolicy(first_wait_s=0.5, max_wait_s=3.0).waits_s()
    assert [next(waits) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    "answer",
    [
        {"file": {"name": "../../x", "uri": "u", "state": "ACTIVE"}},
        {"file": {"name": "files/abc", "state": "ACTIVE"}},
        {"name": "files/ABC", "uri": "u"},
        [],
    ],
)
def test_a_file_answer_without_a_usable_name_or_uri_is_malformed(answer: Any) -> None:
    with pytest.raises(MalformedAnswer):
        parse_file(answer)


def test_a_failed_file_carries_the_services_reason() -> None:
    failed = parse_file(
        {"name": "files/ab-1", "uri": "u", "state": "FAILED", "error": {"message": "bad codec"}}
    )
    assert (failed.state, failed.error, failed.path) == (
        "FAILED",
        "bad codec",
        "/v1beta/files/ab-1",
    )
