"""Vertex jobs at load: routes from ``defaults:`` and the command, each provider's ids and
parameters, Cloud Storage images, their identity, and what they are estimated to cost."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from batchveo import models
from batchveo.errors import ConfigError, ManifestError
from batchveo.manifest import read_manifests
from batchveo.routes import Route
from batchveo.run.plan import make_plan
from batchveo.spec import ImageRef, JobSpec
from tests.test_spec import reference_hash

GA = "veo-3.1-generate-001"
GA_FAST = "veo-3.1-fast-generate-001"
PNG_1PX = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(path: Path, **kw: object) -> list[str]:
    with pytest.raises(ManifestError) as info:
        read_manifests([path], **kw)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


# -- the route: defaults over the command ------------------------------------------------


def test_a_vertex_manifest_gets_its_route_and_the_ga_default_model(tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.yaml",
        """
        defaults:
          provider: vertex
          project: my-proj-1
          location: europe-west4
          storageUri: gs://my-bucket/night
        jobs:
          - prompt: a fox
          - prompt: a cat
            model: veo-3.1-fast-generate-001
            generateAudio: false
            sampleCount: 3
        """,
    )
    fox, cat = read_manifests([path]).specs
    route = Route("vertex", "my-proj-1", "europe-west4", "gs://my-bucket/night/")
    assert fox.route == cat.route == route  # the bucket is a folder: made to end with /
    assert fox.model == GA and cat.model == GA_FAST
    assert cat.params["generateAudio"] is False and cat.params["sampleCount"] == 3


def test_the_manifest_says_first_and_the_command_fills_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path / "v.yaml", "defaults: {project: mine-123}\njobs: [{prompt: p}]\n")
    command = Route("vertex", "theirs-123", "asia-northeast1")
    (spec,) = read_manifests([path], route=command).specs
    assert spec.route == Route("vertex", "mine-123", "asia-northeast1")
    # A part neither says is the run's to fill.
    (plain,) = read_manifests([path], route=Route("vertex")).specs
    assert plain.route == Route("vertex", "mine-123")


def test_gemini_format_jobs_keep_no_vertex_parts_from_the_command(tmp_path: Path) -> None:
    """GOOGLE_CLOUD_PROJECT in the environment must not make gptproto jobs differ."""
    path = write(tmp_path / "g.yaml", "- prompt: p\n")
    (spec,) = read_manifests([path], route=Route(project="env-proj-1", location="us-east1")).specs
    assert spec.route is None
    (gemini,) = read_manifests([path], route=Route("gemini", "env-proj-1")).specs
    assert gemini.route == Route("gemini")
    assert spec.model == gemini.model == models.DEFAULT_MODEL  # as before routes


def test_the_route_is_not_part_of_a_jobs_identity(tmp_path: Path) -> None:
    """A reload with another --project must find last night's jobs, not pay for them again."""
    path = write(tmp_path / "v.yaml", "defaults: {provider: vertex}\njobs: [{prompt: p}]\n")
    (a,) = read_manifests([path], route=Route(project="proj-aaaa")).specs
    (b,) = read_manifests([path], route=Route(project="proj-bbbb", location="global")).specs
    assert a.route != b.route and a.id == b.id and a.spec_hash() == b.spec_hash()


