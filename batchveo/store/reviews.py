"""Reviews: one verdict per take (a job row), and each batch's review settings.

A job entering ``done`` gets a ``reviews`` row with no status (migration 012's trigger, in
the transition's own statement): it is *due*. ``record_review`` writes the verdict, the
error or the skip over that row in one statement, only while the row is still due, so a
review cut off by a kill is simply asked again by the next run and none is ever recorded
twice. ``reopen_reviews`` makes rows due again (``batchveo review --force``). A flagged
verdict recorded with ``record_verdict`` also makes the job's next take, if it may, in the
same transaction (``takes``), and keeps what became of it in the row's ``retake``.

A batch's settings (``defaults: review:``) are kept as JSON beside it, the latest load's
word winning, as for budgets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import aiosqlite

from batchveo.store.db import Core
from batchveo.store.takes import Retake, RetakeAsk, make_retake
from batchveo.verdicts import Defect, MediaResolution, ReviewSettings

REVIEW_COLUMNS = (
    "job_id",
    "batch",
    "status",
    "score",
    "matches_prompt",
    "defects",
    "summary",
    "error",
    "model",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "reviewed_at",
    "retake",
)
_SELECT = f"SELECT {', '.join(REVIEW_COLUMNS)} FROM reviews"
EXPORT_SQL: dict[str, str] = {
    f"review_{c}" if c != "reviewed_at" else c: f"(SELECT {c} FROM reviews WHERE job_id = jobs.id)"
    for c in REVIEW_COLUMNS[2:]
}
"""The verdict columns of an export: each job's review, found by its id (``Snapshot.rows``'
``extra``: one index lookup per row, in SQLite)."""
REVIEW_JSON_SQL = (
    f"(SELECT json_array({', '.join(REVIEW_COLUMNS)}) FROM reviews"
    " WHERE job_id = jobs.id AND status IS NOT NULL)"
)
"""A job's recorded review as one JSON array of ``REVIEW_COLUMNS`` (NULL: none, or due), an
SQL expression of the job's row: what the report reads beside each job, one lookup each."""
_SQL_CHUNK = 500


@dataclass(frozen=True)
class Recorded:
    """A verdict written (or not: it was not due), and the retake it made, if any."""

    recorded: bool
    retake: Retake


class ReviewStatus(StrEnum):
    PASSED = "passed"
    FLAGGED = "flagged"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Review:
    """One take's review: due (``status`` None) or done with its verdict or its error."""

    job_id: str
    batch: str
    status: ReviewStatus | None = None
    score: float | None = None
    matches_prompt: bool | None = None
    defects: tuple[Defect, ...] = ()
    summary: str | None = None
    error: str | None = None
    """A review error's message and the model's text, or why it was skipped."""
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    reviewed_at: float | None = None
    retake: str | None = None
    """What became of the retake a flagged verdict asked for ("retaken as ID~2", "retake
    not made: over the budget"); None if it asked for none."""

    @classmethod
    def from_json(cls, text: str | None) -> Review | None:
        """The review of ``REVIEW_JSON_SQL``'s value (None for NULL)."""
        return None if text is None else cls.from_row(json.loads(text))

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Review:
        d = dict(zip(REVIEW_COLUMNS, row, strict=True))
        defects = tuple(Defect(x["at"], x["issue"]) for x in json.loads(d["defects"] or "[]"))
        return cls(
            job_id=d["job_id"],
            batch=d["batch"],
            status=None if d["status"] is None else ReviewStatus(d["status"]),
            score=d["score"],
            matches_prompt=None if d["matches_prompt"] is None else bool(d["matches_prompt"]),
            defects=defects,
            summary=d["summary"],
            error=d["error"],
            model=d["model"],
            tokens_in=d["tokens_in"],
            tokens_out=d["tokens_out"],
            cost_usd=d["cost_usd"],
            reviewed_at=d["reviewed_at"],
            retake=d["retake"],
        )

    def as_dict(self) -> dict[str, Any]:
        """What ``export`` shows of it (the verdict columns)."""
        return {
            "review_status": None if self.status is None else self.status.value,
            "review_score": self.score,
            "review_matches_prompt": self.matches_prompt,
            "review_defects": [{"at": d.at, "issue": d.issue} for d in self.defects],
            "review_summary": self.summary,
            "review_error": self.error,
            "review_model": self.model,
            "review_tokens_in": self.tokens_in,
            "review_tokens_out": self.tokens_out,
            "review_cost_usd": self.cost_usd,
            "reviewed_at": self.reviewed_at,
            "review_retake": self.retake,
        }


def settings_json(settings: ReviewSettings) -> str:
    d = asdict(settings)
    d["media_resolution"] = settings.media_resolution.value
    return json.dumps(d, sort_keys=True)


def settings_of(text: str) -> ReviewSettings:
    d = json.loads(text)
    d["media_resolution"] = MediaResolution(d["media_resolution"])
    return ReviewSettings(**d)


async def write_review_settings(
    db: aiosqlite.Connection, settings: Mapping[str, ReviewSettings]
) -> None:
    """``settings`` over the batches' (in the caller's transaction: a load's own)."""
    await db.executemany(
        "INSERT INTO review_settings VALUES (?, ?)"
        " ON CONFLICT (batch) DO UPDATE SET settings = excluded.settings",
        [(batch, settings_json(s)) for batch, s in settings.items()],
    )


