from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchveo.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "jobs.db")
    try:
        yield s
    finally:
        await s.close()
