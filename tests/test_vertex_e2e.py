"""The Vertex AI route end to end: the real ``batchveo run --provider vertex`` against a
real simulator in Vertex mode, over real sockets, with google-auth's real token flow
(``GOOGLE_APPLICATION_CREDENTIALS`` names a key file the simulator wrote and trusts).

What is checked is what a user sees: the exit code and the lines of the run, the videos on
disk and their bytes, the rows of ``batchveo export`` and ``status``, and what the service
saw (the simulator's counters, and each request's time and status: ``vertex_helpers``).
The client-level facts (the wire, the token source, Cloud Storage checks) are
``test_vertex_client.py``'s and ``test_sim_vertex.py``'s; here they meet in a whole night.

The run is in process (click's ``CliRunner``, in the main thread: the run installs its
signal handlers there); the simulator serves from a thread of its own. What happens "in
the middle of the night" (tokens revoked, operations finished) is done by the simulator
at an exact request (``SimThread.on_answer``) or once it saw what it waits for
(``SimThread.script``), never after a sleep.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from batchveo.cli import main
from batchveo.sim.vertex_wire import PARTIAL_SUPPORT_CODE
from tests.helpers import FakeClock, without_posters
from tests.vertex_helpers import (
    LOCATION,
    PROJECT,
    Seen,
    SimThread,
    sim_thread,
    storage_emulator,
    until,
    video_tag,
)

GA_IDS = ("veo-3.1-generate-001", "veo-3.1-fast-generate-001", "veo-3.1-lite-generate-001")
USD_PER_VIDEO = 3.2
"""An 8 s video of veo-3.1-generate-001 with audio at $0.40/s (the price table's)."""
FAST = ("--rpm", "0", "--first-poll", "0.02s", "--poll-interval", "0.02s")
BUCKET = "bkt-e2e"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In a fresh folder; no credentials of the machine, no metadata server, no route
    from the environment: only what each test says."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in (
        "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
        "BATCHVEO_PROVIDER", "BATCHVEO_STORAGE_URI", "BATCHVEO_STORAGE_BASE_URL",
        "BATCHVEO_BASE_URL", "BATCHVEO_DB", "BATCHVEO_API_KEY",
    ):  # fmt: skip
        monkeypatch.delenv(var, raising=False)


def with_key(st: SimThread, monkeypatch: pytest.MonkeyPatch, project: str = PROJECT) -> None:
    """The credentials of the night: a key the simulator wrote, for ``project``."""
    key = st.make_key(Path("service-account.json").resolve(), project=project)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))


def manifest(*jobs: str, name: str = "night.yaml") -> Path:
    """A YAML manifest of one flow mapping a job (``{id: a, prompt: ...}``)."""
    path = Path(name)
    path.write_text("jobs:\n" + "".join(f"  - {{{job}}}\n" for job in jobs))
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--db", "jobs.db"])


def run(st: SimThread, *extra: str, project: str = PROJECT) -> Result:
    """``batchveo run night.yaml --provider vertex ...`` against the simulator."""
    route = ("--provider", "vertex", "--project", project, "--location", LOCATION)
    return invoke("run", "night.yaml", *route, "--base-url", st.url, "--out", "videos", *FAST,
                  *extra)  # fmt: skip


def said(result: Result) -> list[str]:
    """The run's own lines (not its progress display)."""
    return [line for line in result.stderr.splitlines() if line.startswith("batchveo: ")]


def export() -> dict[str, dict[str, Any]]:
    result = invoke("export")
    assert result.exit_code == 0, result.output
    return {row["id"]: row for row in map(json.loads, result.stdout.splitlines())}


