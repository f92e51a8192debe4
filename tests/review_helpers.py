"""Shared pieces for the review tests: an in-process review client, done jobs on disk.

``FakeReviews`` stands in for a route's ``review`` (r16api builds the real one): it answers
from the job's prompt, ``[review=N]`` scoring N with a defect at ``00:05``, ``[review=E]``
raising the error registered as ``E`` (none: a 9 this time); it records every ask and
when (on ``clock``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from batchveo.errors import BatchveoError
from batchveo.states import JobState
from batchveo.store import Store
from batchveo.verdicts import Defect, ReviewAsk, Verdict
from tests.helpers import make_spec

S = JobState
_MARK = re.compile(r"\[review=([\w-]+)\]")


class FakeReviews:
    def __init__(
        self,
        errors: dict[str, Callable[[], BatchveoError | None]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.errors = errors or {}
        self.clock = clock
        self.asks: list[ReviewAsk] = []
        self.asked_at: list[float] = []
        self.hold: asyncio.Event | None = None
        """Set: every review waits for it (a review in flight when the run is killed)."""
        self.sent = asyncio.Event()

    async def review(self, ask: ReviewAsk) -> Verdict:
        self.asks.append(ask)
        if self.clock is not None:
            self.asked_at.append(self.clock())
        self.sent.set()
        if self.hold is not None:
            await self.hold.wait()
        assert ask.video_path.is_file()
        mark = _MARK.search(ask.prompt)
        what = mark.group(1) if mark else "9"
        if what in self.errors:
            error = self.errors[what]()
            if error is not None:
                raise error
            what = "9"  # an error that came once: a good answer now
        score = float(what)
        defects = (Defect("00:05", "an extra finger"),) if score < 7 else ()
        return Verdict(score, score >= 5, defects, f"scored {what}", 1000, 50)

    def prompts(self) -> list[str]:
        return [a.prompt for a in self.asks]


async def done_jobs(store: Store, tmp_path: Path, prompts: dict[str, str]) -> None:
    """Jobs ``id -> prompt`` of batch b1, done with a video file each."""
    await store.add_jobs([make_spec(job_id, prompt) for job_id, prompt in prompts.items()])
    for job in await store.claim_pending(len(prompts)):
        video = tmp_path / f"{job.id}.mp4"
        video.write_bytes(b"\0\0\0\x08free")
        await store.transition(job.id, S.SUBMITTING, S.RUNNING, operation=f"op-{job.id}")
        files = [{"path": str(video), "size": 8, "sha256": "x"}]
        await store.transition(job.id, S.RUNNING, S.DONE, files=files)
