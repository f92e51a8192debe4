"""Videos that come inline in a poll's answer (Vertex AI without a bucket): saved as
downloads are, then ``running -> done`` in one transition; and videos in the user's
bucket (``gs://``), which no retention deletes.

The client is a fake (the Vertex client is another helper's); files are made durable by
the real ``VeoClient.save``; the sample counts are the store's own columns.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from batchveo.api import DownloadResult, OperationStatus, VeoClient, resolve_provider
from batchveo.errors import NotFound
from batchveo.run.downloader import DOWNLOAD_SAME_ANSWER_TRIES, DOWNLOAD_UNUSABLE_TRIES
from batchveo.run.runner import Runner, RunResult
from batchveo.spec import JobSpec
from batchveo.states import JobState
from batchveo.store import Job, Store
from tests.helpers import make_spec, without_posters
from tests.pipeline_helpers import SAMPLE_MP4, fast_config, sha256_file

S = JobState
DAY_S = 86400.0


def video(n: int) -> bytes:
    """A distinct whole MP4: the sample, then a ``free`` box saying which one."""
    tag = f"inline video {n}".encode()
    return SAMPLE_MP4 + struct.pack(">I", 8 + len(tag)) + b"free" + tag


class FakeVertex:
    """A Vertex-like client: every submit accepted, the first poll says done with
    ``answer``; files made durable by the real client's ``save``."""

    def __init__(self, saver: VeoClient, answer: OperationStatus):
        self.saver = saver
        self.answer = answer
        self.polls: Counter[str] = Counter()
        self.downloads: list[str] = []

    async def submit(self, spec: JobSpec) -> str:
        base = "projects/p/locations/us-central1/publishers/google/models"
        return f"{base}/{spec.model}/operations/{spec.id}"

    async def poll(self, operation_name: str, model: str) -> OperationStatus:
        self.polls[operation_name] += 1
        return self.answer

    async def download(self, uri: str, dest: Path) -> DownloadResult:
        self.downloads.append(uri)
        raise NotFound(f"HTTP 404 NOT_FOUND: No such object: {uri}", status=404)

    async def save(self, data: bytes, dest: Path) -> DownloadResult:
        return await self.saver.save(data, dest)


@pytest.fixture
async def saver() -> AsyncIterator[VeoClient]:
    async with VeoClient(resolve_provider("custom", "http://127.0.0.1:9"), "k" * 8) as client:
        yield client


class Crash(Exception):
    """The process dies here (a kill -9 between two steps, as far as the database sees)."""


class CrashingStore(Store):
    """The real store, dying once before a chosen transition writes anything."""

    crash_before: tuple[JobState, JobState] | None = None

    async def transition(
        self, job_id: str, src: JobState, dst: JobState, *, detail: str | None = None, **fields: Any
    ) -> Job:
        if self.crash_before == (src, dst):
            self.crash_before = None
            raise Crash(f"{job_id}: died before {src.value} -> {dst.value}")
        return await super().transition(job_id, src, dst, detail=detail, **fields)


async def open_store(tmp_path: Path, **kw: Any) -> CrashingStore:
    return cast(CrashingStore, await CrashingStore.open(tmp_path / "jobs.db", **kw))


async def run(store: CrashingStore, client: FakeVertex, out: Path, **kw: Any) -> RunResult:
    runner = Runner(store, client, fast_config(out), rng=random.Random(1), **kw)
    return await asyncio.wait_for(runner.run(), 60)


