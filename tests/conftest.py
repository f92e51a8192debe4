from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from batchveo.spec import JobSpec
from batchveo.store import Store


def make_spec(job_id: str, prompt: str | None = None, **kw: Any) -> JobSpec:
    """A valid text-to-video spec, for tests that do not care about manifests."""
    params = kw.pop("params", {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 8})
    return JobSpec(
        id=job_id,
        batch=kw.pop("batch", "b1"),
        prompt=prompt if prompt is not None else f"a prompt for {job_id}",
        model=kw.pop("model", "veo-3.1-generate-preview"),
        params=params,
        source=kw.pop("source", f"jobs.yaml:{job_id}"),
        **kw,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "jobs.db")
    try:
        yield s
    finally:
        await s.close()
