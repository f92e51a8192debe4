"""A review over real sockets: each route's client (``VeoClient`` for the Gemini format,
``VertexClient`` for Vertex AI, tokens from google-auth's own flow) against the real
simulator, asserting what the review stage will be told and what the service saw.

Every test runs on both routes, and checks afterwards that no secret (the API key, a
bearer token handed out) was in a URL, an exception, a log record or a host's request it
did not belong to.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from batchveo.api import ReviewClient, VeoClient, VertexClient, resolve_provider
from batchveo.api.gauth import TokenSource, find_identity
from batchveo.api.review_wire import review_question
from batchveo.errors import (
    AccountError,
    ApiError,
    BadRequest,
    ModelUnavailable,
    RateLimited,
    TooLargeToReview,
    Transient,
    VerdictUnusable,
)
from batchveo.models import review_tokens_in
from batchveo.mp4 import with_duration
from batchveo.sim import SimConfig, Simulator
from batchveo.sim.review import THOUGHTS_TOKENS
from batchveo.sim.tokens import ServiceAccountKey, make_service_account_key
from batchveo.verdicts import INLINE_LIMIT_BYTES, MediaResolution, ReviewAsk, Verdict
from tests.pipeline_helpers import SAMPLE_MP4

KEY = "sk-review-9c1e44a0b7d2-SECRET"
PROJECT = "proj-review"
LOCATION = "us-central1"
MODEL = "gemini-3.5-flash"


@functools.cache
def _shared_key() -> ServiceAccountKey:
    """One RSA key for the module (generating one per test would cost more than the test)."""
    return make_service_account_key("http://unused/token", project=PROJECT)


@dataclass
class Route:
    """One route's client against the simulator, and what the simulator was sent."""

    name: str
    sim: Simulator
    client: VeoClient | VertexClient
    urls: list[str] = field(default_factory=list)
    """Every URL requested, query included."""
    tokens: set[str] = field(default_factory=set)
    """Every bearer token sent."""

    @property
    def secrets(self) -> set[str]:
        return {KEY, *self.tokens}

    def reviews(self) -> dict[str, int]:
        kind = "vertex_review" if self.name == "vertex" else "review"
        counts: dict[str, int] = self.sim.stats()["requests"][kind]
        return counts

    async def review(self, ask: ReviewAsk) -> Verdict:
        reviewer: ReviewClient = self.client  # what the stage is typed against
        return await reviewer.review(ask)

    async def expect(self, cls: type[ApiError], aw: Awaitable[Any]) -> ApiError:
        """Await ``aw``, require ``cls``, and check no secret is anywhere in the exception."""
        with pytest.raises(ApiError) as info:
            await aw
        exc = info.value
        assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
        seen: BaseException | None = exc
        while seen is not None:
            text = str(seen) + repr(seen) + str(seen.args) + str(getattr(seen, "text", ""))
            assert not any(s in text for s in self.secrets), f"a secret in {type(seen).__name__}"
            seen = seen.__cause__ or seen.__context__
        return exc


