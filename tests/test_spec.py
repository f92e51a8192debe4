"""A job's identity: ``spec_hash()`` is pinned, and its hand-built JSON is ``content_key()``'s.

Why pinned: an auto id is ``"j"`` + the first 16 hex digits of ``spec_hash()``, and a reload
finds last night's jobs by id. A hash that changed silently would make every job of a
reloaded manifest new, to be submitted and paid for again. The literal values below were
computed before the manifest loader was restructured; change them only with a migration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from batchveo.manifest import read_manifests
from batchveo.spec import ImageRef, JobSpec, content_hash, params_json, text_hasher

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "0123456789abcdef" * 4
PARAMS = {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 8}

TEXT_ONLY = JobSpec(
    id="x",
    batch="b",
    prompt="A fox in the snow",
    model="veo-3.1-generate-preview",
    params=dict(PARAMS),
)
WITH_IMAGES = JobSpec(
    id="x",
    batch="b",
    prompt="The harbour at dawn",
    model="veo-3.1-generate-preview",
    params=dict(PARAMS),
    image=ImageRef("/m/first.png", SHA_A, "image/png"),
    last_frame=ImageRef("/m/last.jpg", SHA_B, "image/jpeg"),
)
WITH_REFERENCES = JobSpec(
    id="x",
    batch="b",
    prompt="A cat, as in the pictures",
    model="veo-3.1-generate-preview",
    params=dict(PARAMS),
    reference_images=(
        ImageRef("/m/a.png", SHA_A, "image/png"),
        ImageRef("/m/c.webp", SHA_C, "image/webp"),
    ),
)
EVERY_PARAMETER = JobSpec(
    id="x",
    batch="b",
    prompt='Ünïcode "quoted" prompt\nwith a line break',
    model="veo-3.1-fast-generate-preview",
    params={
        "aspectRatio": "9:16",
        "resolution": "1080p",
        "durationSeconds": 8,
        "personGeneration": "allow_adult",
        "enhancePrompt": False,
        "negativePrompt": "blur, text",
        "seed": 4294967295,
        "sampleCount": 1,
    },
    image=ImageRef("/m/first.png", SHA_A, "image/png"),
    video_uri="https://example.com/v/1.mp4",
    output_name="cars/shot 1",
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (TEXT_ONLY, "1f0569801bb21e3e1434d11cc52524ef26dfe2268b7e6a50ce0b76a7a83f5549"),
        (WITH_IMAGES, "e09a7eaba6cde11e9c0aea2ae25f6d03dc824b528088ab0967a68d4f8b92beb6"),
        (WITH_REFERENCES, "7d4f3310d44431e6a9bb3777316aecba05c77c18cec6871b2dd34d0a4052640c"),
        (EVERY_PARAMETER, "fd01b1f1491ff6c728a7f0560dfa561a0f348ec034f54db66a06d867be8a6a97"),
    ],
    ids=["text only", "with images", "with reference images", "every parameter"],
)
def test_spec_hash_is_pinned(spec: JobSpec, expected: str) -> None:
    assert spec.spec_hash() == expected


def test_what_is_not_content_does_not_change_the_hash() -> None:
    """Ids, batches, sources, image paths and mime types are names, not the request."""
    moved = dataclasses.replace(
        WITH_IMAGES,
        id="other",
        batch="friday",
        source="elsewhere.yaml:9",
        image=ImageRef("/new/place.png", SHA_A, "image/jpeg"),
    )
    assert moved.spec_hash() == WITH_IMAGES.spec_hash()
    reordered = dataclasses.replace(TEXT_ONLY, params=dict(reversed(list(PARAMS.items()))))
    assert reordered.spec_hash() == TEXT_ONLY.spec_hash()


def test_the_auto_id_of_a_manifest_row_is_pinned(tmp_path: Path) -> None:
    """The id a reload must find again: the text-only spec above, with the defaults."""
    path = tmp_path / "m.yaml"
    path.write_text("- prompt: A fox in the snow\n")
    (spec,) = read_manifests([path]).specs
    assert spec.id == "j1f0569801bb21e3e"


def reference_hash(spec: JobSpec) -> str:
    """The definition ``content_hash`` must match byte for byte."""
    key = spec.content_key()
    return hashlib.sha256(
        json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _fast_hash(spec: JobSpec) -> str:
    return content_hash(
        spec.prompt,
        spec.model,
        spec.params,
        spec.image,
        spec.last_frame,
        spec.reference_images,
        spec.video_uri,
        spec.output_name,
    )


VARIED: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("unicode", {"prompt": "日本語のプロンプト, émoji 🎬, ß"}),
    ("quotes and escapes", {"prompt": 'say "hi" \\ back\\slash\t tab\r\nCRLF'}),
    ("every optional field", {}),
    ("no output", {"output_name": None}),
    ("output with unicode", {"output_name": 'dossier/é "x"'}),
    ("empty strings", {"video_uri": "", "output_name": ""}),
    ("params with unicode", {"params": {**PARAMS, "negativePrompt": 'ünïcode "q"'}}),
    ("no params", {"params": {}}),
]


@pytest.mark.parametrize(
    "base", [TEXT_ONLY, WITH_IMAGES, WITH_REFERENCES, EVERY_PARAMETER], ids=lambda s: s.prompt[:12]
)
@pytest.mark.parametrize(("label", "change"), VARIED, ids=[v[0] for v in VARIED])
def test_content_hash_is_the_json_of_content_key(
    base: JobSpec, label: str, change: dict[str, Any]
) -> None:
    spec = dataclasses.replace(base, **change)
    assert _fast_hash(spec) == reference_hash(spec)
    assert spec.spec_hash() == reference_hash(spec)


def test_params_json_is_canonical_whatever_the_order() -> None:
    assert (
        params_json({"b": 1, "a": "é"})
        == params_json({"a": "é", "b": 1})
        == '{"a":"\\u00e9","b":1}'
    )
    assert params_json({"a": [1, 2]}) == '{"a":[1,2]}'  # an unhashable value is encoded too


@pytest.mark.parametrize(("label", "change"), VARIED, ids=[v[0] for v in VARIED])
def test_a_text_jobs_hash_from_its_shape_is_its_content_hash(
    label: str, change: dict[str, Any]
) -> None:
    """``text_hasher`` (a manifest's text jobs alike but for the prompt) builds the same
    blob as ``content_hash``."""
    spec = dataclasses.replace(TEXT_ONLY, **change)
    if spec.video_uri is not None:
        return  # not a text-only job
    hash_of = text_hasher(spec.model, spec.params, spec.output_name)
    assert hash_of(spec.prompt) == reference_hash(spec)


@pytest.mark.parametrize("base", [TEXT_ONLY, WITH_IMAGES, WITH_REFERENCES, EVERY_PARAMETER])
def test_a_spec_made_in_one_go_is_the_dataclasss_own(base: JobSpec) -> None:
    hop_fields = ("extends", "chain_root", "hop", "output_s")  # a hop is made the long way
    assert all(getattr(base, name) is None for name in hop_fields)
    fields = [f.name for f in dataclasses.fields(JobSpec) if f.name not in hop_fields]
    made = JobSpec.made(**{name: getattr(base, name) for name in fields})
    assert made == base and vars(made) == vars(base)  # source and known_hash too
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.id = "other"  # type: ignore[misc]
