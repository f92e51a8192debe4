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


@pytest.fixture(autouse=True)
def _own_state_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash files and anything else batchveo keeps under ``$XDG_STATE_HOME`` go to the
    test's own folder, for the commands a test runs in its process and in subprocesses
    alike (they inherit the environment): a test never writes into the user's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