def status() -> dict[str, Any]:
    result = invoke("status", "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def on_disk() -> list[str]:
    files = (str(p.relative_to("videos")) for p in Path("videos").rglob("*") if p.is_file())
    return without_posters(files)


def operation_id(row: dict[str, Any]) -> str:
    return str(row["operation"]).rsplit("/", 1)[1]


def check_files(row: dict[str, Any], names: list[str]) -> list[bytes]:
    """The job's videos are on disk under ``names``, as recorded (sha256, size), and are
    the simulator's samples of its operation, in order; their bytes."""
    assert [Path(f["path"]).name for f in row["files"]] == names
    datas = []
    for n, f in enumerate(row["files"]):
        data = Path(f["path"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
        assert video_tag(data) == f"{operation_id(row)}/sample_{n}"
        datas.append(data)
    return datas


def no_secret_written(st: SimThread, result: Result) -> None:
    """No token, no key reached the database, the run's output or a place it does not
    belong (the simulator counts where each arrived)."""
    assert "ya29." not in result.output
    stats = st.stats()
    assert stats["bearer_leaks"] == stats["key_leaks"] == stats["key_in_url"] == 0
    for path in Path().glob("jobs.db*"):
        assert b"ya29." not in path.read_bytes(), path


# --------------------------------------------------------------------------- outputs


def test_inline_outputs_are_saved_and_no_done_operation_is_polled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest("id: a, prompt: a sea", "id: b, prompt: b sea, sampleCount: 2",
             "id: c, prompt: c sea, generateAudio: false")  # fmt: skip
    # The operations run until each was polled running twice; then they are done.
    with sim_thread(generation_s=(60.0, 60.0)) as st:
        with_key(st, monkeypatch)

        def each_polled_twice() -> bool:
            polled = Counter(s.operation for s in st.seen if s.is_poll)
            return len(polled) == 3 and min(polled.values()) >= 2

        async def night() -> None:
            await until(each_polled_twice, what="each operation polled twice")
            st.sim.finish_all()

        st.script(night())
        result = run(st)
        stats = st.stats()
        seen = st.requests()
        assert result.exit_code == 0, result.output
        assert said(result) == ["batchveo: 3 done"]
        no_secret_written(st, result)
    rows = export()
    assert {row["state"] for row in rows.values()} == {"done"}
    assert on_disk() == ["a.mp4", "b_1.mp4", "b_2.mp4", "c.mp4"]
    videos = check_files(rows["a"], ["a.mp4"]) + check_files(rows["b"], ["b_1.mp4", "b_2.mp4"])
    videos += check_files(rows["c"], ["c.mp4"])
    assert len(set(videos)) == 4
    assert [(rows[i]["samples_requested"], rows[i]["samples_returned"]) for i in "abc"] == [
        (1, 1), (2, 2), (1, 1),
    ]  # fmt: skip
    assert all(row["storage_uri"] is None and row["attempts"] == 1 for row in rows.values())
    # Each operation answered with its videos once, and was never asked again.
    assert stats["polls_after_done"] == 0
    assert stats["operations"] == {"created": 3, "done": 3, "failed": 0, "filtered": 0}
    polls = [s for s in seen if s.is_poll]
    assert {s.status for s in polls} == {200}
    assert set(Counter(s.operation for s in polls)) == {r["operation"] for r in rows.values()}
    assert stats["requests"]["vertex_submit"] == {"200": 3}
    assert stats["requests"]["gcs"] == {}  # nothing read from a bucket
    assert stats["vertex"]["tokens"] == {"issued": 1, "refused": 0}  # one token, reused


@pytest.mark.parametrize("store", ["emulator", "simulator"])
def test_storage_outputs_are_downloaded_from_the_bucket_and_verified(
    monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    # The videos are written by the service into the bucket of --storage-uri, and the
    # run reads them from the Cloud Storage of --storage-base-url: a real emulator, or
    # the simulator's own.
    manifest("id: a, prompt: a sea", "id: b, prompt: b sea, sampleCount: 2")
    with (
        storage_emulator(BUCKET) as emulator,
        sim_thread(storage_upload_base=emulator if store == "emulator" else None) as st,
    ):

        def in_bucket(name: str) -> bytes:
            if store == "simulator":
                return st.call(lambda: st.sim.objects.objects[(BUCKET, name)].data)
            url = f"{emulator}/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}?alt=media"
            with urllib.request.urlopen(url, timeout=10) as r:
                data: bytes = r.read()
                return data

        with_key(st, monkeypatch)
        storage = emulator if store == "emulator" else st.url
        result = run(st, "--storage-uri", f"gs://{BUCKET}/night/", "--storage-base-url", storage)
        stats = st.stats()
        assert result.exit_code == 0, result.output
        assert said(result) == ["batchveo: 2 done"]
        no_secret_written(st, result)
        rows = export()
        a = check_files(rows["a"], ["a.mp4"])
        b = check_files(rows["b"], ["b_1.mp4", "b_2.mp4"])
        # The bytes on disk are the objects in the bucket, where the service put them.
        for row, datas in ((rows["a"], a), (rows["b"], b)):
            assert row["storage_uri"] == f"gs://{BUCKET}/night/"
            for n, data in enumerate(datas):
                assert in_bucket(f"night/{operation_id(row)}/sample_{n}.mp4") == data
    assert on_disk() == ["a.mp4", "b_1.mp4", "b_2.mp4"]
    assert stats["vertex"]["objects_written"] == 3 and stats["vertex"]["write_failures"] == 0
    assert stats["polls_after_done"] == 0
    # Read from the simulator's store only when it is the bucket's: metadata, then bytes.
    expected_reads = {} if store == "emulator" else {"200": 6}
    assert stats["requests"]["gcs"] == expected_reads


# --------------------------------------------------------------------------- filtering


def test_partly_and_wholly_filtered_results(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest(
        "id: part, prompt: 'three boats [sim:filteredx1]', sampleCount: 3",
        "id: none, prompt: 'two boats [sim:filtered]', sampleCount: 2",
        "id: ok, prompt: one boat",
    )
    with sim_thread() as st:
        with_key(st, monkeypatch)
        result = run(st)
        stats = st.stats()
    assert result.exit_code == 1, result.output  # all finished, one failed
    assert said(result) == ["batchveo: 2 done, 1 failed"]
    rows = export()
    part, none = rows["part"], rows["none"]
    assert part["state"] == "done"
    check_files(part, ["part_1.mp4", "part_2.mp4"])
    assert {k: part[k] for k in part if k.startswith("samples_") or k == "filtered_reasons"} == {
        "samples_requested": 3,
        "samples_returned": 2,
        "samples_filtered": 1,
        "filtered_reasons": [PARTIAL_SUPPORT_CODE],
    }
    assert part["cost_usd"] == pytest.approx(2 * USD_PER_VIDEO)  # the 2 videos returned
    assert (none["state"], none["error_kind"], none["files"]) == ("failed", "filtered", [])
    assert "You will not be charged" in none["error"]
    assert (none["samples_requested"], none["samples_returned"], none["samples_filtered"]) == (
        2, 0, 2,
    )  # fmt: skip
    assert none["cost_usd"] == 0 and len(none["filtered_reasons"]) == 1
    assert rows["ok"]["cost_usd"] == pytest.approx(USD_PER_VIDEO)
    assert on_disk() == ["ok.mp4", "part_1.mp4", "part_2.mp4"]
    assert stats["vertex"]["samples"] == {"requested": 6, "returned": 3, "filtered": 3}
    # status tells the partial result, and what was spent: the 3 videos made.
    samples = status()["batches"]["night"]["samples"]
    assert samples == {"jobs": 3, "requested": 6, "returned": 3, "filtered": 3, "partial": 1}
    text = invoke("status").stdout.splitlines()
    table = text[text.index(next(t for t in text if t.startswith("partial results"))) :]
    row = next(t for t in table if "night" in t)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == ["night", "1", "6", "3", "3"]
    spent = next(t for t in text if "night" in t and "$" in t)
    assert [cell.strip() for cell in spent.split("│")[1:3]] == [
        "night",
        f"${3 * USD_PER_VIDEO:.2f}",
    ]


# --------------------------------------------------------------------------- tokens


def test_a_token_revoked_between_two_submits_is_refreshed_and_nothing_is_sent_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The simulator revokes every token as the second submit arrives (one submitter: the
    # first was answered before): it carries a revoked token, gets 401, and is sent again
    # once with a fresh one. A 401 means the service did nothing: no job is paid twice.
    manifest(*(f"id: j{i}, prompt: sea {i}" for i in range(3)))
    with sim_thread() as st:
        with_key(st, monkeypatch)
        submits: list[web.Request] = []

        def revoke_at_the_second_submit(request: web.Request) -> None:
            if request.path.endswith(":predictLongRunning"):
                submits.append(request)
                if len(submits) == 2:
                    st.sim.issuer.expire_all()

        st.on_request(revoke_at_the_second_submit)
        result = run(st, "--submitters", "1")
        stats = st.stats()
    assert result.exit_code == 0, result.output
    assert said(result) == ["batchveo: 3 done"]
    assert stats["requests"]["vertex_submit"] == {"200": 3, "401": 1}
    assert stats["submits_by_prompt"] == {f"sea {i}": 1 for i in range(3)}
    assert stats["vertex"]["tokens"] == {"issued": 2, "refused": 0}
    rows = export()
    done = [("done", 1, None)] * 3
    assert [(r["state"], r["attempts"], r["error"]) for r in rows.values()] == done


@pytest.mark.parametrize("how", ["revoked", "lifetime"])
def test_tokens_that_expire_while_operations_run_are_refreshed(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # Every operation is still generating when the tokens stop working: revoked through
    # the simulator's /__sim/expire_tokens, or their lifetime over on the simulator's
    # clock (token_lifetime_s; google-auth, on the real clock, still trusts them). Each
    # poll after that gets 401 once; the run mints one new token and brings every job home.
    jobs = 4
    manifest(*(f"id: j{i}, prompt: sea {i}" for i in range(jobs)))
    clock = FakeClock()
    knobs: dict[str, Any] = (
        {"generation_s": (60.0, 60.0)}
        if how == "revoked"
        else {"clock": clock, "generation_s": (10.0, 10.0), "token_lifetime_s": 30.0}
    )
    with sim_thread(**knobs) as st:
        with_key(st, monkeypatch)

        def accepted() -> bool:
            submits: dict[str, int] = st.sim.stats()["submits_by_prompt"]
            return sum(submits.values()) == jobs

        async def night() -> None:
            await until(accepted, what=f"{jobs} submits")
            if how == "lifetime":
                clock.advance(30.0)  # the tokens' lifetime, and the generations too
                return
            async with aiohttp.ClientSession() as http:
                for action in ("expire_tokens", "finish_all"):
                    async with http.post(f"{st.url}/__sim/{action}") as r:
                        assert r.status == 200

        st.script(night())
        result = run(st)
        stats = st.stats()
        seen = st.requests()
    assert result.exit_code == 0, result.output
    assert said(result) == [f"batchveo: {jobs} done"]
    rows = export()
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in rows.values())
    assert stats["vertex"]["tokens"] == {"issued": 2, "refused": 0}
    assert stats["submits_by_prompt"] == {f"sea {i}": 1 for i in range(jobs)}
    polls = [s.status for s in seen if s.is_poll]
    assert 401 in polls and set(polls) == {200, 401}
    # No poll was refused twice in a row: one 401 each, then the new token.
    assert polls.count(401) <= jobs
    assert stats["polls_after_done"] == 0


# --------------------------------------------------------------------------- refusals


def pending_untouched(rows: dict[str, dict[str, Any]]) -> None:
    assert [(r["state"], r["attempts"], r["operation"]) for r in rows.values()] == [
        ("pending", 0, None)
    ] * len(rows)


def test_a_retired_model_stops_the_run_before_anything_else_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The service has retired a GA id the manifest names: the first submit's 404 stops
    # the route; the job after it (a model still served) is never sent.
    retired = "veo-3.1-fast-generate-001"
    manifest(f"id: x1, prompt: fast one, model: {retired}",
             f"id: x2, prompt: fast two, model: {retired}", "id: g1, prompt: standard")  # fmt: skip
    with sim_thread(retired_models=(retired,)) as st:
        with_key(st, monkeypatch)
        result = run(st, "--submitters", "1")
        stats = st.stats()
    assert result.exit_code == 4, result.output
    [line] = said(result)
    assert line.startswith("batchveo: stopped: ") and line.endswith(
        "; jobs left pending (3 pending)"
    )
    assert f"Publisher Model projects/{PROJECT}/locations/{LOCATION}/publishers/google/" in line
    assert f"models/{retired} was not found" in line
    assert f"Vertex serves: {', '.join(GA_IDS)}" in line
    assert stats["requests"]["vertex_submit"] == {"404": 1}
    assert stats["received_by_prompt"] == {"fast one": 1}
    assert stats["operations"]["created"] == 0
    pending_untouched(export())
    assert not Path("videos").exists() or on_disk() == []


@pytest.mark.parametrize("why", ["knob", "another project"])
def test_permission_denied_stops_the_run_with_nothing_paid(
    monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    # 403 PERMISSION_DENIED: the simulator's knob (a missing role), or a --project the
    # credentials' service account has no access to.
    manifest(*(f"id: j{i}, prompt: sea {i}" for i in range(3)))
    project = PROJECT if why == "knob" else "someone-elses"
    with sim_thread(vertex_permission_denied=why == "knob") as st:
        with_key(st, monkeypatch)
        result = run(st, project=project)
        stats = st.stats()
    assert result.exit_code == 4, result.output
    [line] = said(result)
    assert line.startswith(
        "batchveo: stopped: HTTP 403 PERMISSION_DENIED: Permission 'aiplatform.endpoints.predict'"
        f" denied on resource '//aiplatform.googleapis.com/projects/{project}/locations/"
    )
    assert "(grant the credentials" in line and "check the project and region" in line
    assert line.endswith("; jobs left pending (3 pending)")
    assert set(stats["requests"]["vertex_submit"]) == {"403"}
    assert stats["operations"]["created"] == 0
    pending_untouched(export())


# --------------------------------------------------------------------------- quotas


def test_a_quota_429_pauses_the_run_as_told_and_every_job_is_sent_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The project's quota in the region: 2 submits per 0.2 s window. The simulator's
    # clock moves only when it answers a 429, by the retryDelay it gave: the window is
    # over once the run has waited that long, and not before. One submitter, so the next
    # submit is the run's own choice of when to send again.
    jobs, window_s = 6, 0.2
    manifest(*(f"id: j{i}, prompt: sea {i}" for i in range(jobs)))
    clock = FakeClock()
    with sim_thread(
        clock=clock, generation_s=(0.0, 0.0), rpm_limit=2, rate_window_s=window_s
    ) as st:
        with_key(st, monkeypatch)

        def time_passes(seen: Seen) -> None:
            if seen.status == 429 and seen.retry_delay is not None:
                clock.advance(float(seen.retry_delay.removesuffix("s")))

        st.on_answer(time_passes)
        result = run(st, "--submitters", "1")
        stats = st.stats()
        seen = st.requests()
    assert result.exit_code == 0, result.output
    assert said(result) == [f"batchveo: {jobs} done"]
    submits = [s for s in seen if s.is_submit]
    assert [s.status for s in submits] == [200, 200, 429, 200, 200, 429, 200, 200]
    assert stats["submits_by_prompt"] == {f"sea {i}": 1 for i in range(jobs)}
    assert stats["quota_violations"] == 2
    for refused, after in itertools.pairwise(submits):
        if refused.status == 429:  # the pause told was honoured, to the request
            assert refused.retry_delay == f"{window_s}s"
            assert after.at >= refused.at + window_s, (refused, after)
    # The run told its 429 pauses; no job counted an attempt for them.
    progress = [line for line in result.stderr.splitlines() if "429 pauses" in line]
    assert "429 pauses 2 " in progress[-1]
    assert all(r["attempts"] == 1 for r in export().values())
