"""Reviews end to end: a real run on the simulator, the route's own client, real sockets.

The stage's own tests drive it with a fake client; these send every review the way a night
does (``generateContent`` on the simulator, its answers from the prompts' markers), so what
a user sees in the morning (done videos, verdicts, review errors, the exit code) is checked
from the request on the wire to the row in the database.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from batchveo.exitcodes import ExitCode
from batchveo.observe.summary import status_data
from batchveo.run.config import ReviewFlags
from batchveo.states import JobState
from batchveo.store import ReviewStatus, Store
from batchveo.verdicts import ReviewSettings
from tests.helpers import make_spec
from tests.pipeline_helpers import fast_config, fast_sim, run_batch

S = JobState


async def test_a_reviewed_night_keeps_every_video_done_whatever_the_verdicts(
    store: Store, tmp_path: Path
) -> None:
    specs = [
        make_spec("good", "a calm sea at dawn"),
        make_spec("bad", "a hand waving [sim:review=3]"),
        make_spec("garbled", "a lantern [sim:review=bad-json]"),
        make_spec("refused", "a fox [sim:review=refuse]"),
    ]
    config = dataclasses.replace(
        fast_config(tmp_path / "videos"), review=ReviewFlags(review_all=True, rpm=0)
    )
    async with fast_sim() as sim:
        result = await run_batch(store, sim, config, specs)
        stats = sim.stats()
    assert result.exit_code == ExitCode.OK  # verdicts never change it
    assert {j.id: j.state for j in await store.jobs()} == dict.fromkeys(
        ("good", "bad", "garbled", "refused"), S.DONE
    )
    reviews = {r.job_id: r for r in await store.reviews_of()}
    assert {k: r.status for k, r in reviews.items()} == {
        "good": ReviewStatus.PASSED,
        "bad": ReviewStatus.FLAGGED,
        "garbled": ReviewStatus.ERROR,
        "refused": ReviewStatus.ERROR,
    }
    bad = reviews["bad"]
    assert bad.score == 3 and [(d.at, d.at_s) for d in bad.defects] == [("00:05", 5)]
    assert bad.tokens_in > 0 and bad.cost_usd > 0  # priced from the answer's usageMetadata
    assert reviews["garbled"].error and "score" in reviews["garbled"].error  # the model's text
    assert stats["reviews"] == 4  # one request per take, none twice
    assert max(stats["reviews_by_video"].values()) == 1


async def test_reviews_a_budget_holds_back_are_told_and_stay_due(
    store: Store, tmp_path: Path
) -> None:
    """A budget with room for the videos but not for their reviews: the run says so in its
    last line and `status` counts them due (they are asked by a run with room)."""
    specs = [make_spec("a", "a calm sea"), make_spec("b", "a quiet harbour")]
    budget = sum(s.cost_usd for s in specs)  # exactly the videos
    await store.set_review_settings({specs[0].batch: ReviewSettings()})
    config = dataclasses.replace(
        fast_config(tmp_path / "videos"), review=ReviewFlags(rpm=0), budget_usd=budget
    )
    async with fast_sim() as sim:
        result = await run_batch(store, sim, config, specs)
        assert sim.stats()["reviews"] == 0
    assert result.exit_code == ExitCode.OK
    assert "2 review(s) left for later: their estimated cost would exceed" in result.summary()
    data = await status_data(store)
    assert data["reviews"]["due"] == 2
    assert data["reviews"]["batches"][specs[0].batch]["due"] == 2
