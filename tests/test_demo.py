"""``make demo-vertex`` loads the example batch through the Vertex AI route: the example's
preview ids, retired on Vertex, are swapped for the GA ids a load of the original names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batchveo.cli.demo import MANIFEST, vertex_manifest
from batchveo.errors import ManifestError
from batchveo.manifest import read_manifests
from batchveo.routes import Route

REPO = Path(__file__).parent.parent


def test_the_example_batch_loads_on_vertex_once_its_ids_are_the_ga_ones(tmp_path: Path) -> None:
    original = (REPO / MANIFEST).read_text()
    shutil.copytree(REPO / "examples", tmp_path / "examples")  # the images it names
    copy = tmp_path / "jobs.yaml"
    vertex = Route("vertex", "batchveo-demo")
    copy.write_text(original)
    with pytest.raises(ManifestError, match="retired on Vertex AI on 2026-04-02"):
        read_manifests([copy], route=vertex)
    copy.write_text(vertex_manifest(original))
    loaded = read_manifests([copy], route=vertex)
    gemini = read_manifests([REPO / MANIFEST])
    assert len(loaded.specs) == len(gemini.specs) == 12
    assert {s.model for s in loaded.specs} == {"veo-3.1-fast-generate-001"}
    # Nothing else differs: the same prompts, the same parameters (Vertex adds its audio).
    assert [s.prompt for s in loaded.specs] == [s.prompt for s in gemini.specs]
    for v, g in zip(loaded.specs, gemini.specs, strict=True):
        assert {k: x for k, x in v.params.items() if k != "generateAudio"} == g.params
