"""The transition table, checked exhaustively: every pair is either allowed or refused."""

from __future__ import annotations

import itertools

import pytest

from batchveo.errors import IllegalTransition
from batchveo.states import (
    HELD,
    IN_FLIGHT,
    IN_PROGRESS,
    TERMINAL,
    TRANSITIONS,
    WORK_LEFT,
    JobState,
    check_transition,
)

S = JobState

ALLOWED = {
    (S.WAITING, S.PENDING),  # a hop's parent is done
    (S.WAITING, S.FAILED),  # parent_failed, parent_expired
    (S.WAITING, S.CANCELLED),
    (S.FAILED, S.WAITING),  # retry of a hop's parent (or of the hop)
    (S.CANCELLED, S.WAITING),
    (S.PENDING, S.WAITING),  # a released hop replaced before it was sent
    (S.PENDING, S.SUBMITTING),
    (S.PENDING, S.CANCELLED),
    (S.SUBMITTING, S.RUNNING),
    (S.SUBMITTING, S.PENDING),
    (S.SUBMITTING, S.FAILED),
    (S.SUBMITTING, S.UNCERTAIN),
    (S.RUNNING, S.GENERATED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.EXPIRED),
    (S.RUNNING, S.DONE),  # the poll carried the videos (Vertex inline)
    (S.GENERATED, S.DONE),
    (S.GENERATED, S.EXPIRED),
    (S.GENERATED, S.FAILED),
    (S.FAILED, S.PENDING),
    (S.FAILED, S.GENERATED),
    (S.UNCERTAIN, S.PENDING),
    (S.UNCERTAIN, S.CANCELLED),
    (S.EXPIRED, S.PENDING),
    (S.CANCELLED, S.PENDING),
}


@pytest.mark.parametrize("src,dst", sorted(itertools.product(S, S)))
def test_every_pair_is_allowed_or_refused(src: JobState, dst: JobState) -> None:
    if (src, dst) in ALLOWED:
        check_transition(src, dst)
    else:
        with pytest.raises(IllegalTransition, match=f"{src.value} -> {dst.value}"):
            check_transition(src, dst)


def test_table_matches_the_documented_graph() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


def test_a_running_job_can_never_go_back_to_pending() -> None:
    # Going back to pending would submit (and bill) the job a second time.
    for src in (S.RUNNING, S.GENERATED, S.DONE):
        with pytest.raises(IllegalTransition):
            check_transition(src, S.PENDING)


def test_done_is_final_and_in_flight_states_are_not_terminal() -> None:
    assert TRANSITIONS[S.DONE] == frozenset()
    assert not (IN_FLIGHT & TERMINAL)


def test_every_state_is_terminal_in_progress_or_pending_and_only_one() -> None:
    # A run is over when no job is in progress; what is neither terminal nor in progress
    # is pending, which waits for a submitter (and counts as work left).
    # A hop waiting on its parent is held: neither (its parent moves it on).
    assert not (TERMINAL & IN_PROGRESS) and S.PENDING not in TERMINAL | IN_PROGRESS
    assert not (HELD & (TERMINAL | IN_PROGRESS | WORK_LEFT)) and {S.WAITING} == HELD
    assert TERMINAL | IN_PROGRESS | {S.PENDING} | HELD == set(S)
    assert set(S) - TERMINAL - HELD == WORK_LEFT and IN_FLIGHT <= IN_PROGRESS
    # A job in progress only ever moves on by itself: never back to pending from
    # running or generated (that would pay twice).
    assert all(S.PENDING not in TRANSITIONS[s] for s in IN_PROGRESS - {S.SUBMITTING})
