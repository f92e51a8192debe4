"""Scene chains in the store: hops released, failed, held and reopened with their parent,
in the parent's own transaction; the retention checked at release."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchveo.errors import ManifestError
from batchveo.manifest import read_manifests
from batchveo.models import RETENTION_S
from batchveo.states import JobState
from batchveo.store import Store, TransitionEvent
from tests.helpers import FakeClock

S = JobState
URI = "https://sim.example/v1beta/files/{}:download?alt=media"


def chain_specs(tmp: Path, root_prompt: str = "a root") -> list:  # type: ignore[type-arg]
    path = tmp / "c.yaml"
    path.write_text(
        f"jobs:\n  - id: a\n    prompt: {root_prompt}\n    chain: [hop two, hop three, hop four]\n"
        "  - {id: plain, prompt: plain job}\n"
    )
    return read_manifests([path]).specs


async def states(store: Store) -> dict[str, str]:
    return {j.id: j.state.value for j in await store.jobs(list(S))}


async def make_video(store: Store, job_id: str, generated_at: float) -> None:
    """Drive ``job_id`` from pending to generated (its video made at ``generated_at``)."""
    [job] = [j for j in await store.claim_pending(10) if j.id == job_id] or [None]
    assert job is not None, f"{job_id} was not claimable"
    for other in await store.jobs([S.SUBMITTING]):
        if other.id != job_id:
            await store.transition(other.id, S.SUBMITTING, S.PENDING)
    await store.transition(job_id, S.SUBMITTING, S.RUNNING, operation=f"operations/{job_id}")
    await store.transition(
        job_id,
        S.RUNNING,
        S.GENERATED,
        video_uris=[URI.format(job_id)],
        generated_at=generated_at,
    )


async def finish(store: Store, job_id: str, now: float) -> None:
    await make_video(store, job_id, now)
    await store.transition(job_id, S.GENERATED, S.DONE, files=[], finished_at=now)


async def test_a_load_puts_hops_waiting_and_a_done_parent_releases_its_child(
    tmp_path: Path,
) -> None:
    heard: list[TransitionEvent] = []
    async with await Store.open(tmp_path / "j.db") as store:
        store.observers.append(heard.append)
        await store.add_jobs(chain_specs(tmp_path))
        assert await states(store) == {
            "a": "pending", "a-2": "waiting", "a-3": "waiting", "a-4": "waiting",
            "plain": "pending",
        }  # fmt: skip
        await finish(store, "a", store.clock())
        [hop] = [j for j in await store.jobs([S.PENDING]) if j.id == "a-2"]
        assert hop.inputs == {"video": {"uri": URI.format("a")}}
        assert hop.spec().video_uri == URI.format("a") and hop.spec().extends == "a"
        assert (await states(store))["a-3"] == "waiting"
        moves = {(e.job_id, e.from_state, e.to_state) for e in heard}
        assert ("a-2", "waiting", "pending") in moves


async def test_a_failed_parent_fails_every_waiting_descendant_naming_it(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        [job] = [j for j in await store.claim_pending(1)]
        assert job.id == "a"
        await store.transition("a", S.SUBMITTING, S.FAILED, error_kind="content_policy", error="no")
        jobs = {j.id: j for j in await store.jobs(list(S))}
        for hop in ("a-2", "a-3", "a-4"):
            assert jobs[hop].state is S.FAILED and jobs[hop].error_kind == "parent_failed"
            assert "the chain broke at a, which ended failed (content_policy)" in (
                jobs[hop].error or ""
            )
        assert jobs["plain"].state is S.PENDING
        # retry of the parent reopens its descendants, back to waiting.
        moved = await store.requeue([S.FAILED], ["a"])
        assert sorted(moved) == ["a", "a-2", "a-3", "a-4"]
        assert await states(store) == {
            "a": "pending", "a-2": "waiting", "a-3": "waiting", "a-4": "waiting",
            "plain": "pending",
        }  # fmt: skip


async def test_an_uncertain_parent_holds_its_hops(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        await store.claim_pending(1)
        assert await store.recover_interrupted() == ["a"]
        assert await store.settle_chains() == 0
        assert (await states(store))["a-2"] == "waiting"


async def test_a_parent_older_than_the_retention_fails_its_hop_parent_expired(
    tmp_path: Path,
) -> None:
    clock = FakeClock(1_000_000.0)
    async with await Store.open(tmp_path / "j.db", clock=clock) as store:
        await store.add_jobs(chain_specs(tmp_path))
        await make_video(store, "a", clock() - RETENTION_S - 1)  # a download late by days
        await store.transition("a", S.GENERATED, S.DONE, files=[], finished_at=clock())
        jobs = {j.id: j for j in await store.jobs(list(S))}
        assert jobs["a-2"].state is S.FAILED and jobs["a-2"].error_kind == "parent_expired"
        assert "parent a was generated more than 48 h ago" in (jobs["a-2"].error or "")
        assert jobs["a-2"].inputs == {}  # no dead uri kept to be sent
        assert jobs["a-3"].error_kind == "parent_failed" and (
            "broke at a-2, which ended failed (parent_expired): nothing of it was sent;"
            " load the chain again from a-2's parent under new ids"
        ) in (jobs["a-3"].error or "")


async def test_settle_at_run_start_redoes_a_cascade_a_crash_left_undone(tmp_path: Path) -> None:
    """A database whose parent is done and its hop still waiting (written without the
    cascade: an older version, or by hand) is made right, once."""
    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        await make_video(store, "a", store.clock())
        async with store._tx() as db:  # the parent's done, without the release
            await db.execute("UPDATE jobs SET state='done' WHERE id='a'")
        assert (await states(store))["a-2"] == "waiting"
        assert await store.settle_chains() == 1
        assert await store.settle_chains() == 0
        assert (await states(store))["a-2"] == "pending"


async def test_reloading_the_same_chain_adds_nothing_also_after_hops_ran(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "j.db") as store:
        first = await store.add_jobs(chain_specs(tmp_path))
        assert first.new == 5
        await finish(store, "a", store.clock())
        again = await store.add_jobs(chain_specs(tmp_path))
        assert (again.new, again.existing) == (0, 5)
        assert (await states(store))["a-2"] == "pending"


@pytest.mark.parametrize("state", ["cancelled", "expired"])
async def test_a_cancelled_or_expired_parent_breaks_the_chain(tmp_path: Path, state: str) -> None:
    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        if state == "cancelled":
            assert "a" in await store.cancel(["a"])
        else:
            await make_video(store, "a", store.clock())
            await store.transition("a", S.GENERATED, S.EXPIRED, error_kind="expired")
        assert {j.error_kind for j in await store.jobs([S.FAILED])} == {"parent_failed"}
        assert len(await store.jobs([S.FAILED])) == 3


async def test_cancelling_a_waiting_hop_breaks_the_chain_after_it(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        assert await store.cancel(["a-3"]) == ["a-3"]
        jobs = {j.id: j for j in await store.jobs(list(S))}
        assert (jobs["a-2"].state, jobs["a-3"].state) == (S.WAITING, S.CANCELLED)
        assert jobs["a-4"].error_kind == "parent_failed" and "broke at a-3" in (
            jobs["a-4"].error or ""
        )
        # retry of the cancelled hop: it waits again, and so does the one after it.
        assert sorted(await store.requeue([S.CANCELLED], ["a-3"])) == ["a-3", "a-4"]
        assert {j.id for j in await store.jobs([S.WAITING])} == {"a-2", "a-3", "a-4"}


async def test_replace_rewrites_a_waiting_hop_and_refuses_to_change_its_kind(
    tmp_path: Path,
) -> None:
    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        await finish(store, "a", store.clock())  # a-2 is released: pending
        path = tmp_path / "c2.yaml"
        path.write_text(
            "jobs:\n  - id: a\n    prompt: a root\n    chain: [hop two, hop THREE, hop four]\n"
        )
        result = await store.add_jobs(read_manifests([path]).specs, replace=True)
        assert result.replaced == 1
        [hop] = [j for j in await store.jobs([S.WAITING]) if j.id == "a-3"]
        assert (hop.prompt, hop.extends, hop.hop) == ("hop THREE", "a-2", 3)
        # a hop cannot become a plain job (nor the reverse) under the same id
        plain = tmp_path / "p.yaml"
        plain.write_text("jobs:\n  - {id: a-4, prompt: not a hop any more}\n")
        with pytest.raises(ManifestError, match="cannot replace: a job and a hop"):
            await store.add_jobs(read_manifests([plain]).specs, replace=True)
        # nor can a hop be given another parent (a chain could loop)
        moved = tmp_path / "m.yaml"
        moved.write_text("jobs:\n  - {id: x, prompt: x}\n  - {id: a-3, extends: x, prompt: p}\n")
        with pytest.raises(ManifestError, match=r"a hop keeps the job it extends \(a-2,"):
            await store.add_jobs(read_manifests([moved]).specs, replace=True)


async def test_new_prices_price_each_hop_as_its_whole_video_on_both_reprice_paths(
    tmp_path: Path,
) -> None:
    """A hop asks for ``durationSeconds: 8`` but is billed as its whole video (8 s + 7 s
    per hop): a reprice reading the rows, and one rewriting remembered price shapes, must
    both price it so (an hour of hops priced as 8 s clips would pass any budget)."""

    def per_second(usd: float):  # type: ignore[no-untyped-def]
        return lambda model, params: usd * int(params.get("durationSeconds", 8))

    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        await store.reprice(per_second(1.0))  # no prices' name: reads every row
        costs = {j.id: j.cost_usd for j in await store.jobs(list(S))}
        assert costs == {"a": 8.0, "a-2": 15.0, "a-3": 22.0, "a-4": 29.0, "plain": 8.0}
        await store.reprice(per_second(1.0), prices_key="A")  # read again, shapes remembered
        await store.reprice(per_second(2.0), prices_key="B")  # rewrites the shapes it knows
        costs = {j.id: j.cost_usd for j in await store.jobs(list(S))}
        assert costs == {"a": 16.0, "a-2": 30.0, "a-3": 44.0, "a-4": 58.0, "plain": 16.0}


async def test_replace_of_a_released_hop_keeps_it_released_with_its_parents_video(
    tmp_path: Path,
) -> None:
    """A hop released (pending: its parent done) but never sent may still be edited: it
    is the same kind of job, and it comes back pending with its parent's video."""
    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        await finish(store, "a", store.clock())
        [before] = [j for j in await store.jobs([S.PENDING]) if j.id == "a-2"]
        path = tmp_path / "c2.yaml"
        path.write_text(
            "jobs:\n  - id: a\n    prompt: a root\n    chain: [hop TWO, hop three, hop four]\n"
        )
        result = await store.add_jobs(read_manifests([path]).specs, replace=True)
        assert result.replaced == 1
        [hop] = [j for j in await store.jobs([S.PENDING]) if j.id == "a-2"]
        assert hop.prompt == "hop TWO" and hop.spec().video_uri == URI.format("a")
        assert hop.parent_generated_at == before.parent_generated_at
        assert [(e.from_state, e.to_state) for e in await store.events("a-2")][-2:] == [
            ("pending", "waiting"),
            ("waiting", "pending"),
        ]


async def test_the_message_of_a_broken_chain_names_the_retry_that_reopens_it(
    tmp_path: Path,
) -> None:
    async with await Store.open(tmp_path / "j.db") as store:
        await store.add_jobs(chain_specs(tmp_path))
        await store.cancel(["a"])
        [hop] = [j for j in await store.jobs([S.FAILED]) if j.id == "a-2"]
        assert "`batchveo retry --state cancelled a` reopens it" in (hop.error or "")
