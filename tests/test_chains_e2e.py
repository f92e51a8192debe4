"""Scene chains end to end over real sockets: manifest -> store -> runner -> simulator.

The simulator accepts an extension only for a video it generated and still holds, so a
hop that reaches it with a wrong uri fails. A middleware added to the simulator's app
(before it starts; nothing of ``sim/`` changes) logs, in the order the server saw them,
each submit's prompt and ``instances[0].video.uri`` and each video download: the proof
that a hop carried its parent's uri and was sent only after its parent was done.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batchveo import mp4
from batchveo.cli.export import export_database
from batchveo.manifest import read_manifests
from batchveo.sim import Simulator
from batchveo.store import Store
from tests.pipeline_helpers import fast_config, fast_sim, run_batch, sha256_file


def is_mp4(path: Path) -> bool:
    """A whole MP4 (its first box ``ftyp``): a hop's video is longer than the sample the
    simulator started from, so not the sample's bytes."""
    return path.read_bytes()[4:8] == b"ftyp"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def recorded(sim: Simulator) -> list[tuple[str, str, str | None]]:
    """Log ``("submit", prompt, video uri)`` and ``("download", path, None)``."""
    log: list[tuple[str, str, str | None]] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and request.path.endswith(":predictLongRunning"):
            body = json.loads(await request.read())
            inst = body["instances"][0]
            log.append(("submit", inst["prompt"], (inst.get("video") or {}).get("uri")))
        elif request.method == "GET" and "download" in request.path + request.query_string:
            log.append(("download", request.path, None))
        return await handler(request)

    sim.app.middlewares.append(record)
    return log


def chains_yaml(path: Path) -> Path:
    path.write_text(
        "jobs:\n"
        "  - id: a\n    prompt: chain a hop 1\n"
        "    chain: [chain a hop 2, chain a hop 3, chain a hop 4]\n"
        "  - id: b\n    prompt: chain b hop 1\n"
        "    chain:\n      - chain b hop 2\n      - {prompt: chain b hop 3, seed: 5}\n"
        "      - chain b hop 4\n"
        "  - id: c\n    prompt: branch root\n"
        "  - {id: c-left, extends: c, prompt: branch left}\n"
        "  - {id: c-right, extends: c, prompt: branch right}\n"
        "  - {id: c-left-2, extends: c-left, prompt: branch left again}\n"
        "  - {id: plain, prompt: not a chain}\n"
    )
    return path


def rows(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in conn.execute("SELECT * FROM jobs")}


