"""A scene chain on Vertex AI, end to end over real sockets: each hop sends its parent's
video as ``instances[0].video.gcsUri`` (the object in the user's bucket), only once the
parent is done."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batchveo.sim import SimConfig
from tests.test_vertex_e2e import BUCKET, _env, export, run, with_key
from tests.vertex_helpers import SimThread

__all__ = ["_env"]  # the Vertex tests' fixture: a fresh folder, no machine credentials

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def test_a_vertex_chain_sends_each_parents_gcs_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, Any]] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith(":predictLongRunning"):
            inst = json.loads(await request.read())["instances"][0]
            sent.append((inst["prompt"], inst.get("video")))
        return await handler(request)

    Path("night.yaml").write_text(
        "jobs:\n  - id: r\n    prompt: a vertex root\n"
        "    chain: [vertex hop two, vertex hop three]\n"
    )
    st = SimThread(SimConfig(generation_s=(0.01, 0.05), seed=7))
    st.sim.app.middlewares.append(record)  # before it starts
    st.start()
    try:
        with_key(st, monkeypatch)
        storage = ("--storage-uri", f"gs://{BUCKET}/night/", "--storage-base-url", st.url)
        result = run(st, *storage)
    finally:
        st.stop()
    assert result.exit_code == 0, result.output
    rows = export()
    assert {r["state"] for r in rows.values()} == {"done"}
    assert [p for p, _ in sent] == ["a vertex root", "vertex hop two", "vertex hop three"]
    for (_, video), hop, parent in zip(sent[1:], ("r-2", "r-3"), ("r", "r-2"), strict=True):
        # The parent's own object, where Vertex wrote it: night/<its operation>/sample_0.mp4.
        operation = rows[parent]["operation"].rsplit("/", 1)[-1]
        assert video == {
            "gcsUri": f"gs://{BUCKET}/night/{operation}/sample_0.mp4",
            "mimeType": "video/mp4",
        }
        assert rows[hop]["inputs"]["video"]["uri"] == video["gcsUri"]
    uris = [v["gcsUri"] for _, v in sent[1:]]
    assert len(set(uris)) == 2  # each hop its own parent's video
    assert sent[0][1] is None
