"""What the client's answers make the runner do: whole runs against the simulator.

Each test drives a real run (``tests.pipeline_helpers``) over real sockets and asserts what a
user would see the next morning: the exit code, the jobs' states and errors, and what the
simulator was sent.
"""

from __future__ import annotations

from pathlib import Path

from batchveo.states import JobState
from batchveo.store import Store
from tests.conftest import make_spec
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