def events(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT job_id, to_state FROM events ORDER BY rowid"))


PARENTS = {
    "a-2": "a", "a-3": "a-2", "a-4": "a-3",
    "b-2": "b", "b-3": "b-2", "b-4": "b-3",
    "c-left": "c", "c-right": "c", "c-left-2": "c-left",
}  # fmt: skip


async def test_two_linear_chains_and_a_branching_one_run_to_the_end(tmp_path: Path) -> None:
    specs = read_manifests([chains_yaml(tmp_path / "jobs.yaml")]).specs
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    async with await Store.open(db) as store:
        sim = fast_sim()
        log = recorded(sim)  # before the server starts: its middlewares are fixed then
        async with sim:
            result = await run_batch(store, sim, fast_config(out), specs)
            stats = sim.stats()
    assert result.exit_code == 0, result.summary()
    jobs = rows(db)
    assert {j["state"] for j in jobs.values()} == {"done"}
    prompts = {j["prompt"]: i for i, j in jobs.items()}
    sent = [(prompts[p], uri) for kind, p, uri in log if kind == "submit"]
    assert sorted(i for i, _ in sent) == sorted(jobs)  # every job sent exactly once
    assert max(stats["submits_by_prompt"].values()) == 1
    for hop, parent in PARENTS.items():
        [uri] = [u for i, u in sent if i == hop]
        assert uri == json.loads(jobs[parent]["video_uris"])[0]  # the parent's own video
        assert jobs[hop]["extends"] == parent
    for root in ("a", "b", "c", "plain"):
        assert [u for i, u in sent if i == root] == [None]
    # Order: a hop's submit comes after its parent is done (in the server's log, after
    # the parent's download; in the database, after the parent's done event).
    submits = [i for i, (kind, _, _) in enumerate(log) if kind == "submit"]
    for hop, parent in PARENTS.items():
        file_id = json.loads(jobs[parent]["video_uris"])[0].split("/files/")[1].split(":")[0]
        fetched = [i for i, (k, path, _) in enumerate(log) if k == "download" and file_id in path]
        [hop_sent] = [i for i in submits if prompts[log[i][1]] == hop]
        assert fetched and fetched[0] < hop_sent
    order = events(db)
    for hop, parent in PARENTS.items():
        done_at = order.index((parent, "done"))
        assert order.index((hop, "submitting")) > done_at
    assert jobs["a-4"]["chain_root"] == "a" and jobs["a-4"]["hop"] == 4
    assert jobs["c-left-2"]["chain_root"] == "c" and jobs["c-left-2"]["hop"] == 3
    for job_id, job in jobs.items():
        [f] = json.loads(job["files"])
        assert Path(f["path"]) == out / f"{job_id}.mp4" and is_mp4(Path(f["path"]))
        assert f["sha256"] == sha256_file(Path(f["path"]))
        # Each cut is the whole chain so far: 8 s, then 7 s more a hop, in its MP4.
        hop = job["hop"] or 1
        assert mp4.duration_s(Path(f["path"]).read_bytes()) == 8 + 7 * (hop - 1), job_id
    # A hop costs a whole video of its length: 8 s + 7 s a hop, at 0.40 USD a second.
    assert jobs["a-4"]["cost_usd"] == pytest.approx(0.40 * (8 + 3 * 7))
    # Reloading the manifest once every hop ran adds nothing.
    async with await Store.open(db) as store:
        again = await store.add_jobs(read_manifests([tmp_path / "jobs.yaml"]).specs)
    assert (again.new, again.existing) == (0, len(jobs))


async def test_a_rejected_root_sends_none_of_its_hops(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        "jobs:\n  - id: r\n    prompt: '[sim:content_policy] a root refused'\n"
        "    chain: [refused hop two, refused hop three]\n"
        "  - {id: r-branch, extends: r-2, prompt: refused branch}\n"
        "  - {id: fine, prompt: a fine job}\n"
    )
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    async with await Store.open(db) as store, fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), read_manifests([path]).specs)
        received = sim.stats()["received_by_prompt"]
    jobs = rows(db)
    assert result.exit_code == 1  # failures
    assert jobs["r"]["error_kind"] == "content_policy" and jobs["fine"]["state"] == "done"
    for hop in ("r-2", "r-3", "r-branch"):
        assert (jobs[hop]["state"], jobs[hop]["error_kind"]) == ("failed", "parent_failed")
        assert "the chain broke at r," in jobs[hop]["error"]
        assert jobs[hop]["attempts"] == 0 and jobs[hop]["submitted_at"] is None
    assert not any("refused" in p and "root" not in p for p in received)  # no hop reached it
    assert not list(out.glob("r-*"))


async def test_a_hop_whose_parent_expired_meanwhile_is_never_sent(tmp_path: Path) -> None:
    """The parent was done (its hop released) two days and more before the run that would
    send the hop: the claim looks again, and nothing is sent."""
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  - id: old\n    prompt: an old root\n    chain: [too late]\n")
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    async with await Store.open(db) as store, fast_sim() as sim:
        first = await run_batch(
            store, sim, fast_config(out, max_jobs=1), read_manifests([path]).specs
        )
        assert first.exit_code == 75  # the hop is left for the next run
        assert rows(db)["old-2"]["state"] == "pending"
        three_days_s = 3 * 24 * 3600.0
        later = await run_batch(
            store, sim, fast_config(out), clock=lambda: time.time() + three_days_s
        )
        received = sim.stats()["received_by_prompt"]
    hop = rows(db)["old-2"]
    assert (hop["state"], hop["error_kind"]) == ("failed", "parent_expired")
    assert "parent old was generated more than 48 h ago" in hop["error"]
    assert "too late" not in received and later.exit_code == 1
    assert not (out / "old-2.mp4").exists()


