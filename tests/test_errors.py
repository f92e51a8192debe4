"""The reaction table, checked exhaustively: every error class, every stage.

The table in ``batchveo/errors.py``'s docstring is the documentation; ``REACTIONS`` is
the code; ``EXPECTED`` below is the specification, one line per class with what each
stage does. All three must agree, and every stage handles exactly the reactions its
column names (as tests/test_states.py does for the transition table).
"""

from __future__ import annotations

import inspect
import re

import pytest

import batchveo.errors as errors
from batchveo.errors import REACTIONS, BatchveoError, Reaction, Stage, reaction
from batchveo.run import downloader, poller, reviewer, submitter

R = Reaction

EXPECTED: dict[str, tuple[Reaction, Reaction, Reaction, Reaction]] = {
    # class:                (submit,          poll,            download,     review)
    "BatchveoError":        (R.RAISE,         R.RAISE,         R.RAISE,      R.RAISE),
    "UserError":            (R.RAISE,         R.RAISE,         R.RAISE,      R.RAISE),
    "ManifestError":        (R.RAISE,         R.RAISE,         R.RAISE,      R.RAISE),
    "ConfigError":          (R.RAISE,         R.RAISE,         R.RAISE,      R.RAISE),
    "StoreError":           (R.RAISE,         R.RAISE,         R.RAISE,      R.RAISE),
    "DatabaseUnusable":     (R.RAISE,         R.RAISE,         R.RAISE,      R.RAISE),
    "IllegalTransition":    (R.RAISE,         R.RAISE,         R.RAISE,      R.RAISE),
    "StaleTransition":      (R.RAISE,         R.RAISE,         R.RAISE,      R.RAISE),
    "ApiError":             (R.RAISE,         R.COUNT,         R.RAISE,      R.RECORD),
    "RetryLater":           (R.RETRY,         R.RETRY,         R.TRY_AGAIN,  R.RETRY),
    "RateLimited":          (R.RATE_LIMITED,  R.RATE_LIMITED,  R.TRY_AGAIN,  R.RATE_LIMITED),
    "Transient":            (R.RETRY,         R.RETRY,         R.TRY_AGAIN,  R.RETRY),
    "NotSent":              (R.NOT_SENT,      R.RETRY,         R.TRY_AGAIN,  R.RETRY),
    "WrongBytes":           (R.RETRY,         R.RETRY,         R.TRY_AGAIN,  R.RETRY),
    "NotFound":             (R.RETRY,         R.NOT_FOUND,     R.TRY_AGAIN,  R.RETRY),
    "FileRefused":          (R.RETRY,         R.RETRY,         R.TRY_AGAIN,  R.RETRY),
    "JobRejected":          (R.FAIL,          R.COUNT,         R.TRY_AGAIN,  R.RECORD),
    "ContentRejected":      (R.FAIL,          R.COUNT,         R.TRY_AGAIN,  R.RECORD),
    "BadRequest":           (R.FAIL,          R.COUNT,         R.TRY_AGAIN,  R.RECORD),
    "UnusableVideo":        (R.FAIL,          R.COUNT,         R.TRY_AGAIN,  R.RECORD),
    "StopRun":              (R.STOP,          R.HALT,          R.HALT,       R.STOP_REVIEWS),
    "AccountError":         (R.STOP,          R.HALT,          R.HALT,       R.STOP_REVIEWS),
    "ModelUnavailable":     (R.STOP,          R.HALT,          R.HALT,       R.STOP_REVIEWS),
    "QuotaExhausted":       (R.QUOTA,         R.QUOTA,         R.QUOTA,      R.STOP_REVIEWS),
    "MalformedAnswer":      (R.RAISE,         R.COUNT,         R.TRY_AGAIN,  R.RECORD),
    "SubmitOutcomeUnknown": (R.UNCERTAIN,     R.COUNT,         R.RAISE,      R.RECORD),
    "OutputUnusable":       (R.RAISE,         R.RAISE,         R.FAIL,       R.RAISE),
    "VerdictUnusable":      (R.RAISE,         R.RAISE,         R.RAISE,      R.RECORD),
    "TooLargeToReview":     (R.RAISE,         R.RAISE,         R.RAISE,      R.SKIP),
}  # fmt: skip

ERROR_CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, BatchveoError)
}
STAGE_CODE = {
    Stage.SUBMIT: submitter._refused,
    Stage.POLL: poller.Poller._failed,
    Stage.DOWNLOAD: downloader._failed,
    Stage.REVIEW: reviewer.Reviewer._failed,
}
"""The one function of each stage that turns an error into what it does."""


def test_every_error_class_has_a_specified_row() -> None:
    assert set(ERROR_CLASSES) == set(EXPECTED)


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_class_and_stage_reacts_as_specified(name: str, stage: Stage) -> None:
    cls = ERROR_CLASSES[name]
    error = cls.__new__(cls)  # the reaction depends on the class alone
    assert reaction(stage, error) is EXPECTED[name][list(Stage).index(stage)]


def test_the_documented_table_is_the_code() -> None:
    doc = errors.__doc__ or ""
    rows = re.findall(r"^    (\w+) +([\w-]+) +([\w-]+) +([\w-]+) +([\w-]+)$", doc, re.MULTILINE)
    documented = {name: tuple(Reaction(r) for r in row) for name, *row in rows if name != "error"}
    assert documented == {cls.__name__: row for cls, row in REACTIONS.items()}


@pytest.mark.parametrize("stage", list(Stage))
def test_each_stage_handles_exactly_the_reactions_of_its_column(stage: Stage) -> None:
    source = inspect.getsource(STAGE_CODE[stage])
    handled = {Reaction[m] for m in re.findall(r"case Reaction\.(\w+):", source)}
    column = {row[list(Stage).index(stage)] for row in REACTIONS.values()}
    assert "case _:\n" in source and "raise e" in source  # RAISE: the stage re-raises
    assert handled == column - {Reaction.RAISE}
