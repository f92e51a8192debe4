"""The Vertex AI route's safety promises, held by whole runs.

A real ``batchveo run --provider vertex`` against a real ``Simulator`` on a socket, with
google-auth's own token flow: ``GOOGLE_APPLICATION_CREDENTIALS`` is a throwaway
service-account key the simulator wrote and trusts, so every bearer token the run used was
handed out by the simulator's issuer, which the tests then hold against everything the run
wrote. Where a process must die (``kill -9``) or its stderr be read, the run is a
subprocess (as in ``test_crash``); elsewhere it runs in the test's loop through
``run.app.run_night``, with the fast retry backoff of ``pipeline_helpers.fast_config``.

The client-level checks (the token sent to its own hosts only, a video's size and
``md5Hash``) are ``test_vertex_client``'s; here: what a user finds after a night.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from batchveo.cli import main
from batchveo.run.app import RunOptions, run_night
from batchveo.run.downloader import DOWNLOAD_SAME_ANSWER_TRIES
from batchveo.sim import Simulator
from batchveo.sim.storage import sample_lasting, video_tail
from tests.helpers import FakeClock, db_states, wait_until, without_posters
from tests.pipeline_helpers import fast_config, fast_sim, sha256_file

PROJECT = "vsafe-proj"
BUCKET = "vsafe-videos"
STORAGE_URI = f"gs://{BUCKET}/night/"
RUN_FLAGS = [
    "--provider", "vertex", "--rpm", "0", "--first-poll", "0.02s", "--poll-interval", "0.02s",
    "--submitters", "4", "--downloaders", "2",
]  # fmt: skip
ENV_VARS = (
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
    "BATCHVEO_PROVIDER", "BATCHVEO_STORAGE_URI", "BATCHVEO_STORAGE_BASE_URL",
    "BATCHVEO_BASE_URL", "BATCHVEO_DB", "BATCHVEO_API_KEY", "GPTPROTO_API_KEY", "GEMINI_API_KEY",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials of the machine (no metadata server, no gcloud login), no API key:
    the run's only credential is the key file each test gives it."""
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def write_manifest(path: Path, prompts: dict[str, str], **defaults: str) -> Path:
    lines = ["defaults:", *(f"  {k}: {v}" for k, v in defaults.items())] if defaults else []
    lines.append("jobs:")
    lines += [f"  - id: {i}\n    prompt: {json.dumps(p)}" for i, p in prompts.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def sim_key(sim: Simulator, tmp: Path) -> Path:
    """A key file trusted by ``sim``, outside the run's folders (it holds a private key)."""
    keys = tmp / "keys"
    keys.mkdir(exist_ok=True)
    return sim.make_key(keys / "service-account.json", project=PROJECT)


def tokens_handed_out(sim: Simulator) -> list[str]:
    """Every bearer token the simulator's issuer handed out, so far."""
    return list(sim.issuer._tokens)


def private_key_lines(key: Path) -> list[str]:
    """The base64 lines of the key file's private key (each a piece of its material)."""
    pem = json.loads(key.read_text())["private_key"]
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def recorded_files(db: Path) -> dict[str, list[dict[str, Any]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, files FROM jobs").fetchall()
    return {i: json.loads(f or "[]") for i, f in rows}


def operations(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, operation FROM jobs").fetchall())


def expected_video(sim: Simulator, operation: str, inline: bool) -> bytes:
    """The bytes of sample 0 of ``operation``: the object in the simulator's bucket, or
    (inline) the sample made to last 8 s (the default length) with the ``free`` box naming
    it, as the simulator sends them."""
    op_id = operation.rsplit("/", 1)[1]
    if inline:
        return sample_lasting(8) + video_tail(f"{op_id}/sample_0")
    [obj] = [o for (b, n), o in sim.objects.objects.items() if n.endswith(f"{op_id}/sample_0.mp4")]
    return obj.data


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


async def acli(*args: str) -> Result:
    """A command run in-process off the test's loop (the commands run their own)."""
    return await asyncio.to_thread(cli, *args)


# --------------------------------------------------------------------------- kill -9


def vertex_env(sim: Simulator, key: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return dict(
        env, GOOGLE_APPLICATION_CREDENTIALS=str(key), BATCHVEO_BASE_URL=sim.url,
        BATCHVEO_STORAGE_BASE_URL=sim.url,
    )  # fmt: skip


async def start_run(
    tmp: Path, sim: Simulator, key: Path, *extra: str
) -> asyncio.subprocess.Process:
    args = ["run", str(tmp / "jobs.yaml"), "--db", str(tmp / "jobs.db"), "--out", str(tmp / "out")]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batchveo", *args, *RUN_FLAGS, *extra,
        env=vertex_env(sim, key), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_for(
    proc: asyncio.subprocess.Process, db: Path, cond: Callable[[list[str]], bool]
) -> None:
    """Until the jobs' states in ``db`` meet ``cond``, while the run ``proc`` lives."""

    seen: list[str] = []

    async def met() -> bool:
        if proc.returncode is not None:
            _, err = await proc.communicate()
            raise AssertionError(f"the run ended ({proc.returncode}): {err.decode()}")
        seen[:] = (await asyncio.to_thread(db_states, db)).values()
        return bool(seen) and cond(seen)

    try:
        await wait_until(met, 30)
    except AssertionError:
        raise AssertionError(f"states never met the condition; last seen: {seen}") from None


N_KILL = 12


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "storage-uri"])
async def test_kill_9_mid_run_then_rerun_ends_all_done_and_pays_nothing_twice(
    tmp_path: Path, inline: bool
) -> None:
    # Half the jobs are [sim:slow]: on the simulator's clock, which moves only when the
    # test moves it, they take 1 s and the others less.
    prompts = {
        f"job{i:02d}": f"a kill test prompt number {i}" + (" [sim:slow]" if i % 2 else "")
        for i in range(N_KILL)
    }
    write_manifest(tmp_path / "jobs.yaml", prompts)
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    route = [] if inline else ["--storage-uri", STORAGE_URI]
    flags = [*route, "--max-inflight", str(N_KILL)]
    clock = FakeClock()
    async with fast_sim(generation_s=(0.05, 1.0), latency_s=(0.0, 0.01), clock=clock) as sim:
        key = sim_key(sim, tmp_path)
        proc = await start_run(tmp_path, sim, key, *flags)
        # All sent (none mid-submit: a kill then would leave it uncertain), none generated.
        await wait_for(proc, db, lambda s: s.count("running") == N_KILL)
        clock.advance(0.99)  # the quick half is generated...
        await wait_for(proc, db, lambda s: s.count("done") >= 3)  # ...and coming home
        proc.kill()
        await proc.wait()
        at_kill = list(db_states(db).values())
        assert "running" in at_kill and "done" in at_kill
        clock.advance(10.0)  # the slow half is generated too
        proc = await start_run(tmp_path, sim, key, *flags)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        stats = sim.stats()
        final = db_states(db)
        assert set(final.values()) == {"done"} and len(final) == N_KILL
        # Every prompt accepted exactly once: the running ones were polled, not resent.
        assert sorted(stats["submits_by_prompt"].values()) == [1] * N_KILL
        assert stats["vertex"]["submits_by_location"] == {f"{PROJECT}/us-central1": N_KILL}
        assert not list(out.rglob("*.part"))
        assert without_posters(p.name for p in out.rglob("*") if p.is_file()) == [
            f"{j}.mp4" for j in sorted(prompts)
        ]
        recorded, ops = recorded_files(db), operations(db)
        for job in prompts:
            [f] = recorded[job]
            path = out / f"{job}.mp4"
            assert f["path"] == str(path.resolve()) and f["sha256"] == sha256_file(path)
            # The whole video of this job's own operation, not a half or another's.
            assert path.read_bytes() == expected_video(sim, ops[job], inline)
        if not inline:
            assert stats["vertex"]["objects_written"] == N_KILL


# --------------------------------------------------------------------------- secrets


def every_cell(db: Path) -> Iterator[bytes]:
    """Every value of every column of every table of ``db``, as bytes."""
    with sqlite3.connect(db) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    yield value if isinstance(value, bytes) else str(value).encode()


def every_file(root: Path, skip: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and skip not in path.parents:
            yield path, path.read_bytes()


async def test_no_token_nor_private_key_in_logs_database_exports_or_report(
    tmp_path: Path,
) -> None:
    bucket_jobs = {
        **{f"b{i}": f"a bucket video {i}" + (" [sim:slow]" if i % 2 else "") for i in range(4)},
        "b-once": "read one byte off once [sim:corruptx1] [sim:slow]",
        "b-error": "an operation error [sim:op_error]",
        "b-filtered": "a filtered one [sim:filtered]",
        "b-policy": "refused at submit [sim:content_policy]",
    }
    inline_jobs = {
        **{f"i{i}": f"an inline video {i}" + (" [sim:slow]" if i % 2 else "") for i in range(4)},
        "i-error": "an inline operation error [sim:op_error] [sim:slow]",
    }
    write_manifest(tmp_path / "bucket.yaml", bucket_jobs, storageUri=STORAGE_URI)
    write_manifest(tmp_path / "inline.yaml", inline_jobs)
    db, log = tmp_path / "jobs.db", tmp_path / "run.jsonl"
    raw_db: dict[str, bytes] = {}  # the database's files as they were mid-run (the WAL too)

    def snapshot() -> None:
        for name in ("jobs.db", "jobs.db-wal"):
            if (tmp_path / name).exists():
                raw_db[f"{name} {len(raw_db)}"] = (tmp_path / name).read_bytes()

    clock = FakeClock()
    async with fast_sim(generation_s=(0.05, 1.0), clock=clock) as sim:
        key = sim_key(sim, tmp_path)
        args = [
            "run", "bucket.yaml", "inline.yaml", "--db", str(db), "--out", "out",
            "--log-file", str(log), "-v", "--max-inflight", "20", *RUN_FLAGS,
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "batchveo", *args, cwd=tmp_path, env=vertex_env(sim, key),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await wait_for(proc, db, lambda s: "pending" not in s and "submitting" not in s)
        snapshot()
        clock.advance(0.99)  # the quick half is generated...
        await wait_for(proc, db, lambda s: s.count("done") >= 2)
        snapshot()
        sim.issuer.expire_all()  # ...and the slow half is polled with a new token
        clock.advance(10.0)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1, err.decode()  # the failures above, the rest done
        snapshot()
        tokens = tokens_handed_out(sim)
        stats = sim.stats()
    # The expired token was refused (401) and a new one taken: both are searched for. The
    # first request after the expiry may be a poll or a bucket read, whichever came first.
    refused = [kind for kind in ("vertex_poll", "gcs") if "401" in stats["requests"].get(kind, {})]
    assert refused and len(tokens) >= 2
    states = db_states(db)
    failed = sorted(j for j, s in states.items() if s != "done")
    assert failed == ["b-error", "b-filtered", "b-policy", "i-error"]
    shown = [
        await acli(*command, "--db", str(db))
        for command in [
            ("export", "-o", str(tmp_path / "export.jsonl")),
            ("export", "--format", "csv", "-o", str(tmp_path / "export.csv")),
            ("report", "--out", str(tmp_path / "out" / "report.html")),
            ("status", "--json"),
            ("status",),
            *(("show", job) for job in states),
        ]
    ]
    assert all(r.exit_code == 0 for r in shown), [r.output for r in shown]
    assert (tmp_path / "export.csv").exists() and (tmp_path / "out" / "report.html").exists()
    assert "b-once" in (tmp_path / "out" / "report.html").read_text()
    assert any(name.startswith("jobs.db-wal") for name in raw_db)
    texts = [out, err, *raw_db.values(), *every_cell(db), *(r.output.encode() for r in shown)]
    files = dict(every_file(tmp_path, skip=key.parent))  # logs, db, WAL, exports, report...
    assert {log, tmp_path / "export.jsonl", tmp_path / "export.csv", db} <= set(files)
    secrets = [t.encode() for t in tokens]
    secrets += [t.removeprefix("ya29.sim-").encode() for t in tokens]  # part of one too
    secrets += [line.encode() for line in private_key_lines(key)]
    for secret in secrets:
        assert not any(secret in text for text in texts), "a secret in the run's texts"
        assert not [p for p, data in files.items() if secret in data], "a secret in a file"


# --------------------------------------------------------------------------- in-process runs


async def night(
    tmp: Path, sim: Simulator, key: Path, *manifests: Path, **options: Any
) -> dict[str, str]:
    """One ``batchveo run --provider vertex`` in the test's loop, to its end (at most
    30 s: a run that never ends is a failure, not a hang); the jobs' states."""
    run = RunOptions(
        db_path=tmp / "jobs.db", config=fast_config(tmp / "out"), manifests=manifests,
        provider="vertex", base_url=sim.url, storage_base_url=sim.url, **options,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        await asyncio.wait_for(run_night(run, say=lambda _: None, stream=io.StringIO()), 30)
    return db_states(tmp / "jobs.db")


def export_rows(tmp: Path) -> dict[str, dict[str, Any]]:
    result = cli("export", "--db", str(tmp / "jobs.db"))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    return {row["id"]: row for row in rows}


# --------------------------------------------------------------------------- redirects


async def test_downloads_redirected_to_another_host_get_no_token_and_the_run_completes(
    tmp_path: Path,
) -> None:
    jobs = {f"r{i}": f"a redirected video {i}" for i in range(4)}
    manifest = write_manifest(tmp_path / "jobs.yaml", jobs)
    # Every media read answers 302 to a signed URL on "localhost": another host than the
    # 127.0.0.1 the run talks to (the same server, which counts what arrives there).
    async with fast_sim(redirect_downloads=True, files_host="localhost") as sim:
        key = sim_key(sim, tmp_path)
        states = await night(tmp_path, sim, key, manifest, storage_uri=STORAGE_URI)
        stats = sim.stats()
    assert states == dict.fromkeys(jobs, "done")
    assert stats["bearer_leaks"] == 0 and stats["key_leaks"] == 0 and stats["key_in_url"] == 0
    # Each video came from the signed URL, once, and is the object's bytes.
    assert stats["requests"]["storage"] == {"200": len(jobs)}
    assert stats["requests"]["gcs"] == {"200": len(jobs), "302": len(jobs)}  # metadata, media
    ops = operations(tmp_path / "jobs.db")
    for job in jobs:
        path = tmp_path / "out" / f"{job}.mp4"
        assert path.read_bytes() == expected_video(sim, ops[job], inline=False)


# --------------------------------------------------------------------------- size and md5Hash


async def test_bytes_that_are_not_the_objects_never_count_as_the_video(tmp_path: Path) -> None:
    jobs = {
        "md5-always": "every read one byte off [sim:corruptx99]",
        "cut-always": "every read cut short [sim:truncatedx99]",
        "md5-once": "the first read one byte off [sim:corruptx1]",
        "cut-once": "the first read cut short [sim:truncatedx1]",
        "plain": "a video read whole",
    }
    bad = ("md5-always", "cut-always")
    manifest = write_manifest(tmp_path / "jobs.yaml", jobs)
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    async with fast_sim() as sim:
        key = sim_key(sim, tmp_path)
        states = await night(tmp_path, sim, key, manifest, storage_uri=STORAGE_URI)
        reads = sim.stats()["vertex"]["storage_reads"]
        ops = operations(db)
        want = {j: expected_video(sim, ops[j], inline=False) for j in jobs}
        assert states == {
            "md5-always": "failed", "cut-always": "failed",
            "md5-once": "done", "cut-once": "done", "plain": "done",
        }  # fmt: skip
        # Each bad object was read again and again, then given up (one read each for
        # the faults that cleared).
        tries = DOWNLOAD_SAME_ANSWER_TRIES
        assert reads["corrupted"] == tries + 1 and reads["truncated"] == tries + 1
        rows = await asyncio.to_thread(export_rows, tmp_path)
        md5, cut = rows["md5-always"], rows["cut-always"]
        assert md5["error_kind"] == cut["error_kind"] == "download"
        assert re.search(r"the bytes' md5 \S+ is not the object's md5Hash \S+$", md5["error"])
        assert f"{tries} tries got bytes that are not the object's" in md5["error"]
        assert re.search(r"truncated download: got (\d+) of 17457 bytes$", cut["error"])
        # The bytes on disk never pass for those videos: no file, in export, show or --out.
        assert md5["files"] == cut["files"] == []
        for job in bad:
            shown = await acli("show", job, "--db", str(db))
            fields = [line.split(":", 1)[0].strip() for line in shown.output.splitlines()]
            assert "files" not in fields and str(out) not in shown.output
        assert not list(out.rglob("*.part"))
        good = ("cut-once", "md5-once", "plain")  # the faults that cleared: the right bytes
        assert without_posters(p.name for p in out.iterdir()) == [f"{j}.mp4" for j in good]
        for job in good:
            [f] = rows[job]["files"]
            assert f["sha256"] == hashlib.sha256(want[job]).hexdigest()
            assert (out / f"{job}.mp4").read_bytes() == want[job]

        # Once the bucket serves the right bytes, `retry` fetches them again, unpaid.
        for obj in sim.objects.objects.values():
            obj.corrupt = obj.truncate = 0
        retried = await acli("retry", "--state", "failed", "--db", str(db))
        assert retried.exit_code == 0, retried.output
        assert set(db_states(db).values()) == {"generated", "done"}
        states = await night(tmp_path, sim, key, storage_uri=STORAGE_URI)
        assert set(states.values()) == {"done"}
        assert sorted(sim.stats()["submits_by_prompt"].values()) == [1] * len(jobs)
        for job in bad:
            assert (out / f"{job}.mp4").read_bytes() == want[job]
