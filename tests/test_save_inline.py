"""A video that came inline (Vertex AI's poll answer) is saved exactly as a download is:
checked, durable, never over another video, and never left half-written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from batchveo.api import VeoClient, resolve_provider
from batchveo.errors import ApiError
from tests.pipeline_helpers import SAMPLE_MP4


async def test_an_inline_video_is_saved_like_a_download(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "a.mp4"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.mp4").write_bytes(b"someone else's video")
    async with VeoClient(resolve_provider("custom", "http://127.0.0.1:9"), "k" * 8) as client:
        result = await client.save(SAMPLE_MP4, dest)
        with pytest.raises(ApiError, match="not an MP4"):
            await client.save(b"<html>an error page</html>", tmp_path / "out" / "b.mp4")
    assert result.path == tmp_path / "out" / "a-2.mp4"  # the name was taken
    assert result.path.read_bytes() == SAMPLE_MP4 and result.size == len(SAMPLE_MP4)
    assert result.sha256 == hashlib.sha256(SAMPLE_MP4).hexdigest()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-2.mp4", "a.mp4"]
