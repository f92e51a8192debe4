"""``batchveo export``: one row per job, as JSON lines or CSV, never half-written.

Each row also says how many videos the job asked for, got back and had kept back by the
safety filter (with its reasons), and its route as stored (provider, project, region,
bucket; empty: the run's), and for a hop of a scene chain the job it extends and its
chain's root.

JSONL keeps every text exact. CSV is for spreadsheets, which run a cell that looks like
a formula: such a text cell is made plain text (OWASP's advice), so a prompt or a
server's error text is never a formula. A file given with ``-o`` replaces the old one
whole once written, or not at all.

Rows stream: each job is read, written and forgotten (``Snapshot.jobs``: one statement on
a read-only connection of its own, in a worker thread), so a million jobs export in the
memory of a few, and every row is of the same moment of the database even while a run
goes on writing.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from batchveo.errors import StoreError

if TYPE_CHECKING:
    from batchveo.states import JobState

EXPORT_FIELDS = (
    "id",
    "batch",
    "state",
    "prompt",
    "model",
    "params",
    "inputs",
    "operation",
    "files",
    "error_kind",
    "error",
    "attempts",
    "cost_usd",
    "created_at",
    "submitted_at",
    "generated_at",
    "finished_at",
    "samples_requested",
    "samples_returned",
    "samples_filtered",
    "filtered_reasons",
    "provider",
    "project",
    "location",
    "storage_uri",
    "extends",
    "chain_root",
    "hop",
    "output_s",
    "posters",
)
"""What a row says; ``samples_returned`` etc. are empty until the service answered, and
the route's parts are empty where the load left them to the run (``--provider``, ...).
A scene chain's hop: ``hop`` its place (1 the root), ``output_s`` its whole cut's length
(``params`` says what its request asked: ``durationSeconds`` 8). ``posters``: each video's
poster frame, a name in its folder (null: none made)."""
REVIEW_FIELDS = (
    "review_status",
    "review_score",
    "review_matches_prompt",
    "review_defects",
    "review_summary",
    "review_error",
    "review_model",
    "review_tokens_in",
    "review_tokens_out",
    "review_cost_usd",
    "reviewed_at",
    "review_retake",
)
"""The verdict of each take (``store.reviews``): empty for a take not reviewed (yet);
``review_defects`` a list of ``{at: "MM:SS", issue}``; ``review_retake`` what became of the
retake a flagged verdict asked for."""
TAKE_FIELDS = ("take_of", "take", "chosen")
"""Which take of which job a row is (``take_of`` empty and ``take`` 1 on an original), and
whether it is its job's chosen result (``store.takes``): every take is a row."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP, "CSV Injection")."""


def write_export(out: IO[str], rows: Iterable[dict[str, Any]], fmt: str) -> int:
    """Rows of ``EXPORT_FIELDS`` (``Snapshot.rows``) to ``out`` as ``jsonl`` or ``csv``, one
    at a time; how many were written."""
    n = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        return n
    writer = csv.DictWriter(out, fieldnames=[*EXPORT_FIELDS, *REVIEW_FIELDS, *TAKE_FIELDS])
    writer.writeheader()
    for row in rows:
        for k in ("params", "inputs", "files", "filtered_reasons", "posters", "review_defects"):
            row[k] = json.dumps(row[k], ensure_ascii=False)
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
        n += 1
    return n


def export_database(
    db: Path, out: IO[str], fmt: str, states: Iterable[JobState] | None, batch: str | None
) -> int:
    """Every job of ``db`` in ``states`` (all if None) of ``batch`` to ``out``, streamed from
    one moment of the database; how many rows. Blocking: run it in a worker thread, with
    the store open (its migrations applied)."""
    from batchveo.store import Snapshot
    from batchveo.store.reviews import EXPORT_SQL
    from batchveo.store.takes import EXPORT_SQL as TAKES_SQL

    with Snapshot.open(db) as snap:
        if snap is None:
            raise StoreError(f"{db}: not set up although open")
        extra = EXPORT_SQL | TAKES_SQL
        rows = snap.rows(EXPORT_FIELDS, states, batch=batch, extra=extra)
        return write_export(out, (_with_verdict(row) for row in rows), fmt)


def _with_verdict(row: dict[str, Any]) -> dict[str, Any]:
    """The review's values as an export shows them (defects a list, a yes/no a bool)."""
    defects = row["review_defects"]
    row["review_defects"] = [] if defects is None else json.loads(defects)
    matches = row["review_matches_prompt"]
    row["review_matches_prompt"] = None if matches is None else bool(matches)
    row["chosen"] = bool(row["chosen"])
    return row


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, made plain text by a leading
    single quote (OWASP's advice); a prompt or a server's error text is never a formula.
    Numbers stay numbers; JSONL keeps every text exact."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@contextmanager
def replacing(path: Path) -> Iterator[IO[str]]:
    """A text file that replaces ``path`` whole once written (temp name, fsync, rename),
    or leaves it as it was: an export is never half-written. The folder must exist."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