async def test_a_hop_extends_a_job_already_in_the_database(tmp_path: Path) -> None:
    """Last night's video, extended tonight: the parent is found in the database, the hop
    is released at load (its parent is done) and sent with the parent's uri."""
    from batchveo.run.loading import load_into_store

    first = tmp_path / "night1.yaml"
    first.write_text("jobs:\n  - {id: dawn, prompt: the sun rises}\n")
    second = tmp_path / "night2.yaml"
    second.write_text("jobs:\n  - {id: dawn-2, extends: dawn, prompt: the sun climbs}\n")
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    assert (await load_into_store(db, [first])).new == 1
    sim = fast_sim()
    log = recorded(sim)
    async with sim:
        async with await Store.open(db) as store:
            assert (await run_batch(store, sim, fast_config(out))).exit_code == 0
        assert (await load_into_store(db, [second])).new == 1
        assert rows(db)["dawn-2"]["state"] == "pending"  # its parent is done already
        async with await Store.open(db) as store:
            assert (await run_batch(store, sim, fast_config(out))).exit_code == 0
    jobs = rows(db)
    assert jobs["dawn-2"]["state"] == "done" and jobs["dawn-2"]["hop"] == 2
    parent_uri = json.loads(jobs["dawn"]["video_uris"])[0]
    assert ("submit", "the sun climbs", parent_uri) in log
    assert (await load_into_store(db, [second])).existing == 1  # a reload adds nothing


async def test_a_run_moves_on_a_hop_its_parent_left_waiting(tmp_path: Path) -> None:
    """A crash right after a parent's done was committed, before its hop was released:
    the next run releases it at its start and sends it."""
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  - id: p\n    prompt: a parent\n    chain: [its hop]\n")
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    async with await Store.open(db) as store, fast_sim() as sim:
        first = await run_batch(
            store, sim, fast_config(out, max_jobs=1), read_manifests([path]).specs
        )
        assert first.exit_code == 75
        async with store._tx() as conn:  # as the crash left it: the release undone
            await conn.execute(
                "UPDATE jobs SET state='waiting', inputs='{}', parent_generated_at=NULL"
                " WHERE id='p-2'"
            )
        result = await run_batch(store, sim, fast_config(out))
    assert result.exit_code == 0 and rows(db)["p-2"]["state"] == "done"


async def test_export_says_each_cut_s_place_length_and_poster(tmp_path: Path) -> None:
    specs = read_manifests([chains_yaml(tmp_path / "jobs.yaml")]).specs
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    async with await Store.open(db) as store:
        async with fast_sim() as sim:
            result = await run_batch(store, sim, fast_config(out), specs)
        assert result.exit_code == 0
        with (tmp_path / "x.jsonl").open("w") as f:
            export_database(db, f, "jsonl", None, None)
        with (tmp_path / "x.csv").open("w", newline="") as f:
            export_database(db, f, "csv", None, None)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "x.jsonl").read_text().splitlines())}
    a4 = rows["a-4"]
    assert (a4["hop"], a4["output_s"], a4["params"]["durationSeconds"]) == (4, 29, 8)
    assert a4["posters"] == ["a-4.jpg"] and (out / "a-4.jpg").is_file()
    assert (rows["plain"]["hop"], rows["plain"]["output_s"]) == (None, None)
    header = (tmp_path / "x.csv").read_text().splitlines()[0].split(",")
    assert {"hop", "output_s", "posters"} <= set(header)