def on_disk(out: Path) -> list[str]:
    return without_posters(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


async def test_inline_videos_are_saved_then_the_job_is_done_in_one_step(
    tmp_path: Path, saver: VeoClient
) -> None:
    out = tmp_path / "v"
    videos = (video(1), video(2))
    answer = OperationStatus("done", inline_videos=videos, samples_requested=2)
    client = FakeVertex(saver, answer)
    store = await open_store(tmp_path)
    try:
        await store.add_jobs([make_spec("a")])
        result = await run(store, client, out)
        job = await store.get("a")
        history = [(e.from_state, e.to_state) for e in await store.events("a")]
    finally:
        await store.close()
    assert result.exit_code == 0 and job is not None and job.state is S.DONE
    assert on_disk(out) == ["a_1.mp4", "a_2.mp4"]
    for f, data, name in zip(job.files, videos, ("a_1.mp4", "a_2.mp4"), strict=True):
        assert f["path"] == str(out / name) and (out / name).read_bytes() == data
        assert f["sha256"] == sha256_file(out / name) == hashlib.sha256(data).hexdigest()
        assert f["size"] == len(data)
    assert ("running", "done") in history and ("running", "generated") not in history
    assert list(client.polls.values()) == [1]  # a done operation is never polled again
    assert client.downloads == []
    assert (job.samples_returned, job.samples_filtered, job.filtered_reasons) == (
        2,
        0,
        [],
    )


async def test_a_partly_filtered_answer_is_done_with_the_videos_it_got(
    tmp_path: Path, saver: VeoClient
) -> None:
    out = tmp_path / "v"
    answer = OperationStatus(
        "done", inline_videos=(video(1), video(2)), samples_requested=3, samples_filtered=1,
        filtered_reasons=("58061214",),
    )  # fmt: skip
    store = await open_store(tmp_path)
    try:
        await store.add_jobs([make_spec("a")])
        result = await run(store, FakeVertex(saver, answer), out)
        job = await store.get("a")
    finally:
        await store.close()
    assert result.exit_code == 0 and job is not None and job.state is S.DONE
    assert len(job.files) == 2 and on_disk(out) == ["a_1.mp4", "a_2.mp4"]
    assert (job.samples_returned, job.samples_filtered, job.filtered_reasons) == (
        2,
        1,
        ["58061214"],
    )


async def test_a_crash_between_saving_and_marking_done_is_harmless(
    tmp_path: Path, saver: VeoClient
) -> None:
    # The first run saves both videos and dies before the job is marked: the job is
    # still running, never done without its files. The next run polls once more, saves
    # the very same bytes under the very same names, and marks it done.
    out = tmp_path / "v"
    videos = (video(1), video(2))
    client = FakeVertex(saver, OperationStatus("done", inline_videos=videos))
    store = await open_store(tmp_path)
    try:
        await store.add_jobs([make_spec("a")])
        store.crash_before = (S.RUNNING, S.DONE)
        with pytest.raises(Crash):
            await run(store, client, out)
        job = await store.get("a")
        assert job is not None and job.state is S.RUNNING and job.files == []
        assert on_disk(out) == ["a_1.mp4", "a_2.mp4"]  # saved, not yet recorded

        result = await run(store, client, out)
        job = await store.get("a")
    finally:
        await store.close()
    assert result.exit_code == 0 and job is not None and job.state is S.DONE
    assert on_disk(out) == ["a_1.mp4", "a_2.mp4"]  # no second copy under another name
    assert [f["sha256"] for f in job.files] == [hashlib.sha256(v).hexdigest() for v in videos]
    assert list(client.polls.values()) == [2]  # once per run


async def test_inline_bytes_that_are_no_video_are_asked_for_again_then_failed(
    tmp_path: Path, saver: VeoClient
) -> None:
    out = tmp_path / "v"
    answer = OperationStatus("done", inline_videos=(b"<html>an error page</html>",))
    client = FakeVertex(saver, answer)
    store = await open_store(tmp_path)
    try:
        await store.add_jobs([make_spec("a")])
        result = await run(store, client, out)
        job = await store.get("a")
    finally:
        await store.close()
    assert job is not None and job.state is S.FAILED and job.error_kind == "download"
    assert "could not be saved" in (job.error or "") and "not an MP4" in (job.error or "")
    assert list(client.polls.values()) == [DOWNLOAD_UNUSABLE_TRIES]
    assert on_disk(out) == [] and result.exit_code == 1


async def test_a_video_in_the_users_bucket_is_not_expired_by_the_clock(tmp_path: Path) -> None:
    # The run's clock jumps three days past the video's making, and the object is not
    # found: a Files API video would end expired here, one in the user's bucket is no
    # one's to delete. It is failed after the downloader's bounded tries instead, and
    # `batchveo retry` brings it back to generated (downloaded again, not paid again).
    skew = [0.0]
    clock = lambda: time.time() + skew[0]  # noqa: E731 - the run's clock, made to jump

    def observer(event: str, details: dict[str, object]) -> None:
        if event == "generated":
            skew[0] += 3 * DAY_S

    answer = OperationStatus("done", video_uris=("gs://bucket/out/123/sample_0.mp4",))
    store = await open_store(tmp_path, clock=clock)
    try:
        async with VeoClient(resolve_provider("custom", "http://127.0.0.1:9"), "k" * 8) as s:
            client = FakeVertex(s, answer)
            await store.add_jobs([make_spec("a")])
            result = await run(store, client, tmp_path / "v", observer=observer, clock=clock)
        job = await store.get("a")
        assert job is not None and job.state is S.FAILED and job.error_kind == "download"
        assert "same answer" in (job.error or "") and "No such object" in (job.error or "")
        assert len(client.downloads) == DOWNLOAD_SAME_ANSWER_TRIES
        assert result.exit_code == 1
        assert await store.requeue([S.FAILED]) == ["a"]
        again = await store.get("a")
        assert again is not None and again.state is S.GENERATED
    finally:
        await store.close()