def test_a_bad_command_route_names_its_flag(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", "- prompt: p\n")
    with pytest.raises(ConfigError, match=r"^--location: location must be a Google Cloud region"):
        read_manifests([path], route=Route("vertex", location="us central1"))
    with pytest.raises(ConfigError, match=r"^--project: project must be"):
        read_manifests([path], route=Route("vertex", project="x/../y"))
    with pytest.raises(ConfigError, match=r"^--storage-uri: storageUri must be"):
        read_manifests([path], route=Route("vertex", storage_uri="https://bucket/x"))


# -- problems: each one line, FILE:LINE, job ID --------------------------------------------

VERTEX = "defaults: {provider: vertex}\njobs:\n  - id: a\n    prompt: p\n"
PLAIN = "jobs:\n  - id: a\n    prompt: p\n"
RULES = [
    (
        "retired preview id on vertex",
        VERTEX,
        "    model: veo-3.1-fast-generate-preview\n",
        "model veo-3.1-fast-generate-preview was retired on Vertex AI on 2026-04-02: "
        "use veo-3.1-fast-generate-001 (provider vertex)",
    ),
    (
        "GA id on gptproto",
        PLAIN,
        f"    model: {GA}\n",
        f"model {GA} is not served by provider gptproto (it serves veo-3.1-generate-preview, "
        "veo-3.1-fast-generate-preview, veo-3.1-lite-generate-preview)",
    ),
    (
        "generateAudio on gptproto",
        PLAIN,
        "    generateAudio: false\n",
        "generateAudio is a Vertex AI parameter: provider gptproto does not take it "
        "(its videos always have audio)",
    ),
    (
        "generateAudio not a bool",
        VERTEX,
        "    generateAudio: quiet\n",
        "generateAudio must be true or false, not 'quiet'",
    ),
    (
        "several samples on gptproto",
        PLAIN,
        "    sampleCount: 3\n",
        "sampleCount must be 1 on provider gptproto, not 3: the Gemini API makes one video "
        "per request (use repeat: N for several variants, or provider vertex for up to 4)",
    ),
    (
        "five samples on vertex",
        VERTEX,
        "    sampleCount: 5\n",
        "sampleCount must be between 1 and 4, not 5",
    ),
    (
        "a Cloud Storage image on gptproto",
        PLAIN,
        "    image: gs://bucket/first.png\n",
        "image 'gs://bucket/first.png' is in Cloud Storage: only provider vertex reads gs:// "
        "images (provider gptproto takes local files)",
    ),
    (
        "a Cloud Storage image that does not say its type",
        VERTEX,
        "    image: gs://bucket/first\n",
        "image 'gs://bucket/first': a Cloud Storage image is not read here, so its name must "
        "tell its type: .png, .jpg, .jpeg or .webp",
    ),
    (
        "a Cloud Storage folder for an image",
        VERTEX,
        "    image: gs://Bad_Bucket/x.png\n",
        "image 'gs://Bad_Bucket/x.png' is not a Cloud Storage object (gs://BUCKET/NAME.png)",
    ),
    (
        "an http video to extend on vertex",
        VERTEX,
        "    video: https://example.com/v.mp4\n",
        "video must be the gs:// URI of a previous Veo video on provider vertex, "
        "not 'https://example.com/v.mp4'",
    ),
    (
        "a Cloud Storage video to extend on gemini",
        "defaults: {provider: gemini}\njobs:\n  - id: a\n    prompt: p\n",
        "    video: gs://bucket/v.mp4\n",
        "video 'gs://bucket/v.mp4' is in Cloud Storage: provider gemini extends only the "
        "http(s) URI of a video it made (gs:// is for provider vertex)",
    ),
]


@pytest.mark.parametrize(("rule", "head", "line", "message"), RULES, ids=[r[0] for r in RULES])
def test_each_provider_rule_is_one_line_naming_file_line_and_job(
    tmp_path: Path, rule: str, head: str, line: str, message: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(head + line)
    job_line = head.splitlines().index("  - id: a") + 1
    assert problems(path) == [f"{path}:{job_line}, job a: {message}"]


DEFAULTS_RULES = [
    (
        "project on gptproto",
        "  project: my-proj-1\n",
        "defaults: project is a Vertex AI setting: provider gptproto does not take it "
        "(set provider: vertex)",
    ),
    (
        "bucket on gemini",
        "  provider: gemini\n  storageUri: gs://b-1/x/\n",
        "defaults: storageUri is a Vertex AI setting: provider gemini does not take it "
        "(set provider: vertex)",
    ),
    (
        "unknown provider",
        "  provider: openai\n",
        "defaults: provider must be one of gptproto, gemini, vertex, not 'openai'",
    ),
    (
        "a region that is not one",
        "  provider: vertex\n  location: https://evil.example/\n",
        "defaults: location must be a Google Cloud region like us-central1 (or global), "
        "not 'https://evil.example/'",
    ),
    (
        "a bucket that is not Cloud Storage",
        "  provider: vertex\n  storageUri: s3://bucket/\n",
        "defaults: storageUri must be a Cloud Storage folder like gs://BUCKET/PREFIX/ "
        "(a valid bucket name), not 's3://bucket/'",
    ),
    (
        "a project that is not one",
        "  provider: vertex\n  project: My Project\n",
        "defaults: project must be a Google Cloud project id (6 to 30 lowercase letters, "
        "digits and hyphens, starting with a letter) or project number, not 'My Project'",
    ),
]


@pytest.mark.parametrize(
    ("rule", "defaults", "message"), DEFAULTS_RULES, ids=[r[0] for r in DEFAULTS_RULES]
)
def test_route_problems_of_defaults_are_located_at_their_key(
    tmp_path: Path, rule: str, defaults: str, message: str
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("defaults:\n" + defaults + "jobs:\n  - prompt: p\n")
    key_line = len(defaults.splitlines()) + 1  # the last key given is the one at fault
    assert problems(path) == [f"{path}:{key_line}: {message}"]


def test_vertex_problems_in_csv_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("prompt,generate_audio,sample_count\na,false,1\nb,,2\n")
    assert problems(path) == [
        f"{path} row 1: generateAudio is a Vertex AI parameter: provider gptproto does not "
        "take it (its videos always have audio)",
        f"{path} row 2: sampleCount must be 1 on provider gptproto, not 2: the Gemini API "
        "makes one video per request (use repeat: N for several variants, or provider "
        "vertex for up to 4)",
    ]
    ok = read_manifests([path], route=Route("vertex")).specs
    assert [s.params.get("generateAudio") for s in ok] == [False, None]
    assert [s.params.get("sampleCount") for s in ok] == [1, 2]


# -- Cloud Storage images: no file to hash, the URI is the identity ---------------------------


def test_a_cloud_storage_image_is_kept_by_its_uri(tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.yaml",
        """
        defaults: {provider: vertex}
        jobs:
          - prompt: p
            image: gs://bucket/frames/first.JPG
            referenceImages: [gs://bucket/a.webp, local.png]
        """,
    )
    (tmp_path / "local.png").write_bytes(PNG_1PX)
    (spec,) = read_manifests([path]).specs
    assert spec.image == ImageRef.cloud("gs://bucket/frames/first.JPG", "image/jpeg")
    assert spec.image.path == "" and spec.image.identity == "gs://bucket/frames/first.JPG"
    cloud, local = spec.reference_images
    assert cloud.gcs_uri == "gs://bucket/a.webp" and cloud.mime_type == "image/webp"
    assert local.gcs_uri is None and local.path == str(tmp_path / "local.png")
    # Stored and read back as the same reference; the identity holds the URI.
    back = JobSpec.from_row(
        id=spec.id,
        batch=spec.batch,
        prompt=spec.prompt,
        model=spec.model,
        params=spec.params,
        inputs=spec.inputs_json(),
        output_name=None,
        route=spec.route,
    )
    assert back == dataclasses.replace(spec, source="", known_hash=None)
    assert spec.inputs_json()["image"] == {
        "gcsUri": "gs://bucket/frames/first.JPG",
        "mimeType": "image/jpeg",
    }
    assert spec.content_key()["image"] == "gs://bucket/frames/first.JPG"
    assert spec.spec_hash() == reference_hash(spec)


def test_another_cloud_storage_image_is_another_job(tmp_path: Path) -> None:
    a = write(
        tmp_path / "a.yaml",
        "defaults: {provider: vertex}\njobs: [{prompt: p, image: gs://bk1/x.png}]\n",
    )
    b = write(
        tmp_path / "b.yaml",
        "defaults: {provider: vertex}\njobs: [{prompt: p, image: gs://bk1/y.png}]\n",
    )
    assert read_manifests([a]).specs[0].id != read_manifests([b]).specs[0].id


# -- pinned: the identity of a Vertex job -----------------------------------------------------

VERTEX_SPEC = JobSpec(
    id="x",
    batch="b",
    prompt="A lighthouse at night",
    model=GA,
    params={
        "aspectRatio": "16:9",
        "resolution": "1080p",
        "durationSeconds": 8,
        "generateAudio": False,
        "sampleCount": 3,
    },
    image=ImageRef.cloud("gs://my-bucket/first.png", "image/png"),
    route=Route("vertex", "my-proj-1", "us-central1", "gs://my-bucket/out/"),
)


def test_the_hash_of_a_vertex_spec_is_pinned() -> None:
    """Pinned like tests/test_spec.py's: a changed value changes every Vertex auto id."""
    assert VERTEX_SPEC.spec_hash() == (
        "0ac5d797da6559d543439cbf433fdbac9ccf536b4d10ae664263560c128e654b"
    )
    assert VERTEX_SPEC.spec_hash() == reference_hash(VERTEX_SPEC)
    elsewhere = dataclasses.replace(VERTEX_SPEC, route=Route("vertex", "other-proj", "global"))
    assert elsewhere.spec_hash() == VERTEX_SPEC.spec_hash()


def test_the_auto_id_of_a_vertex_manifest_row_is_pinned(tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.yaml",
        """
        defaults: {provider: vertex, generateAudio: false}
        jobs:
          - prompt: A fox in the snow
            sampleCount: 2
        """,
    )
    (spec,) = read_manifests([path]).specs
    assert spec.id == "j981363f90ee52ff1"


# -- prices: audio off is cheaper on Vertex; every returned video is billed --------------------


def test_vertex_prices_audio_off_lower_and_count_every_video() -> None:
    def cost(model: str, **params: object) -> float:
        return models.estimate_params_cost_usd(model, {"durationSeconds": 8, **params})

    assert cost(GA) == pytest.approx(0.40 * 8)
    assert cost(GA, generateAudio=False) == pytest.approx(0.20 * 8)
    assert cost(GA, generateAudio=False, sampleCount=3) == pytest.approx(0.20 * 8 * 3)
    assert cost(GA, resolution="4k", generateAudio=False) == pytest.approx(0.40 * 8)
    assert cost(GA_FAST, generateAudio=False) == pytest.approx(0.10 * 8)
    assert cost(GA_FAST, sampleCount=4) == pytest.approx(0.15 * 8 * 4)
    # No published video-only figure: priced as with audio (an estimate errs high).
    lite = "veo-3.1-lite-generate-001"
    assert cost(lite, generateAudio=False) == cost(lite) == pytest.approx(0.05 * 8)


def test_own_prices_may_price_silent_videos() -> None:
    own = models.parse_prices({GA: {"720p": 0.5, "720p-no-audio": 0.3}, GA_FAST: 0.2}, "p.yaml")
    silent = {"durationSeconds": 4, "generateAudio": False}
    assert models.estimate_params_cost_usd(GA, silent, own) == pytest.approx(0.3 * 4)
    assert models.estimate_params_cost_usd(GA, {"durationSeconds": 4}, own) == pytest.approx(2)
    # Without a silent figure of its own, the user's figure holds for both.
    assert models.estimate_params_cost_usd(GA_FAST, silent, own) == pytest.approx(0.2 * 4)


def test_every_provider_lists_known_models_and_vertex_replaces_what_it_retired() -> None:
    for provider in models.PROVIDER_MODELS.values():
        assert set(provider.model_ids) <= set(models.MODELS), provider.name
        assert provider.default_model in provider.model_ids, provider.name
        assert set(provider.retired.values()) <= set(provider.model_ids), provider.name
    vertex = models.PROVIDER_MODELS["vertex"]
    assert vertex.max_sample_count == 4 and vertex.audio_choice
    assert all(not p.audio_choice for n, p in models.PROVIDER_MODELS.items() if n != "vertex")


def test_plan_counts_a_vertex_jobs_samples_and_audio(tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.yaml",
        """
        defaults: {provider: vertex, budget: 10}
        jobs:
          - prompt: silent triple
            generateAudio: false
            sampleCount: 3
          - prompt: loud double
            sampleCount: 2
          - prompt: one more
        """,
    )
    loaded = read_manifests([path])
    plan = make_plan(loaded.specs, tmp_path / "none.db", budgets=loaded.budgets)
    # 0.20*8*3 = 4.80, then 0.40*8*2 = 6.40 would pass the 10 of the batch: held back;
    # 0.40*8 = 3.20 fits what is left.
    assert plan.to_submit == 2 and plan.over_budget == 1
    assert plan.cost_usd == pytest.approx(4.80 + 3.20)
    assert plan.video_s == 8 * 3 + 8  # seconds of video: every one a job asks for
