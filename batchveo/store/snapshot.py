"""Snapshot: a read-only, synchronous look at one moment of a job database.

Why apart from the store: ``plan`` must create nothing (not even the database file) and
runs without an event loop, and what reads every job one at a time (``export``, the
report) must not hold up a run in the same process. So a snapshot opens its own
read-only connection (``mode=ro``), never the store's, and reads inside ``one_moment``
see the database as it was at the first of them, whatever another process writes.
Its list of jobs is the same query as the store's (``reads.jobs_sql``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from batchveo.errors import StoreError
from batchveo.models import billed_params
from batchveo.states import JobState
from batchveo.store.budget import (
    CAPS_SQL,
    COMMITTED_STATES,
    Costed,
    committed_rows_sql,
    committed_sql,
    micro_usd,
)
from batchveo.store.migrations import MIGRATIONS
from batchveo.store.reads import jobs_sql
from batchveo.store.reviews import REVIEW_JSON_SQL, Review, settings_of
from batchveo.store.rows import (
    COLUMNS,
    JSON_COLUMNS,
    RETURNING,
    SELECT,
    Job,
    decode,
    in_states,
)
from batchveo.store.takes import CHOSEN_ID_SQL
from batchveo.verdicts import ReviewSettings

_SQL_CHUNK = 500
"""Ids per ``IN (...)``: below SQLite's bound-parameter limit."""