@pytest.fixture(autouse=True)
def _no_machine_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(params=["gemini", "vertex"])
async def route(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Route]:
    caplog.set_level(logging.DEBUG)
    sim = Simulator(SimConfig(api_key=KEY, seed=7))
    urls: list[str] = []
    tokens: set[str] = set()

    @web.middleware
    async def record(req: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        urls.append(str(req.url))
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            tokens.add(auth.removeprefix("Bearer "))
        return await handler(req)

    sim.app.middlewares.append(record)
    await sim.start()
    client: VeoClient | VertexClient
    if request.param == "gemini":
        # The reseller's route, rehearsed on the simulator: no Files API, so a take over
        # the inline budget is not sent (tests/test_review_files.py has the Files API).
        client = VeoClient(resolve_provider("gptproto", sim.url), KEY)
    else:
        info = {**_shared_key().info, "token_uri": f"{sim.url}/token"}
        sim.trust_key(info)
        key = ServiceAccountKey(info, "").write(tmp_path / "sa.json")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        identity = await asyncio.to_thread(find_identity)
        client = VertexClient(
            identity,
            TokenSource(identity.credentials),
            location_default=LOCATION,
            base_url=sim.url,
            storage_base_url=sim.url,
        )
    route = Route(request.param, sim, client, urls, tokens)
    try:
        async with client:
            yield route
    finally:
        await sim.stop()
    stats = sim.stats()
    assert (stats["key_in_url"], stats["key_leaks"], stats["bearer_leaks"]) == (0, 0, 0)
    assert not any(s in url for url in urls for s in route.secrets), "a secret in a URL"
    assert not any(s in repr(client) for s in route.secrets)
    for record_ in caplog.records:
        text = record_.getMessage() + repr(record_.args) + str(record_.exc_info or "")
        assert not any(s in text for s in route.secrets), f"a secret logged by {record_.name}"


def take(tmp_path: Path, seconds: float = 8.0, name: str = "take.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(with_duration(SAMPLE_MP4, seconds))
    return path


def ask_for(video: Path, prompt: str = "a lighthouse at dawn", **kw: Any) -> ReviewAsk:
    values: dict[str, Any] = {
        "video_path": video,
        "prompt": prompt,
        "rubric": "No extra limbs, no text artefacts.",
        "model": MODEL,
        "fps": 4.0,
        "media_resolution": MediaResolution.LOW,
        **kw,
    }
    return ReviewAsk(**values)


async def test_a_clean_take_passes_with_the_tokens_the_seed_page_gives(
    route: Route, tmp_path: Path
) -> None:
    video = take(tmp_path, 8.0)
    ask = ask_for(video)
    verdict = await route.review(ask)
    assert verdict.score == 8.0 and verdict.passes(7) and verdict.matches_prompt
    assert verdict.defects == ()
    question = review_question(ask.prompt, ask.rubric)
    # 8 s at 4 frames a second and low resolution: 32 frames of 68 tokens, 8 s of audio.
    assert verdict.tokens_in == review_tokens_in(8.0, 4.0, "low", len(question))
    assert verdict.tokens_in == 32 * 68 + 8 * 32 + -(-len(question) // 4)
    assert verdict.tokens_out > THOUGHTS_TOKENS  # the answer and the thinking
    digest = hashlib.sha256(video.read_bytes()).hexdigest()[:16]
    assert route.sim.stats()["reviews_by_video"] == {digest: 1}
    assert route.reviews() == {"200": 1}


async def test_more_frames_and_a_finer_look_cost_more_tokens(route: Route, tmp_path: Path) -> None:
    video = take(tmp_path, 8.0)
    low = await route.review(ask_for(video, fps=1.0, media_resolution=MediaResolution.LOW))
    medium = await route.review(ask_for(video, fps=1.0, media_resolution=MediaResolution.MEDIUM))
    four = await route.review(ask_for(video, fps=4.0, media_resolution=MediaResolution.MEDIUM))
    question = -(-len(review_question("a lighthouse at dawn", ask_for(video).rubric)) // 4)
    assert (low.tokens_in - question, medium.tokens_in - question) == (8 * 100, 8 * 300)
    assert four.tokens_in - question == 32 * 268 + 8 * 32


async def test_a_flagged_take_names_its_defect_at_00_05(route: Route, tmp_path: Path) -> None:
    verdict = await route.review(ask_for(take(tmp_path), "a fox [sim:review=3] in snow"))
    assert verdict.score == 3.0 and not verdict.passes(7)
    assert [(d.at, d.at_s) for d in verdict.defects] == [("00:05", 5)]
    assert verdict.defects[0].issue


@pytest.mark.parametrize(
    ("marker", "said", "text_has"),
    [
        ("bad-json", "breaks the schema", '"score": "great"'),
        ("not-json", "not JSON", "looks good overall"),
        ("refuse", r"stopped \(SAFETY\)", ""),
    ],
)
async def test_an_unusable_answer_carries_the_models_text(
    route: Route, tmp_path: Path, marker: str, said: str, text_has: str
) -> None:
    ask = ask_for(take(tmp_path), f"a fox [sim:review={marker}]")
    exc = await route.expect(VerdictUnusable, route.review(ask))
    assert isinstance(exc, VerdictUnusable)
    assert exc.text == "" if not text_has else text_has in exc.text
    assert re.search(said, str(exc))
    assert route.reviews() == {"200": 1}  # answered once: the model's answer, not a retry


async def test_a_video_of_megabytes_goes_in_chunks_with_its_length(
    route: Route, tmp_path: Path
) -> None:
    """A real take is megabytes: sent as one write, aiohttp warns it blocks the loop (and
    the suite makes warnings errors)."""
    padding = 3 << 20
    video = tmp_path / "big.mp4"
    video.write_bytes(
        with_duration(SAMPLE_MP4, 8.0) + (padding + 8).to_bytes(4, "big") + b"free" + bytes(padding)
    )
    verdict = await route.review(ask_for(video))
    assert verdict.score == 8.0
    digest = hashlib.sha256(video.read_bytes()).hexdigest()[:16]
    assert route.sim.stats()["reviews_by_video"] == {digest: 1}


async def test_a_video_too_large_to_send_inline_is_never_sent(route: Route, tmp_path: Path) -> None:
    video = tmp_path / "huge.mp4"
    with video.open("wb") as f:  # sparse: its base64 alone is over the budget
        f.truncate(INLINE_LIMIT_BYTES * 3 // 4 + 1)
    exc = await route.expect(TooLargeToReview, route.review(ask_for(video)))
    assert "huge.mp4" in str(exc) and "not sent" in str(exc)
    assert route.reviews() == {}
    assert not any(":generateContent" in url for url in route.urls)


async def test_vertex_reads_a_take_in_a_bucket_itself_whatever_its_size(
    route: Route, tmp_path: Path
) -> None:
    """On Vertex a take Vertex wrote to a bucket is named, not sent; the Gemini format has
    no ``gs://`` and sends the file (too large here)."""
    video = tmp_path / "huge.mp4"
    with video.open("wb") as f:
        f.truncate(INLINE_LIMIT_BYTES)
    take_bytes = with_duration(SAMPLE_MP4, 8.0)
    route.sim.objects.put("takes", "night/j1.mp4", take_bytes)
    ask = ask_for(video, "a fox [sim:review=3]", video_uri="gs://takes/night/j1.mp4")
    if route.name == "gemini":
        await route.expect(TooLargeToReview, route.review(ask))
        assert route.reviews() == {}
        return
    verdict = await route.review(ask)
    assert verdict.score == 3.0
    question = review_question(ask.prompt, ask.rubric)
    assert verdict.tokens_in == review_tokens_in(8.0, 4.0, "low", len(question))
    digest = hashlib.sha256(take_bytes).hexdigest()[:16]
    assert route.sim.stats()["reviews_by_video"] == {digest: 1}
    missing = ask_for(video, video_uri="gs://takes/night/gone.mp4")
    exc = await route.expect(BadRequest, route.review(missing))
    assert "gs://takes/night/gone.mp4" in str(exc)
    await route.expect(BadRequest, route.review(ask_for(video, video_uri="https://x/y.mp4")))
    assert route.reviews() == {"200": 1, "400": 1}


async def test_a_429_says_when_to_retry_and_the_retry_gets_the_verdict(
    route: Route, tmp_path: Path
) -> None:
    ask = ask_for(take(tmp_path), "a fox [sim:review=429][sim:review=3]")
    exc = await route.expect(RateLimited, route.review(ask))
    assert isinstance(exc, RateLimited) and exc.retry_after_s == 1.0
    verdict = await route.review(ask)
    assert verdict.score == 3.0
    assert route.reviews() == {"429": 1, "200": 1}


async def test_the_reviews_own_quota_says_when_a_slot_frees_up(
    route: Route, tmp_path: Path
) -> None:
    now = [5000.0]
    route.sim.configure(review_rpm_limit=2, clock=lambda: now[0])
    video = take(tmp_path)
    for _ in range(2):
        await route.review(ask_for(video))
    now[0] += 15
    exc = await route.expect(RateLimited, route.review(ask_for(video)))
    assert isinstance(exc, RateLimited) and exc.retry_after_s == 45.0
    assert "generate_content_requests" in str(exc)
    now[0] += 45
    assert (await route.review(ask_for(video))).score == 8.0
    assert route.reviews() == {"200": 3, "429": 1}


async def test_a_5xx_is_transient(route: Route, tmp_path: Path) -> None:
    ask = ask_for(take(tmp_path), "a fox [sim:review=503x2]")
    await route.expect(Transient, route.review(ask))
    await route.expect(Transient, route.review(ask))
    assert (await route.review(ask)).score == 8.0
    assert route.reviews() == {"503": 2, "200": 1}


async def test_a_model_the_route_does_not_serve_stops_reviews(route: Route, tmp_path: Path) -> None:
    exc = await route.expect(
        ModelUnavailable, route.review(ask_for(take(tmp_path), model="gemini-9"))
    )
    assert "gemini-9" in str(exc)
    route.sim.configure(retired_models=[MODEL])
    await route.expect(ModelUnavailable, route.review(ask_for(take(tmp_path))))


async def test_refused_credentials_are_an_account_error(route: Route, tmp_path: Path) -> None:
    if route.name == "gemini":
        route.sim.configure(api_key="another-key")
    else:
        route.sim.configure(vertex_permission_denied=True)
    await route.expect(AccountError, route.review(ask_for(take(tmp_path))))


async def test_vertex_refreshes_an_expired_token_once_and_reviews(
    route: Route, tmp_path: Path
) -> None:
    if route.name != "vertex":
        pytest.skip("bearer tokens are Vertex's")
    await route.review(ask_for(take(tmp_path)))
    route.sim.issuer.expire_all()
    assert (await route.review(ask_for(take(tmp_path), "[sim:review=3]"))).score == 3.0
    assert route.reviews() == {"200": 2, "401": 1}
    assert len(route.tokens) == 2


async def test_the_simulator_refuses_a_request_over_the_inline_budget(route: Route) -> None:
    """What the service says to a client that sends too much anyway (ours never does)."""
    if route.name == "vertex":
        pytest.skip("the Gemini format's door is enough to see the rule")
    body = json.dumps({"contents": [], "padding": "x" * INLINE_LIMIT_BYTES}).encode()
    url = f"{route.sim.url}/v1beta/models/{MODEL}:generateContent"
    headers = {"x-goog-api-key": KEY, "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=io.BytesIO(body), headers=headers) as resp,
    ):
        answer = await resp.json()
    assert resp.status == 400
    assert "exceeds the limit" in answer["error"]["message"]
