"""The simulator behaves like the documented Veo API, over real sockets.

Time never passes for real: every simulator here runs on a FakeClock the test advances, so
generation, rate windows and retention are exercised in milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from batchveo.models import MODELS
from batchveo.sim import SimConfig, Simulator, serve_forever
from batchveo.sim.generation import LogNormalTime
from batchveo.sim.markers import counted_fault, parse_markers
from batchveo.sim.rules import validate
from tests.helpers import FakeClock

KEY = "test-key"
MODEL = "veo-3.1-generate-preview"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBP = b"RIFF\x20\x00\x00\x00WEBPVP8 " + b"\x00" * 20


def img(data: bytes = PNG, mime: str = "image/png") -> dict[str, str]:
    return {"mimeType": mime, "bytesBase64Encoded": base64.b64encode(data).decode()}


class Client:
    """Thin helpers over a real aiohttp session talking to one simulator."""

    def __init__(self, http: aiohttp.ClientSession, sim: Simulator):
        self.http, self.sim = http, sim

    async def submit(
        self,
        prompt: str = "a lighthouse at dawn",
        params: dict[str, Any] | None = None,
        *,
        key: str | None = KEY,
        model: str = MODEL,
        body: dict[str, Any] | None = None,
        **instance: Any,
    ) -> tuple[int, Any, Any]:
        if body is None:
            body = {"instances": [{"prompt": prompt, **instance}], "parameters": params or {}}
        headers = {"x-goog-api-key": key} if key else {}
        url = f"{self.sim.url}/v1beta/models/{model}:predictLongRunning"
        async with self.http.post(url, json=body, headers=headers) as r:
            return r.status, await r.json(content_type=None), r.headers

    async def poll(self, name: str, method: str = "GET", key: str | None = KEY) -> tuple[int, Any]:
        headers = {"x-goog-api-key": key} if key else {}
        async with self.http.request(method, f"{self.sim.url}/v1beta/{name}", headers=headers) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    async def run(self, prompt: str = "a lighthouse at dawn", **kw: Any) -> dict[str, Any]:
        """Submit, finish, poll: the done operation."""
        status, body, _ = await self.submit(prompt, **kw)
        assert status == 200, body
        self.sim.finish_all()
        status, op = await self.poll(body["name"])
        assert status == 200 and op["done"] is True
        return op

    async def get(self, url: str, key: str | None = KEY, **kw: Any) -> tuple[int, bytes, Any]:
        headers = {"x-goog-api-key": key} if key else {}
        async with self.http.get(url, headers=headers, **kw) as r:
            return r.status, await r.read(), r.headers


def uri_of(op: dict[str, Any]) -> str:
    return op["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]


MakeSim = Callable[..., Awaitable[tuple[Simulator, Client]]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(clock: FakeClock) -> AsyncIterator[MakeSim]:
    sims: list[Simulator] = []
    async with aiohttp.ClientSession() as http:

        async def factory(**kw: Any) -> tuple[Simulator, Client]:
            kw = {"api_key": KEY, "clock": clock, "generation_s": (10.0, 20.0), "seed": 7, **kw}
            sim = Simulator(SimConfig(**kw))
            await sim.start()
            sims.append(sim)
            return sim, Client(http, sim)

        yield factory
        for sim in sims:
            await sim.stop()


async def test_happy_path_submit_poll_download(make: MakeSim, clock: FakeClock) -> None:
    sim, c = await make()
    status, body, _ = await c.submit(params={"durationSeconds": "8", "aspectRatio": "9:16"})
    assert status == 200
    name = body["name"]
    assert name.startswith(f"models/{MODEL}/operations/")
    op_id = name.rsplit("/", 1)[1]
    # Still running: "done" false or absent, both forms appear.
    seen = [await c.poll(name), await c.poll(f"operations/{op_id}", method="POST")]
    assert all(s == 200 and not b.get("done") for s, b in seen)
    assert {"done" in b for _, b in seen} == {True, False}
    clock.advance(20.0)
    status, op = await c.poll(name)
    assert status == 200 and op["done"] is True and op["name"] == name
    assert op["response"]["@type"].endswith("PredictLongRunningResponse")
    uri = uri_of(op)
    assert uri.startswith(sim.url) and uri.endswith(":download?alt=media")
    status, data, headers = await c.get(uri)
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    assert int(headers["Content-Length"]) == len(data) > 10_000
    assert data[4:8] == b"ftyp"
    stats = sim.stats()
    assert stats["requests"]["submit"] == {"200": 1}
    assert stats["requests"]["poll"] == {"200": 3}
    assert stats["requests"]["download"] == {"200": 1}
    assert stats["operations"] == {"created": 1, "done": 1, "failed": 0, "filtered": 0}
    assert stats["accepted_submit_times"] == [1000.0]


async def test_short_names_flat_response_and_upload_path(make: MakeSim) -> None:
    _, c = await make(name_style="short", response_style="flat")
    status, body, _ = await c.submit()
    assert status == 200 and body["name"].startswith("operations/")
    op = await c.run("second")
    uri = op["response"]["generatedSamples"][0]["video"]["uri"]
    assert "/upload/v1beta/files/" in uri
    status, data, _ = await c.get(uri)
    assert status == 200 and data[4:8] == b"ftyp"


@pytest.mark.parametrize(
    ("instance", "params", "expect"),
    [
        ({"image": {"inlineData": {"mimeType": "image/png", "data": "AA=="}}}, {}, "inlineData"),
        ({}, {"durationSeconds": 5}, "durationSeconds"),
        ({}, {"durationSeconds": "8.0"}, "durationSeconds"),
        ({}, {"durationSeconds": " 8"}, "durationSeconds"),
        ({}, {"durationSeconds": True}, "durationSeconds"),
        ({}, {"resolution": "1080p", "durationSeconds": 4}, "requires durationSeconds 8"),
        ({}, {"resolution": "4k", "durationSeconds": "6"}, "requires durationSeconds 8"),
        ({}, {"resolution": "2k"}, "resolution"),
        ({}, {"aspectRatio": "1:1"}, "aspectRatio"),
        ({"lastFrame": img()}, {}, "lastFrame requires image"),
        ({"referenceImages": [{"image": img(), "referenceType": "asset"}] * 4}, {}, "at most 3"),
        ({"referenceImages": [{"image": img(), "referenceType": "style"}]}, {}, "asset"),
        (
            {"referenceImages": [{"image": img(), "referenceType": "asset"}]},
            {"durationSeconds": 6},
            "8",
        ),
        ({}, {"sampleCount": 2}, "sampleCount"),
        ({"image": {"mimeType": "image/png", "bytesBase64Encoded": "%%%not base64"}}, {}, "Base64"),
        ({"image": img(JPEG, "image/png")}, {}, "not a valid image/png"),
        ({"image": img(PNG, "image/gif")}, {}, "mimeType"),
        ({}, {"fps": 24}, 'Unknown name "fps"'),
        ({"audio": True}, {}, 'Unknown name "audio"'),
        ({}, {"personGeneration": "allow_none"}, "personGeneration"),
        ({"image": img()}, {"personGeneration": "allow_all"}, "allow_adult"),
        ({}, {"personGeneration": "allow_adult"}, "allow_all"),
        ({}, {"enhancePrompt": "yes"}, "enhancePrompt"),
        ({}, {"seed": -1}, "seed"),
        ({}, {"seed": 2**32}, "seed"),
        ({"video": {"uri": "http://x/v1beta/files/nope:download?alt=media"}}, {}, "video"),
    ],
)
async def test_validation_rejects(
    make: MakeSim, instance: dict[str, Any], params: dict[str, Any], expect: str
) -> None:
    sim, c = await make()
    status, body, _ = await c.submit("p", params, **instance)
    assert status == 400, body
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["code"] == 400
    assert expect in body["error"]["message"]
    assert sim.stats()["operations"]["created"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"instances": []},
        {"instances": [{"prompt": "a"}, {"prompt": "b"}]},
        {"instances": [{"prompt": "  "}]},
        {"instances": [{}]},
        {"instances": [{"prompt": "a"}], "extra": 1},
        {"instances": [{"prompt": "a"}], "parameters": []},
    ],
)
async def test_malformed_bodies_rejected(make: MakeSim, body: dict[str, Any]) -> None:
    _, c = await make()
    status, resp, _ = await c.submit(body=body)
    assert status == 400 and resp["error"]["status"] == "INVALID_ARGUMENT"


async def test_valid_variants_accepted(make: MakeSim) -> None:
    _, c = await make()
    ref = {"image": img(WEBP, "image/webp"), "referenceType": "asset"}
    ok_cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({}, {"durationSeconds": 6, "enhancePrompt": False, "seed": 2**32 - 1}),
        ({}, {"resolution": "1080p", "durationSeconds": "8", "personGeneration": "allow_all"}),
        ({"image": img(JPEG, "image/jpeg")}, {"personGeneration": "allow_adult"}),
        ({"image": img(), "lastFrame": img(WEBP, "image/webp")}, {"durationSeconds": 4}),
        ({"referenceImages": [ref] * 3}, {"durationSeconds": 8, "negativePrompt": "blur"}),
        ({}, {"sampleCount": 1, "resolution": "4k"}),
    ]
    for instance, params in ok_cases:
        status, body, _ = await c.submit("p", params, **instance)
        assert status == 200, (instance.keys(), params, body)
    # Extension: a previous output, 720p and 8 s only.
    uri = uri_of(await c.run("source"))
    status, body, _ = await c.submit("extend", {"durationSeconds": 8}, video={"uri": uri})
    assert status == 200, body
    status, body, _ = await c.submit("extend", {"resolution": "1080p"}, video={"uri": uri})
    assert status == 400 and "720p" in body["error"]["message"]


async def test_model_capabilities_follow_the_model_table(make: MakeSim) -> None:
    _, c = await make()
    lite = "veo-3.1-lite-generate-preview"
    status, body, _ = await c.submit("p", {"resolution": "4k"}, model=lite)
    assert status == 400 and "resolution" in body["error"]["message"]
    ref = {"image": img(), "referenceType": "asset"}
    status, body, _ = await c.submit("p", {}, model=lite, referenceImages=[ref])
    assert status == 400 and "not supported" in body["error"]["message"]


async def test_unknown_and_retired_models(make: MakeSim) -> None:
    _, c = await make(retired_models=("veo-3.1-fast-generate-preview",))
    status, body, _ = await c.submit(model="veo-9")
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    assert "models/veo-9 is not found for API version v1beta" in body["error"]["message"]
    status, body, _ = await c.submit(model="veo-3.1-fast-generate-preview")
    assert status == 404 and "is no longer available" in body["error"]["message"]


async def test_auth_errors_use_the_reseller_envelope(make: MakeSim) -> None:
    sim, c = await make()
    for key in (None, "wrong"):
        status, body, _ = await c.submit("p", key=key)
        assert status == 401 and body == {"error": {"message": "Invalid signature", "type": "401"}}
    op = await c.run("ok")
    assert (await c.poll(op["name"], key="wrong"))[0] == 401
    assert (await c.get(uri_of(op), key=None))[0] == 401
    # ?key= works on Google but leaks into logs: refused here, and counted.
    url = f"{sim.url}/v1beta/models/{MODEL}:predictLongRunning?key={KEY}"
    async with c.http.post(url, json={"instances": [{"prompt": "p"}]}) as r:
        assert r.status == 401
    stats = sim.stats()
    assert stats["key_in_url"] == 1
    assert stats["received_by_prompt"]["p"] == 3  # rejected submits are still received


async def test_insufficient_balance_and_runtime_config(make: MakeSim) -> None:
    sim, c = await make(balance_submits=2)
    assert [(await c.submit(f"p{i}"))[0] for i in range(3)] == [200, 200, 403]
    _, body, _ = await c.submit("p3")
    assert body["error"]["type"] == "403" and "insufficient balance" in body["error"]["message"]
    async with c.http.post(f"{sim.url}/__sim/config", json={"balance_submits": None}) as r:
        assert r.status == 200 and (await r.json())["balance_submits"] is None
    assert (await c.submit("p4"))[0] == 200
    async with c.http.post(f"{sim.url}/__sim/config", json={"no_such_knob": 1}) as r:
        assert r.status == 400
    async with c.http.post(f"{sim.url}/__sim/config", json={"poll_methods": "sideways"}) as r:
        assert r.status == 400


@pytest.mark.parametrize(("allowed", "refused"), [("get", "POST"), ("post", "GET")])
async def test_poll_methods(make: MakeSim, allowed: str, refused: str) -> None:
    _, c = await make(poll_methods=allowed)
    _, body, _ = await c.submit()
    assert (await c.poll(body["name"], method=allowed.upper()))[0] == 200
    async with c.http.request(refused, f"{c.sim.url}/v1beta/{body['name']}") as r:
        assert r.status == 405 and r.headers["Allow"] == allowed.upper()


@pytest.mark.parametrize("style", ["header", "retryinfo", "message", "none"])
async def test_random_429_in_each_retry_style(make: MakeSim, style: str) -> None:
    sim, c = await make(rate_429=1.0, retry_after_style=style, retry_after_s=1.5)
    status, body, headers = await c.submit()
    assert status == 429
    err = body["error"]
    assert err["code"] == 429 and err["status"] == "RESOURCE_EXHAUSTED"
    assert ("Retry-After" in headers) == (style == "header")
    if style == "header":
        assert headers["Retry-After"] == "2"  # whole seconds, rounded up
    delays = [d["retryDelay"] for d in err.get("details", []) if "retryDelay" in d]
    assert delays == (["1.5s"] if style == "retryinfo" else [])
    assert ("Please retry in 1.5s." in err["message"]) == (style == "message")
    assert sim.stats()["quota_violations"] == 0  # a random 429 is not a quota breach


async def test_rpm_limit_is_a_sliding_window(make: MakeSim, clock: FakeClock) -> None:
    sim, c = await make(rpm_limit=3, rate_window_s=60.0, retry_after_style="retryinfo")
    for i in range(3):
        assert (await c.submit(f"p{i}"))[0] == 200
        clock.advance(10.0)
    status, body, _ = await c.submit("late")  # at t+30 the first submit frees at t+60
    assert status == 429
    details = {d["@type"].rsplit(".", 1)[1]: d for d in body["error"]["details"]}
    assert details["RetryInfo"]["retryDelay"] == "30s"
    quota = details["QuotaFailure"]["violations"][0]
    assert "PerMinute" in quota["quotaId"] and quota["quotaValue"] == "3"
    assert (await c.submit("p-bad", {"durationSeconds": 5}))[0] == 400  # a 400 is not quota
    clock.advance(29.9)
    assert (await c.submit("late"))[0] == 429
    clock.advance(0.1)
    assert (await c.submit("late"))[0] == 200
    assert (await c.submit("later"))[0] == 429
    stats = sim.stats()
    assert stats["max_submits_in_window"] == 3
    assert stats["quota_violations"] == 3
    assert stats["submits_by_prompt"] == {"p0": 1, "p1": 1, "p2": 1, "late": 1}
    assert stats["received_by_prompt"]["late"] == 3


async def test_rpm_limit_header_style_and_polls_counted(make: MakeSim) -> None:
    _, c = await make(rpm_limit=2, rate_window_s=0.5, count_polls_in_rpm=True)
    _, body, _ = await c.submit()
    assert (await c.poll(body["name"]))[0] == 200
    status, _, headers = await c.submit()
    assert status == 429 and headers["Retry-After"] == "1"
    assert (await c.poll(body["name"]))[0] == 429


async def test_max_concurrent_ops(make: MakeSim, clock: FakeClock) -> None:
    sim, c = await make(
        max_concurrent_ops=2, generation_s=(10.0, 10.0), retry_after_style="message"
    )
    assert (await c.submit("a"))[0] == 200
    clock.advance(4.0)
    assert (await c.submit("b"))[0] == 200
    status, body, _ = await c.submit("c")
    assert status == 429 and "Please retry in 6s." in body["error"]["message"]
    assert body["error"]["details"][0]["@type"].endswith("QuotaFailure")
    clock.advance(6.0)  # "a" finishes generating: a slot is free
    assert (await c.submit("c"))[0] == 200
    stats = sim.stats()
    assert stats["max_concurrent_ops"] == 2 and stats["quota_violations"] == 1
    assert stats["operations"]["done"] == 1 and stats["running_ops"] == 2


async def test_max_concurrent_stat_counts_only_generating_ops(
    make: MakeSim, clock: FakeClock
) -> None:
    sim, c = await make(generation_s=(10.0, 10.0))
    for prompt in ("a", "b", "c"):
        assert (await c.submit(prompt))[0] == 200
        clock.advance(10.0)
    assert sim.stats()["max_concurrent_ops"] == 1


async def test_retention_expires_operation_and_file(make: MakeSim, clock: FakeClock) -> None:
    _, c = await make(retention_s=100.0)
    op = await c.run()
    assert (await c.get(uri_of(op)))[0] == 200
    clock.advance(99.0)
    assert (await c.poll(op["name"]))[0] == 200
    clock.advance(1.0)
    assert (await c.poll(op["name"]))[0] == 404
    status, body, _ = await c.get(uri_of(op))
    assert status == 404 and b"NOT_FOUND" in body
    assert (await c.poll("operations/unknown"))[0] == 404


async def test_files_host_needs_no_key_and_counts_leaks(make: MakeSim) -> None:
    sim, c = await make(files_host="localhost")
    uri = uri_of(await c.run())
    port = sim.url.rsplit(":", 1)[1]
    assert uri.startswith(f"http://localhost:{port}/v1beta/files/")
    status, data, _ = await c.get(uri, key=None)
    assert status == 200 and data[4:8] == b"ftyp"
    assert sim.stats()["key_leaks"] == 0
    assert (await c.get(uri))[0] == 200
    assert sim.stats()["key_leaks"] == 1
    api_uri = uri.replace("localhost", "127.0.0.1")
    assert (await c.get(api_uri, key=None))[0] == 401  # on the API host the key is required


async def test_redirected_downloads(make: MakeSim) -> None:
    sim, c = await make(files_host="localhost", redirect_downloads=True)
    uri = uri_of(await c.run())
    assert uri.startswith(sim.url)
    assert (await c.get(uri, key=None, allow_redirects=False))[0] == 401
    status, _, headers = await c.get(uri, allow_redirects=False)
    assert status == 302
    location = headers["Location"]
    assert location.startswith("http://localhost:") and "/__storage/" in location
    status, data, _ = await c.get(location, key=None)
    assert status == 200 and data[4:8] == b"ftyp"
    assert sim.stats()["key_leaks"] == 0
    assert (await c.get(location.replace("sig=", "sig=0"), key=None))[0] == 403
    # A naive client that follows the redirect with its headers hands the key to storage.
    assert (await c.get(uri))[0] == 200
    stats = sim.stats()
    assert stats["key_leaks"] == 1
    assert stats["requests"]["download"] == {"401": 1, "302": 2}
    assert stats["requests"]["storage"] == {"200": 2, "403": 1}


async def test_redirect_without_files_host_stays_on_api_host(make: MakeSim) -> None:
    sim, c = await make(redirect_downloads=True)
    status, _, headers = await c.get(uri_of(await c.run()), allow_redirects=False)
    assert status == 302 and headers["Location"].startswith(f"{sim.url}/__storage/")


async def test_outcome_markers(make: MakeSim, clock: FakeClock) -> None:
    sim, c = await make()
    status, body, _ = await c.submit("nope [sim:content_policy]")
    assert status == 400 and "usage guidelines" in body["error"]["message"]
    status, body, _ = await c.submit("nope [sim:bad_request]")
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    failed = await c.run("boom [sim:op_error]")
    assert failed["error"] == {
        "code": 13,
        "message": failed["error"]["message"],
        "status": "INTERNAL",
    }
    assert "response" not in failed
    filtered = (await c.run("risky [sim:filtered]"))["response"]["generateVideoResponse"]
    assert filtered["raiMediaFilteredCount"] == 1 and filtered["raiMediaFilteredReasons"]
    assert "generatedSamples" not in filtered
    _, body, _ = await c.submit("slow [sim:slow]")
    clock.advance(19.99)
    assert not (await c.poll(body["name"]))[1].get("done")
    clock.advance(0.01)
    assert (await c.poll(body["name"]))[1]["done"] is True
    assert sim.stats()["operations"] == {"created": 3, "done": 1, "failed": 1, "filtered": 1}


async def test_counted_fault_markers(make: MakeSim) -> None:
    sim, c = await make()
    p500, p429 = "x [sim:500x2]", "y [sim:429x1]"
    assert [(await c.submit(p500))[0] for _ in range(3)] == [500, 500, 200]
    assert [(await c.submit(p429))[0] for _ in range(2)] == [429, 200]
    mixed = "z [sim:resetx1][sim:503x1]"
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await c.submit(mixed)
    status, body, _ = await c.submit(mixed)
    assert status == 503 and body["error"]["status"] == "UNAVAILABLE"
    assert (await c.submit(mixed))[0] == 200
    stats = sim.stats()
    assert stats["received_by_prompt"] == {p500: 3, p429: 2, mixed: 3}
    assert stats["submits_by_prompt"] == {p500: 1, p429: 1, mixed: 1}
    assert stats["requests"]["submit"] == {"500": 2, "429": 1, "reset": 1, "503": 1, "200": 3}


async def test_lost_reply_still_creates_the_operation(make: MakeSim) -> None:
    sim, c = await make()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await c.submit("paid [sim:lostx1]")
    stats = sim.stats()
    assert stats["operations"]["created"] == 1
    assert stats["submits_by_prompt"] == {"paid [sim:lostx1]": 1}


async def test_truncated_download_marker(make: MakeSim) -> None:
    sim, c = await make()
    uri = uri_of(await c.run("cut [sim:truncatedx1]"))
    async with c.http.get(uri, headers={"x-goog-api-key": KEY}) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    status, data, _ = await c.get(uri)
    assert status == 200 and data[4:8] == b"ftyp"
    assert sim.stats()["truncated_downloads"] == 1


async def test_random_failure_rates(make: MakeSim) -> None:
    sim, c = await make(rate_5xx=1.0)
    statuses = {(await c.submit(f"p{i}"))[0] for i in range(12)}
    assert statuses == {500, 503}
    sim.configure(rate_5xx=0.0, rate_reset=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await c.submit()
    sim.configure(rate_reset=0.0, rate_content_policy=1.0)
    assert "usage guidelines" in (await c.submit())[1]["error"]["message"]
    sim.configure(rate_content_policy=0.0, rate_operation_error=1.0)
    assert (await c.run("e"))["error"]["code"] == 13
    sim.configure(rate_operation_error=0.0, rate_filtered=1.0)
    assert "raiMediaFilteredCount" in (await c.run("f"))["response"]["generateVideoResponse"]
    sim.configure(rate_filtered=0.0, rate_truncated_download=1.0)
    async with c.http.get(uri_of(await c.run("t")), headers={"x-goog-api-key": KEY}) as r:
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()


async def test_seeded_runs_are_reproducible(clock: FakeClock) -> None:
    async def outcomes() -> list[int]:
        config = SimConfig(rate_5xx=0.5, seed=42, clock=clock)
        async with Simulator(config) as sim, aiohttp.ClientSession() as http:
            c = Client(http, sim)
            return [(await c.submit(f"p{i}", key="sim-key"))[0] for i in range(20)]

    first = await outcomes()
    assert first == await outcomes() and len(set(first)) > 1


async def test_stats_endpoint_finish_all_and_polls_after_done(make: MakeSim) -> None:
    sim, c = await make()
    names = [(await c.submit(f"p{i}"))[1]["name"] for i in range(3)]
    assert sim.stats()["running_ops"] == 3
    async with c.http.post(f"{sim.url}/__sim/finish_all") as r:
        assert r.status == 200
    for _ in range(2):
        for name in names:
            assert (await c.poll(name))[1]["done"] is True
    async with c.http.get(f"{sim.url}/__sim/stats") as r:
        stats = await r.json()
    assert stats == sim.stats()
    assert stats["polls_after_done"] == 3
    assert stats["operations"]["done"] == 3 and stats["running_ops"] == 0
    assert stats["max_concurrent_ops"] == 3
    assert set(stats) >= {
        "requests",
        "submits_by_prompt",
        "received_by_prompt",
        "operations",
        "polls_after_done",
        "key_leaks",
        "max_concurrent_ops",
        "max_submits_in_window",
        "quota_violations",
        "accepted_submit_times",
    }


async def test_poll_model_must_match_and_files_host_serves_no_api(make: MakeSim) -> None:
    sim, c = await make(files_host="localhost")
    _, body, _ = await c.submit()
    op_id = body["name"].rsplit("/", 1)[1]
    assert (await c.poll(f"models/veo-3.1-fast-generate-preview/operations/{op_id}"))[0] == 404
    port = sim.url.rsplit(":", 1)[1]
    url = f"http://localhost:{port}/v1beta/operations/{op_id}"
    assert (await c.get(url))[0] == 404
    assert sim.stats()["key_leaks"] == 1


def test_config_from_mapping_parses_flag_strings() -> None:
    cfg = SimConfig.from_mapping(
        {
            "generation-s": "1,5",
            "latency_s": "0.01",
            "rpm-limit": "10",
            "max_concurrent_ops": None,
            "redirect-downloads": "true",
            "retired-models": "a,b",
            "rate_5xx": "0.25",
            "files_host": "localhost",
        }
    )
    assert cfg.generation_s == (1.0, 5.0) and cfg.latency_s == (0.01, 0.01)
    assert cfg.rpm_limit == 10 and cfg.max_concurrent_ops is None
    assert cfg.redirect_downloads is True and cfg.retired_models == ("a", "b")
    assert cfg.rate_5xx == 0.25 and cfg.files_host == "localhost"
    assert cfg.with_changes({"rpm_limit": "none"}).rpm_limit is None
    for bad in ({"generation_s": "5,1"}, {"rate_429": 2}, {"name_style": "x"}, {"nope": 1}):
        with pytest.raises(ValueError):
            SimConfig.from_mapping(bad)


def test_generation_time_may_be_a_log_normal_scaled_for_tests() -> None:
    cfg = SimConfig.from_mapping({"generation-s": "lognormal:median=60,sigma=0.5,scale=0.1"})
    assert cfg.generation_s == LogNormalTime(60.0, 0.5, 0.1)
    assert cfg.to_json()["generation_s"] == "lognormal:median=60,sigma=0.5,scale=0.1"
    assert SimConfig.from_mapping(cfg.to_json()) == cfg
    assert SimConfig(generation_s=(2.0, 3.0)).generation_s == (2.0, 3.0)  # the old form
    for bad in (
        "lognormal:median=60",  # no sigma
        "lognormal:median=-1,sigma=0.5",
        "lognormal:median=60,sigma=0.5,scale=0",
        "lognormal:median=60,sigma=0.5,mean=3",
        "gamma:shape=2",
    ):
        with pytest.raises(ValueError, match="generation_s"):
            SimConfig.from_mapping({"generation_s": bad})


async def test_log_normal_operations_finish_as_drawn_and_say_when(
    make: MakeSim, clock: FakeClock
) -> None:
    sim, c = await make(generation_s="lognormal:median=60,sigma=0.5,scale=0.1")
    names = []
    for i in range(300):
        status, body, _ = await c.submit(f"prompt {i}" + (" [sim:slow]" if i == 0 else ""))
        assert status == 200
        names.append(body["name"])
    await c.poll(names[1])
    status, raw, _ = await c.get(f"{sim.url}/__sim/operations")
    answer = json.loads(raw)
    assert status == 200 and answer["now"] == clock()
    ops = {op["name"]: op for op in answer["operations"]}
    assert set(ops) == set(names) and ops[names[1]]["polls"] == 1
    took = sorted(op["done_at"] - op["created_at"] for op in ops.values())
    assert 5.0 < took[150] < 7.0  # a median of 6 s: 60 s at a tenth of the time
    assert took[15] < 3.6 and took[-15] > 10.0  # spread as sigma 0.5 spreads it
    slow = ops[names[0]]
    assert slow["done_at"] - slow["created_at"] == pytest.approx(6.0 * 4.69, rel=0.01)


def test_every_knob_can_be_set_from_flags_and_read_back_from_json() -> None:
    """A field without a coercer could be set neither by ``simulate`` nor ``/__sim/config``."""
    cfg = SimConfig(seed=3, rpm_limit=5, files_host="localhost", retired_models=("m",))
    data = cfg.to_json()
    assert set(data) == {f.name for f in dataclasses.fields(SimConfig)} - {"clock"}
    assert SimConfig.from_mapping(data) == cfg
    rates = [f.name for f in dataclasses.fields(SimConfig) if f.name.startswith("rate_")]
    for name in rates:
        if name != "rate_window_s":  # a window in seconds, not a probability
            with pytest.raises(ValueError, match="probability"):
                SimConfig.from_mapping({name: 1.5})


def test_counted_faults_apply_in_order_then_the_submit_passes() -> None:
    marks = parse_markers("p [sim:429][sim:500x2][sim:resetx1] [sim:lostx3]")
    assert [counted_fault(marks, n) for n in range(1, 6)] == ["reset", "500", "500", "429", None]
    assert marks["lost"] == 3 and parse_markers("no markers") == {}


def test_the_first_rule_broken_is_the_one_reported() -> None:
    info = MODELS["veo-3.1-generate-preview"]
    body = {
        "instances": [{"prompt": "p", "lastFrame": img()}],
        "parameters": {"durationSeconds": 5, "personGeneration": "allow_all", "seed": -1},
    }
    assert validate(body, info) == "durationSeconds must be one of [4, 6, 8]."
    body["parameters"]["durationSeconds"] = 8
    assert validate(body, info) == "lastFrame requires image (the first frame)."
    body["instances"][0]["image"] = img()
    assert validate(body, info) == (
        "personGeneration allow_all is not allowed for this mode; use allow_adult."
    )
    body["parameters"]["personGeneration"] = "allow_adult"
    assert validate(body, info) == "seed must be an unsigned 32-bit integer."
    body["parameters"]["seed"] = 1
    assert validate(body, info) is None


async def test_latency_is_added(make: MakeSim) -> None:
    _, c = await make(latency_s=(0.02, 0.02))
    loop = asyncio.get_running_loop()
    start = loop.time()
    await c.submit()
    assert loop.time() - start >= 0.02


async def test_serve_forever_logs_url_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="batchveo.sim")
    task = asyncio.create_task(serve_forever(SimConfig(), "127.0.0.1", 0))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if "listening on http://127.0.0.1:" in caplog.text:
            break
    url = caplog.text.split("listening on ", 1)[1].split()[0]
    async with aiohttp.ClientSession() as http, http.get(f"{url}/__sim/stats") as r:
        assert r.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_app_works_with_aiohttp_test_utilities() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    sim = Simulator(SimConfig(generation_s=(0.0, 0.0)))
    async with TestClient(TestServer(sim.app)) as tc:
        body = {"instances": [{"prompt": "p"}]}
        headers = {"x-goog-api-key": "sim-key"}
        r = await tc.post(f"/v1beta/models/{MODEL}:predictLongRunning", json=body, headers=headers)
        name = (await r.json())["name"]
        r = await tc.get(f"/v1beta/{name}", headers=headers)
        assert (await r.json())["done"] is True


async def test_a_per_day_quota_refuses_until_the_next_quota_day(
    make: MakeSim, clock: FakeClock
) -> None:
    from batchveo.api import VeoClient, resolve_provider
    from batchveo.errors import QuotaExhausted
    from tests.helpers import make_spec

    sim, c = await make(rpd_limit=2, day_s=1000.0, retry_after_style="retryinfo")
    assert (await c.submit("p0"))[0] == 200
    clock.advance(400.0)
    assert (await c.submit("p1"))[0] == 200
    status, body, _ = await c.submit("p2")
    assert status == 429
    details = {d["@type"].rsplit(".", 1)[1]: d for d in body["error"]["details"]}
    quota = details["QuotaFailure"]["violations"][0]
    assert "PerDay" in quota["quotaId"] and quota["quotaValue"] == "2"
    assert details["RetryInfo"]["retryDelay"] == "600s"  # until the next quota day
    # The client reads it as "nothing more today", not as a wait-a-minute 429.
    async with VeoClient(resolve_provider("gemini", sim.url), KEY) as client:
        with pytest.raises(QuotaExhausted, match="RESOURCE_EXHAUSTED"):
            await client.submit(make_spec("p3"))
    clock.advance(600.0)  # a new quota day
    assert (await c.submit("p2"))[0] == 200
    stats = sim.stats()
    assert stats["per_day_quota_429s"] == 2
    assert stats["submits_by_prompt"] == {"p0": 1, "p1": 1, "p2": 1}


async def test_a_new_operation_may_answer_404_for_a_moment(make: MakeSim, clock: FakeClock) -> None:
    sim, c = await make(early_404_s=5.0)
    _, body, _ = await c.submit()
    status, err = await c.poll(body["name"])
    assert status == 404 and err["error"]["status"] == "NOT_FOUND"
    clock.advance(5.0)
    status, op = await c.poll(body["name"])
    assert status == 200 and not op.get("done")
    assert sim.stats()["early_404s"] == 1


async def test_a_project_the_service_will_not_serve_fails_every_submit(make: MakeSim) -> None:
    message = "User location is not supported for the API use."
    sim, c = await make(precondition_failure=message)
    for _ in range(2):
        status, body, _ = await c.submit()
        assert status == 400
        assert body == {"error": {"code": 400, "message": message, "status": "FAILED_PRECONDITION"}}
    status, _, _ = await c.submit(key="wrong")
    assert status == 401  # the key is checked first, as everywhere
    assert sim.stats()["operations"]["created"] == 0
    assert SimConfig.from_mapping({"precondition-failure": message}).precondition_failure == message


async def test_file403_marker_refuses_that_video_only(make: MakeSim) -> None:
    sim, c = await make()
    refused = uri_of(await c.run("gone [sim:file403]"))
    fine = uri_of(await c.run("kept"))
    for _ in range(2):
        status, data, _ = await c.get(refused)
        body = json.loads(data)["error"]
        assert status == 403 and body["status"] == "PERMISSION_DENIED"
        assert "do not have permission to access the File" in body["message"]
    status, data, _ = await c.get(fine)
    assert status == 200 and data[4:8] == b"ftyp"
    assert sim.stats()["requests"]["download"] == {"403": 2, "200": 1}


@pytest.mark.parametrize("status", [503, 429])
async def test_the_first_polls_can_fail_whatever_their_method(make: MakeSim, status: int) -> None:
    sim, c = await make(poll_methods="post", fail_first_polls=2, fail_first_polls_status=status)
    _, body, _ = await c.submit()
    sim.finish_all()
    name = body["name"]
    assert [(await c.poll(name, m))[0] for m in ("GET", "POST", "GET", "POST")] == [
        status,
        status,
        405,
        200,
    ]
    with pytest.raises(ValueError, match="fail_first_polls_status"):
        SimConfig(fail_first_polls_status=404)
    assert SimConfig.from_mapping({"fail-first-polls": "3"}).fail_first_polls == 3


@pytest.mark.parametrize(("status", "title"), [(502, "Bad Gateway"), (504, "Gateway Time-out")])
async def test_gateway_markers_answer_a_proxy_page(make: MakeSim, status: int, title: str) -> None:
    sim, c = await make()
    prompt = f"x [sim:{status}x1]"
    url = f"{sim.url}/v1beta/models/{MODEL}:predictLongRunning"
    body = {"instances": [{"prompt": prompt}]}
    async with c.http.post(url, json=body, headers={"x-goog-api-key": KEY}) as r:
        assert r.status == status and r.content_type == "text/html"
        assert f"{status} {title}" in await r.text()
    assert (await c.submit(prompt))[0] == 200
    assert sim.stats()["received_by_prompt"] == {prompt: 2}
