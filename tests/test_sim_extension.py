"""The simulator extends videos as the service does (issue 15, "Simulator"), over real
sockets: every video's MP4 says how long it lasts (a root its ``durationSeconds``, an
extension its input plus 7 s), an extension is accepted only of a video the service can
use, within each route's limits, and the simulator counts the hops of every chain.

Time never passes for real: every simulator here runs on a FakeClock the test advances.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import google_crc32c
import pytest

from batchveo import mp4
from batchveo.sim import SimConfig, Simulator
from batchveo.sim.chains import Chains
from batchveo.sim.rules import KeptVideos, Source, extension_limits, own_file_id, validate
from batchveo.sim.storage import sample_lasting, tag_of, video_tail
from batchveo.sim.vertex_rules import extension_input
from tests.helpers import FakeClock, make_spec
from tests.pipeline_helpers import SAMPLE_MP4
from tests.test_api import simulated
from tests.test_api import uri_of as status_uri
from tests.test_sim_vertex import PARAMS, V, videos_of
from tests.test_sim_vertex import _no_machine_credentials as _no_machine_credentials
from tests.test_sim_vertex import emulator as emulator  # a Cloud Storage emulator
from tests.test_sim_vertex import make as make  # the Vertex fixture
from tests.test_simulator import KEY, MODEL, Client, uri_of

GeminiSim = Callable[..., Awaitable[tuple[Simulator, Client]]]
VertexSim = Callable[..., Awaitable[tuple[Simulator, V]]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def gemini(clock: FakeClock) -> AsyncIterator[GeminiSim]:
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


async def download(c: Client, op: dict[str, Any]) -> bytes:
    status, data, headers = await c.get(uri_of(op))
    assert status == 200 and int(headers["Content-Length"]) == len(data)
    return data


async def extend(c: Client, uri: str, prompt: str = "and then", **params: Any) -> dict[str, Any]:
    """Submit an extension of ``uri``, finish it, poll it: the done operation."""
    return await c.run(prompt, params={"durationSeconds": 8, **params}, video={"uri": uri})


def refusal(answer: tuple[int, Any, Any]) -> tuple[int, str, str]:
    status, body, _ = answer
    return status, body["error"]["status"], body["error"]["message"]


def file_id(uri: str) -> str:
    return uri.rsplit("/", 1)[1].split(":", 1)[0]


# --------------------------------------------------------------------------- Gemini format


@pytest.mark.parametrize("seconds", [4, 6, 8])
async def test_a_root_lasts_its_duration_seconds(gemini: GeminiSim, seconds: int) -> None:
    _, c = await gemini()
    data = await download(c, await c.run(params={"durationSeconds": str(seconds)}))
    assert data[4:8] == b"ftyp" and mp4.duration_s(data) == seconds


async def test_each_extension_lasts_seven_seconds_more_and_is_logged_after_its_parent(
    gemini: GeminiSim, clock: FakeClock
) -> None:
    sim, c = await gemini()
    root = await c.run("a lighthouse at dawn")
    uris, lengths = [uri_of(root)], [mp4.duration_s(await download(c, root))]
    names = [root["name"]]
    for n in range(3):
        clock.advance(30.0)
        hop = await extend(c, uris[-1], f"hop {n}")
        data = await download(c, hop)
        assert tag_of(data) == file_id(uri_of(hop))  # its bytes are its own
        uris.append(uri_of(hop))
        lengths.append(mp4.duration_s(data))
        names.append(hop["name"])
    assert lengths == [8, 15, 22, 29]
    stats = sim.stats()
    assert stats["extensions"] == 3 and stats["chains"] == {file_id(uris[0]): 3}
    log = {op["name"]: op for op in sim.operations()["operations"]}
    assert "extends" not in log[names[0]]
    for (parent, hop), input_uri in zip(itertools.pairwise(names), uris[:-1], strict=True):
        assert log[hop]["extends"] == input_uri and log[hop]["parent"] == parent
        assert log[hop]["created_at"] >= log[parent]["done_at"]


async def test_branches_count_in_their_roots_chain(gemini: GeminiSim) -> None:
    sim, c = await gemini(name_style="short", response_style="flat")
    root = uri_of_flat(await c.run("root"))
    assert "/upload/v1beta/files/" in root  # the reseller's form is one of ours too
    first = uri_of_flat(await extend(c, root, "left"))
    await extend(c, root, "right")
    await extend(c, first, "left again")
    other = uri_of_flat(await c.run("another root"))
    await extend(c, other, "its only hop")
    stats = sim.stats()
    assert stats["extensions"] == 4
    assert stats["chains"] == {file_id(root): 3, file_id(other): 1}


async def test_a_redirected_download_serves_the_extensions_length(gemini: GeminiSim) -> None:
    _, c = await gemini(files_host="localhost", redirect_downloads=True)
    hop = await extend(c, uri_of(await c.run()))
    status, _, headers = await c.get(uri_of(hop), allow_redirects=False)
    assert status == 302 and "/__storage/" in headers["Location"]
    status, data, _ = await c.get(headers["Location"], key=None)
    assert status == 200 and mp4.duration_s(data) == 15


async def test_the_clients_own_extension_request_is_accepted(tmp_path: Path) -> None:
    """What ``VeoClient`` sends for a job that extends (``instances[0].video.uri``) is what
    this simulator accepts, and the hop it downloads lasts 15 s."""
    async with simulated() as (sim, client):
        root = status_uri(await client.poll(await client.submit(make_spec("root")), MODEL))
        hop = make_spec("hop", prompt="and then", video_uri=root)
        name = await client.submit(hop)
        result = await client.download(
            status_uri(await client.poll(name, MODEL)), tmp_path / "h.mp4"
        )
        assert sim.stats()["chains"] == {file_id(root): 1}
    assert mp4.duration_s(result.path.read_bytes()) == 15


def uri_of_flat(op: dict[str, Any]) -> str:
    uri: str = op["response"]["generatedSamples"][0]["video"]["uri"]
    return uri


async def test_an_expired_video_cannot_be_extended_and_extending_keeps_its_deadline(
    gemini: GeminiSim, clock: FakeClock
) -> None:
    _, c = await gemini(retention_s=100.0)
    root = await c.run()
    clock.advance(60.0)
    hop = await extend(c, uri_of(root))  # extended within its retention
    clock.advance(40.0)  # 100 s after the root finished: gone, extension or not
    assert (await c.get(uri_of(root)))[0] == 404
    status, kind, message = refusal(await c.submit("again", {}, video={"uri": uri_of(root)}))
    assert (status, kind) == (400, "INVALID_ARGUMENT")
    assert (
        message
        == f"video.uri names file {file_id(uri_of(root))}, which does not exist or has expired."
    )
    assert (await c.get(uri_of(hop)))[0] == 200  # the hop has its own 100 s


async def test_only_a_video_of_this_service_can_be_extended(gemini: GeminiSim) -> None:
    sim, c = await gemini(files_host="localhost")
    uri = uri_of(await c.run())
    assert uri.startswith("http://localhost:")  # on files_host: still one of ours
    assert (await c.submit("ok", {}, video={"uri": uri}))[0] == 200
    port = sim.url.rsplit(":", 1)[1]
    own_id = file_id(uri)
    foreign = [
        f"https://generativelanguage.googleapis.com/v1beta/files/{own_id}:download?alt=media",
        f"http://localhost:{port}/v1beta/elsewhere/{own_id}:download?alt=media",
        f"ftp://localhost:{port}/v1beta/files/{own_id}:download",
        "files/" + own_id,
    ]
    for other in foreign:
        status, kind, message = refusal(await c.submit("x", {}, video={"uri": other}))
        assert (status, kind) == (400, "INVALID_ARGUMENT"), other
        assert message.endswith("is not a video generated by Veo on this service."), other
    never = uri.replace(own_id, "0123456789ab")
    status, _, message = refusal(await c.submit("x", {}, video={"uri": never}))
    assert status == 400 and "which does not exist or has expired" in message
    status, _, message = refusal(await c.submit("x", {}, video={"uri": uri, "mimeType": "a"}))
    assert status == 400 and message.startswith("instances[0].video must be")
    assert sim.stats()["extensions"] == 1


@pytest.mark.parametrize(
    ("params", "model", "expected"),
    [
        (
            {"resolution": "1080p"},
            MODEL,
            "video extension supports only 720p and durationSeconds 8.",
        ),
        ({"resolution": "4k"}, MODEL, "video extension supports only 720p and durationSeconds 8."),
        (
            {"durationSeconds": "6"},
            MODEL,
            "video extension supports only 720p and durationSeconds 8.",
        ),
        ({}, "veo-3.1-lite-generate-preview", "video extension is not supported by"),
    ],
)
async def test_an_extension_is_720p_and_8_seconds_on_a_model_that_extends(
    gemini: GeminiSim, params: dict[str, Any], model: str, expected: str
) -> None:
    _, c = await gemini()
    uri = uri_of(await c.run())
    body = {"durationSeconds": "8", **params}
    status, kind, message = refusal(await c.submit("x", body, model=model, video={"uri": uri}))
    assert (status, kind) == (400, "INVALID_ARGUMENT") and message.startswith(expected)


async def test_a_chain_holds_20_extensions_148_seconds_in_all(gemini: GeminiSim) -> None:
    sim, c = await gemini()
    root = await c.run("root")
    uri = uri_of(root)
    for n in range(20):
        uri = uri_of(await extend(c, uri, f"hop {n + 1}"))
    status, data, _ = await c.get(uri)
    assert status == 200 and mp4.duration_s(data) == 148
    status, kind, message = refusal(await c.submit("hop 21", {}, video={"uri": uri}))
    assert (status, kind) == (400, "INVALID_ARGUMENT")
    assert message == (
        "video extension: the input is already extension 20 of its chain; "
        "a chain may have at most 20 extensions."
    )
    assert sim.stats()["chains"] == {file_id(uri_of(root)): 20}


def test_the_chain_limits_each_have_their_message() -> None:
    def at(length_s: float, hop: int) -> str | None:
        return extension_limits(Source("f", length_s, hop, "operations/o"))

    assert at(141, 19) is None and at(8, 0) is None
    assert at(8, 20) is not None and "at most 20 extensions" in at(8, 20)  # type: ignore[operator]
    too_long = (
        "the input video lasts 141.5 s; Veo extends videos of at most 141 s, to at most 148 s"
    )
    assert too_long in (at(141.5, 3) or "")


def test_a_uri_is_ours_only_on_our_hosts_and_paths() -> None:
    hosts = frozenset({"127.0.0.1:8080"})
    ours = "http://127.0.0.1:8080/v1beta/files/abc:download?alt=media"
    assert own_file_id(ours, hosts) == "abc"
    assert own_file_id(ours.replace("/v1beta", "/upload/v1beta"), hosts) == "abc"
    for other in (
        ours.replace("8080", "8081"),
        ours.replace(":download", ""),
        ours.replace("files/abc", "files/a/b"),
        "http://[::1/v1beta/files/abc:download",
    ):
        assert own_file_id(other, hosts) is None, other


def test_without_kept_videos_no_extension_passes() -> None:
    from batchveo.models import MODELS

    body = {
        "instances": [{"prompt": "p", "video": {"uri": "http://h:1/v1beta/files/f:download"}}],
        "parameters": {"durationSeconds": 8},
    }
    assert "is not a video generated by Veo" in (validate(body, MODELS[MODEL]) or "")
    kept = KeptVideos(frozenset({"h:1"}), lambda f: Source(f, 8.0, 0, "operations/o"))
    assert validate(body, MODELS[MODEL], kept) is None


# --------------------------------------------------------------------------- Vertex


STORED = {**PARAMS, "storageUri": "gs://bkt/night/"}


def gcs_video(op: dict[str, Any]) -> dict[str, str]:
    return {"gcsUri": videos_of(op)[0]["gcsUri"], "mimeType": "video/mp4"}


async def object_bytes(v: V, uri: str) -> bytes:
    """The object's bytes, checked against its metadata as a client checks them."""
    meta, media = await v.storage(uri), await v.storage(uri, media=True)
    assert meta.status == 200 and media.status == 200
    data: bytes = media.body
    assert int(meta.body["size"]) == len(data)
    assert meta.body["md5Hash"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    crc = google_crc32c.value(data).to_bytes(4, "big")
    assert meta.body["crc32c"] == base64.b64encode(crc).decode()
    return data


@pytest.mark.parametrize("seconds", [4, 8])
async def test_vertex_videos_last_their_duration_in_the_bucket_and_inline(
    make: VertexSim, seconds: int
) -> None:
    _, v = await make()
    stored = await v.run("stored", params={**STORED, "durationSeconds": seconds})
    assert mp4.duration_s(await object_bytes(v, videos_of(stored)[0]["gcsUri"])) == seconds
    inline = await v.run("inline", params={**PARAMS, "durationSeconds": seconds})
    data = base64.b64decode(videos_of(inline)[0]["bytesBase64Encoded"])
    assert data[4:8] == b"ftyp" and mp4.duration_s(data) == seconds


async def test_vertex_extends_a_bucket_video_to_at_most_37_seconds(make: VertexSim) -> None:
    sim, v = await make()
    root = await v.run("root", params=STORED)
    ops, lengths = [root], [mp4.duration_s(await object_bytes(v, gcs_video(root)["gcsUri"]))]
    for _ in range(4):
        ops.append(await v.run(f"hop {len(ops)}", params=STORED, video=gcs_video(ops[-1])))
        lengths.append(mp4.duration_s(await object_bytes(v, gcs_video(ops[-1])["gcsUri"])))
    assert lengths == [8, 15, 22, 29, 36]
    past = await v.submit("too long", params=STORED, video=gcs_video(ops[-1]))
    assert past.status == 400 and past.error["status"] == "INVALID_ARGUMENT"
    assert past.error["message"] == (
        "instances[0].video: the video lasts 36 s; Veo extends videos of 1 to 30 s, "
        "to at most 37 s in all."
    )
    root_tag = f"{root['name'].rsplit('/', 1)[1]}/sample_0"
    stats = sim.stats()
    assert stats["extensions"] == 4 and stats["chains"] == {root_tag: 4}
    log = {op["name"]: op for op in sim.operations()["operations"]}
    for parent, hop in itertools.pairwise(ops):
        line = log[hop["name"]]
        assert line["extends"] == gcs_video(parent)["gcsUri"] and line["parent"] == parent["name"]
        assert line["created_at"] >= log[parent["name"]]["done_at"]


async def test_vertex_refuses_a_missing_or_foreign_object(make: VertexSim) -> None:
    sim, v = await make()
    sim.objects.put("bkt", "in/clip.mp4", sample_lasting(10), tail=video_tail("someone's"))
    for uri in ("gs://bkt/in/none.mp4", "gs://another-bucket/in/clip.mp4"):
        answer = await v.submit("x", video={"gcsUri": uri, "mimeType": "video/mp4"})
        assert answer.status == 400 and answer.error["message"] == (
            f"instances[0].video.gcsUri: cannot read {uri}: no such object, or the Vertex AI "
            "service agent may not read it."
        )
    own = {"gcsUri": "gs://bkt/in/clip.mp4", "mimeType": "video/mp4"}
    done = await v.run("an MP4 of 10 s that is in the bucket", params=STORED, video=own)
    assert mp4.duration_s(await object_bytes(v, gcs_video(done)["gcsUri"])) == 17


async def test_vertex_extends_a_video_in_another_cloud_storage(
    make: VertexSim, emulator: str
) -> None:
    """With ``storage_upload_base`` the videos go to an emulator; an extension's input is
    read back from there, its length and chain from its own bytes."""
    sim, v = await make(storage_upload_base=emulator)
    root = await v.run("root", params=STORED)
    hop = await v.run("hop", params=STORED, video=gcs_video(root))
    async with aiohttp.ClientSession() as http:
        bucket, name = gcs_video(hop)["gcsUri"].removeprefix("gs://").split("/", 1)
        url = f"{emulator}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
        async with http.get(url, params={"alt": "media"}) as r:
            assert r.status == 200 and mp4.duration_s(await r.read()) == 15
    root_tag = f"{root['name'].rsplit('/', 1)[1]}/sample_0"
    assert sim.stats()["chains"] == {root_tag: 1}


@pytest.mark.parametrize(
    ("video", "accepted"),
    [
        (SAMPLE_MP4, True),  # 2 s
        (sample_lasting(30), True),
        (sample_lasting(1), True),
        (sample_lasting(30.5), False),
        (sample_lasting(0.5), False),
        (b"\x00\x00\x00\x10ftypisom" + b"\x00" * 32, False),  # no moov: no length
    ],
)
async def test_vertex_takes_an_inline_mp4_of_1_to_30_seconds(
    make: VertexSim, video: bytes, accepted: bool
) -> None:
    _, v = await make()
    inline = {"bytesBase64Encoded": base64.b64encode(video).decode(), "mimeType": "video/mp4"}
    if not accepted:
        answer = await v.submit("x", video=inline)
        assert answer.status == 400 and answer.error["message"].startswith("instances[0].video:")
        return
    done = await v.run("x", video=inline)
    out = base64.b64decode(videos_of(done)[0]["bytesBase64Encoded"])
    assert mp4.duration_s(out) == pytest.approx(mp4.duration_s(video) + 7)


def test_vertex_extension_input_rule() -> None:
    assert extension_input(sample_lasting(12)) == 12
    assert extension_input(b"GIF89a" + b"\x00" * 20) == (
        "instances[0].video: the data is not a valid MP4 video."
    )


def test_a_videos_tag_is_read_from_its_own_bytes() -> None:
    assert tag_of(sample_lasting(8) + video_tail("op/sample_1")) == "op/sample_1"
    assert tag_of(SAMPLE_MP4) is None and tag_of(b"") is None
    chains = Chains()
    assert chains.link("a").hop == 0
    chains.extended("a", ["b"])
    chains.extended("b", ["c1", "c2"])
    assert chains.link("c2").root == "a" and chains.link("c2").hop == 2
    assert chains.snapshot() == {"extensions": 2, "chains": {"a": 2}}