class Reviews(Core):
    """The store's reviews: the due ones, the verdicts, the batches' settings."""

    async def due_reviews(self, batches: Sequence[str] | None = None) -> list[str]:
        """Job ids whose review is due, of ``batches`` (every batch if None), in the order
        their videos were done (down ``reviews_due``: only the due rows are read)."""
        sql = "SELECT job_id FROM reviews INDEXED BY reviews_due WHERE status IS NULL"
        if batches is None:
            return [r[0] for r in await self._query(sql + " ORDER BY rowid")]
        found: list[str] = []
        for i in range(0, len(batches), _SQL_CHUNK):
            part = batches[i : i + _SQL_CHUNK]
            where = f" AND batch IN ({','.join('?' * len(part))}) ORDER BY rowid"
            found += [r[0] for r in await self._query(sql + where, part)]
        return found

    async def record_review(self, review: Review) -> bool:
        """Write ``review``'s outcome over its due row, in one statement; False if the row
        was not due (another process recorded it first, or the job is not done)."""
        return (await self.record_verdict(review)).recorded

    async def record_verdict(self, review: Review, retake: RetakeAsk | None = None) -> Recorded:
        """``record_review``; a flagged one with ``retake`` also makes the job's next take
        if it may (``takes.make_retake``), in the same transaction, and notes what became
        of it in the verdict's ``retake``."""
        assert review.status is not None
        defects = json.dumps([{"at": d.at, "issue": d.issue} for d in review.defects])
        matches = None if review.matches_prompt is None else int(review.matches_prompt)
        made = Retake(None, None)
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE reviews SET status=?, score=?, matches_prompt=?, defects=?, summary=?,"
                " error=?, model=?, tokens_in=?, tokens_out=?, cost_usd=?, reviewed_at=?"
                " WHERE job_id=? AND status IS NULL",
                (
                    review.status.value, review.score, matches, defects, review.summary,
                    review.error, review.model, review.tokens_in, review.tokens_out,
                    review.cost_usd, review.reviewed_at, review.job_id,
                ),
            )  # fmt: skip
            changed = cur.rowcount
            if changed == 1 and retake is not None and review.status is ReviewStatus.FLAGGED:
                made = await make_retake(db, review.job_id, retake, self.clock())
                if made.note is not None:
                    await db.execute(
                        "UPDATE reviews SET retake=? WHERE job_id=?", (made.note, review.job_id)
                    )
        return Recorded(changed == 1, made)

    async def reopen_reviews(self, job_ids: Sequence[str]) -> int:
        """Make these jobs' reviews due again (``--force``); how many were not due."""
        n = 0
        for i in range(0, len(job_ids), _SQL_CHUNK):
            part = job_ids[i : i + _SQL_CHUNK]
            async with self._tx() as db:
                cur = await db.execute(
                    "UPDATE reviews SET status=NULL, score=NULL, matches_prompt=NULL,"
                    " defects=NULL, summary=NULL, error=NULL, model=NULL, tokens_in=0,"
                    " tokens_out=0, cost_usd=0, reviewed_at=NULL"
                    f" WHERE status IS NOT NULL AND job_id IN ({','.join('?' * len(part))})",
                    part,
                )
                n += cur.rowcount
        return n

    async def review_of(self, job_id: str) -> Review | None:
        rows = await self._query(_SELECT + " WHERE job_id=?", (job_id,))
        return Review.from_row(rows[0]) if rows else None

    async def reviews_of(self, batch: str | None = None) -> list[Review]:
        """Every review row (of ``batch``), due ones included, in the order they came."""
        if batch is None:
            rows = await self._query(_SELECT + " ORDER BY rowid")
        else:
            rows = await self._query(_SELECT + " WHERE batch=? ORDER BY rowid", (batch,))
        return [Review.from_row(r) for r in rows]

    async def due_review_counts(self, batches: Sequence[str]) -> dict[str, int]:
        """Of these batches (those with review settings), the done takes whose review is
        still due (one index, ``reviews_due``): a review a budget held back, or a run cut
        short, shows here until a run asks it."""
        if not batches:
            return {}
        rows = await self._query(
            "SELECT batch, COUNT(*) FROM reviews INDEXED BY reviews_due WHERE status IS NULL"
            f" AND batch IN ({','.join('?' * len(batches))}) GROUP BY batch",
            list(batches),
        )
        return {batch: int(n) for batch, n in rows}

    async def review_counts(self) -> dict[str, dict[str, Any]]:
        """Per batch with a reviewed take: how many passed, were flagged, errors, skipped,
        and what the reviews cost."""
        counts: dict[str, dict[str, Any]] = {}
        rows = await self._query(
            "SELECT batch, status, COUNT(*), TOTAL(cost_usd) FROM reviews"
            " WHERE status IS NOT NULL GROUP BY batch, status ORDER BY batch"
        )
        for batch, status, n, cost in rows:
            line = counts.setdefault(batch, {**{s.value: 0 for s in ReviewStatus}, "cost_usd": 0.0})
            line[status] = n
            line["cost_usd"] += cost
        return counts

    async def flagged(self, limit: int) -> list[tuple[str, str, float | None]]:
        """The first ``limit`` flagged takes: ``(job id, batch, score)``, lowest score first."""
        return [
            (job_id, batch, score)
            for job_id, batch, score in await self._query(
                "SELECT job_id, batch, score FROM reviews WHERE status = 'flagged'"
                " ORDER BY score, rowid LIMIT ?",
                (limit,),
            )
        ]

    async def review_settings(self) -> dict[str, ReviewSettings]:
        """Batch name -> its review settings, for the batches whose manifest sets them."""
        rows = await self._query("SELECT batch, settings FROM review_settings")
        return {batch: settings_of(text) for batch, text in rows}

    async def set_review_settings(self, settings: Mapping[str, ReviewSettings]) -> None:
        """The latest load's word on its batches' review settings."""
        if not settings:
            return
        async with self._tx() as db:
            await write_review_settings(db, settings)