def chunks(items: Sequence[str], size: int = _SQL_CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Snapshot:
    """A read-only look at a job database, without an event loop: for ``plan``, and for
    what reads every job one at a time (``export``, the report) on its own connection,
    never the store's (a run in the same process is never held up by it).

    Open it with ``Snapshot.open``: it yields None where there is nothing to read
    (no file, or a database this batchveo has not set up yet), and never writes.
    """

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    @classmethod
    @contextmanager
    def open(cls, path: Path) -> Iterator[Snapshot | None]:
        if not path.exists():
            yield None
            return
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            try:
                applied = {name for (name,) in conn.execute("SELECT name FROM _migrations")}
            except sqlite3.OperationalError:  # no table yet: nothing was ever loaded
                applied = set()
            yield cls(conn) if MIGRATIONS[0].name in applied else None

    @contextmanager
    def one_moment(self) -> Iterator[None]:
        """The reads inside see the database as it was at the first of them (one read
        transaction), whatever another process writes meanwhile. In WAL mode the writer
        is never blocked; its log is only checkpointed past that moment once it ends."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.rollback()

    def jobs(
        self, states: Iterable[JobState] | None = None, *, batch: str | None = None
    ) -> Iterator[Job]:
        """The jobs in ``states`` (all if None) of ``batch``, in the order they were loaded,
        one at a time: one statement, read as it goes, so a million jobs take the memory
        of one, and all are of one moment of the database."""
        sql, args = jobs_sql(states, batch=batch)
        for row in self._conn.execute(sql, args):
            yield Job.from_row(row)

    def job(self, job_id: str) -> Job | None:
        """One job by its id (a load looks up the stored parent of a scene chain's hop)."""
        row = self._conn.execute(f"{SELECT} WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else Job.from_row(row)

    def rows(
        self,
        columns: Sequence[str],
        states: Iterable[JobState] | None = None,
        *,
        batch: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """``jobs``, as ``{column: value}`` of ``columns`` only (JSON columns decoded,
        the state as stored): what an export needs, without building whole ``Job``s.
        ``extra``: more values by name, each an SQL expression of the job's row (its
        review's verdict)."""
        unknown = set(columns) - set(COLUMNS)
        if unknown:
            raise StoreError(f"no such columns: {', '.join(sorted(unknown))}")
        names = (*columns, *(extra or {}))
        exprs = (*columns, *(extra or {}).values())
        select = f"SELECT {', '.join(exprs)} FROM jobs"
        sql, args = jobs_sql(states, batch=batch, select=select)
        json_at = [(i, c) for i, c in enumerate(names) if c in JSON_COLUMNS]
        for row in self._conn.execute(sql, args):
            values = list(row)
            for i, col in json_at:
                values[i] = decode(col, values[i])
            yield dict(zip(names, values, strict=True))

    def batch_jobs(self, batch: str | None = None) -> dict[str, int]:
        """How many jobs each batch with any has (only ``batch``, if given): the totals."""
        sql = "SELECT batch, SUM(jobs) FROM totals"
        sql += " WHERE batch=?" if batch is not None else ""
        sql += " GROUP BY batch HAVING SUM(jobs) > 0 ORDER BY batch"
        args = [batch] if batch is not None else []
        return {b: int(n) for b, n in self._conn.execute(sql, args)}

    def reviewed_jobs(
        self, states: Iterable[JobState] | None = None, *, batch: str | None = None
    ) -> Iterator[tuple[Job, Review | None]]:
        """``jobs``, each with its recorded review (None: not reviewed, or its review still
        due), one at a time as ``jobs`` reads them (the report's cards)."""
        select = f"SELECT {RETURNING}, {REVIEW_JSON_SQL} FROM jobs"
        sql, args = jobs_sql(states, batch=batch, select=select)
        try:
            rows = self._conn.execute(sql, args)
        except sqlite3.OperationalError:  # a database before migration 012: no reviews
            yield from ((job, None) for job in self.jobs(states, batch=batch))
            return
        for row in rows:
            yield Job.from_row(row[:-1]), Review.from_json(row[-1])

    def files(
        self, states: Iterable[JobState], *, batch: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The recorded files of each job in ``states`` (of ``batch``), one job at a time."""
        sql, args = jobs_sql(states, batch=batch, select="SELECT files FROM jobs")
        for (raw,) in self._conn.execute(sql, args):
            yield decode("files", raw)

    def costed(self, states: Iterable[JobState]) -> list[Costed]:
        """What the budget rule needs of the jobs in ``states``, in the order a claim takes them.

        Not whole ``Job`` rows: a plan reads every pending job, 100k of them at worst.
        """
        wanted = [s.value for s in states]
        sql = (
            "SELECT id, batch, model, params, cost_usd, output_s FROM jobs"
            f" WHERE state IN ({','.join('?' * len(wanted))}) ORDER BY rowid"
        )
        params: dict[str, dict[str, Any]] = {}  # a batch shares a handful: decode each once
        return [
            Costed(
                i,
                b,
                m,
                billed_params(params.get(p) or params.setdefault(p, decode("params", p)), out_s),
                usd,
            )
            for i, b, m, p, usd, out_s in self._conn.execute(sql, wanted)
        ]

    def states_of(self, ids: Sequence[str]) -> dict[str, JobState]:
        """The state of each of ``ids`` that is in the database."""
        out: dict[str, JobState] = {}
        for chunk in chunks(ids):
            sql = f"SELECT id, state FROM jobs WHERE id IN ({','.join('?' * len(chunk))})"
            out.update((i, JobState(s)) for i, s in self._conn.execute(sql, chunk))
        return out

    def takes_index(self) -> dict[str, list[str]]:
        """Every job's retakes' ids by its original's id, in take order (``jobs_takes``:
        the takes alone, a few per flagged job; none before migration 015)."""
        sql = "SELECT take_of, id FROM jobs WHERE take_of IS NOT NULL ORDER BY take_of, take"
        index: dict[str, list[str]] = {}
        try:
            for original, job_id in self._conn.execute(sql):
                index.setdefault(original, []).append(job_id)
        except sqlite3.OperationalError:
            return {}
        return index

    def reviewed_ids(self, ids: Sequence[str]) -> list[tuple[Job, Review | None]]:
        """These jobs (in the order given), each with its recorded review (a report page's
        retakes, read beside their original)."""
        found: dict[str, tuple[Job, Review | None]] = {}
        for part in chunks(ids):
            sql = (
                f"SELECT {RETURNING}, {REVIEW_JSON_SQL} FROM jobs"
                f" WHERE id IN ({','.join('?' * len(part))})"
            )
            for row in self._conn.execute(sql, list(part)):
                job = Job.from_row(row[:-1])
                found[job.id] = (job, Review.from_json(row[-1]))
        return [found[i] for i in ids if i in found]

    def chosen_takes(self, originals: Iterable[str]) -> dict[str, str]:
        """Of the jobs whose original has these ids, the chosen take's id (``store.takes``'
        one rule); a few per report page, each one index lookup."""
        sql = f"SELECT {CHOSEN_ID_SQL.format(root='?')}"
        try:
            rows = {o: self._conn.execute(sql, (o, o)).fetchone() for o in originals}
        except sqlite3.OperationalError:  # a database before migration 015: no takes
            return {}
        return {o: row[0] for o, row in rows.items() if row is not None and row[0] is not None}

    def take_numbers(self, states: Iterable[JobState]) -> dict[str, int]:
        """Of the jobs in ``states``, the retakes: id -> take number (``store.takes``;
        none in a database before migration 015)."""
        wanted = [s.value for s in states]
        sql = (
            "SELECT id, take FROM jobs WHERE take_of IS NOT NULL"
            f" AND state IN ({','.join('?' * len(wanted))})"
        )
        try:
            return {i: int(t) for i, t in self._conn.execute(sql, wanted)}
        except sqlite3.OperationalError:
            return {}

    def review_settings(self) -> dict[str, ReviewSettings]:
        """The batches' review settings (none in a database before migration 012)."""
        try:
            rows = self._conn.execute("SELECT batch, settings FROM review_settings").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {batch: settings_of(text) for batch, text in rows}

    def caps(self) -> dict[str, float]:
        """The batches' budgets."""
        try:
            return {name: float(usd) for name, usd in self._conn.execute(CAPS_SQL)}
        except sqlite3.OperationalError:  # a database older than batch budgets has none
            return {}

    def committed_micro_usd(
        self,
        states: Sequence[JobState] = COMMITTED_STATES,
        cost_of: Callable[[str, Mapping[str, Any]], float] | None = None,
    ) -> dict[str, int]:
        """Estimated cost of the jobs in ``states``, per batch, in micro-dollars (what the
        budget rule counts: ``BudgetRoom``).

        With ``cost_of(model, params)``, priced by it instead of by the stored estimates
        (``plan --prices``), each job as a run's reprice would store it; jobs alike are
        priced once.
        """
        if cost_of is None:
            try:  # the running totals: a few lines
                rows = self._conn.execute(committed_sql(states)).fetchall()
            except sqlite3.OperationalError:  # a database before migration 009, as it is
                rows = self._conn.execute(committed_rows_sql(states)).fetchall()
            return {b: int(v) for b, v in rows}
        out: dict[str, int] = {}
        # A partly filtered job costs the videos it returned: what a run's reprice stores.
        sql = (
            "SELECT batch, model, params, samples_requested,"
            " COALESCE(samples_returned, samples_requested), COUNT(*) FROM jobs"
            f" WHERE {in_states(states)} GROUP BY 1, 2, 3, 4, 5"
        )
        for batch, model, params, asked, returned, n in self._conn.execute(sql):
            one = cost_of(model, decode("params", params)) / max(1, asked)
            out[batch] = out.get(batch, 0) + micro_usd(one * returned) * n
        try:  # what the reviews cost, as recorded (a price file prices videos only)
            for batch, micro in self._conn.execute("SELECT * FROM review_costs"):
                out[batch] = out.get(batch, 0) + int(micro)
        except sqlite3.OperationalError:  # a database before migration 012
            pass
        return out
