"""What the client's answers make the runner do: whole runs against the simulator.

Each test drives a real run (``tests.pipeline_helpers``) over real sockets and asserts what a
user would see the next morning: the exit code, the jobs' states and errors, and what the
simulator was sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import make_spec, without_posters
from tests.pipeline_helpers import fast_config, fast_sim, run_batch

S = JobState


async def test_a_project_refused_by_the_service_stops_the_run_with_jobs_pending(
    store: Store, tmp_path: Path
) -> None:
    message = "User location is not supported for the API use."
    specs = [make_spec(f"j{i}") for i in range(6)]
    config = fast_config(tmp_path / "v", submitters=2)
    async with fast_sim(precondition_failure=message) as sim:
        result = await run_batch(store, sim, config, specs)
        stats = sim.stats()
    assert result.exit_code == 4
    error = result.account_error or ""
    assert message in error and "location" in error and "\n" not in error
    jobs = await store.jobs()
    assert {j.state for j in jobs} == {S.PENDING} and all(j.attempts == 0 for j in jobs)
    assert 1 <= stats["requests"]["submit"].get("400", 0) <= config.submitters


async def test_one_refused_video_expires_while_the_others_come_home(
    store: Store, tmp_path: Path
) -> None:
    """A download answered 403 (the Files API's word for a missing or expired file) concerns
    that file: it is retried until the retention is over, and the night goes on."""
    out = tmp_path / "v"
    specs = [make_spec(f"ok{i}") for i in range(4)] + [make_spec("gone", "gone [sim:file403]")]
    async with fast_sim(retention_s=2.0) as sim:
        result = await run_batch(store, sim, fast_config(out, retention_s=0.3), specs)
        stats = sim.stats()
    states = {j.id: (j.state, j.error_kind) for j in await store.jobs()}
    expected = {f"ok{i}": (S.DONE, None) for i in range(4)}
    assert states == {**expected, "gone": (S.EXPIRED, "expired")}
    assert result.exit_code == 1 and result.account_error is None
    assert stats["requests"]["download"]["200"] == 4
    assert stats["requests"]["download"]["403"] >= 2  # retried, not given up at once
    assert without_posters(p.name for p in out.iterdir()) == [f"ok{i}.mp4" for i in range(4)]


@pytest.mark.parametrize("status", [503, 429])
async def test_a_busy_first_poll_does_not_settle_the_poll_method(
    store: Store, tmp_path: Path, status: int
) -> None:
    """A POST-only server whose front door answers the very first poll 503 (or 429) before
    it looks at the method: that answer proves nothing about GET, so the client still
    finds POST and every job finishes. One job in flight at a time: no other poll is
    waiting to negotiate when the first one comes back."""
    specs = [make_spec(f"j{i}") for i in range(3)]
    sim_kw = {"fail_first_polls": 1, "fail_first_polls_status": status}
    async with fast_sim(poll_methods="post", retry_after_s=0.01, **sim_kw) as sim:
        result = await run_batch(store, sim, fast_config(tmp_path / "v", max_inflight=1), specs)
        stats = sim.stats()
    assert {j.state for j in await store.jobs()} == {S.DONE}
    assert result.exit_code == 0
    assert stats["requests"]["poll"][str(status)] == 1


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateway_timeout_on_submit_leaves_the_job_uncertain_not_resent(
    store: Store, tmp_path: Path, status: int
) -> None:
    """Behind a proxy (the reseller is one), a 502/504 may come after the upstream created
    the paid operation: the job is uncertain, and nothing sends it again on its own."""
    prompt = f"behind a proxy [sim:{status}x1]"
    specs = [make_spec("gw", prompt), make_spec("ok")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(tmp_path / "v", max_attempts=3), specs)
        stats = sim.stats()
    jobs = {j.id: j for j in await store.jobs()}
    assert (jobs["gw"].state, jobs["gw"].error_kind) == (S.UNCERTAIN, "submit_outcome_unknown")
    assert f"HTTP {status}" in (jobs["gw"].error or "")
    assert jobs["ok"].state is S.DONE
    assert stats["received_by_prompt"][prompt] == 1
    assert result.exit_code == 1
