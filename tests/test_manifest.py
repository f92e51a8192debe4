"""The manifest loader, seen from the user's side: what loads, and what each mistake says."""

from __future__ import annotations

import hashlib
import io
import struct
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from batchveo import manifest, models
from batchveo.errors import ManifestError, Problem
from batchveo.manifest import images as image_files
from batchveo.manifest import read_manifests
from batchveo.spec import ImageRef, JobSpec

ROOT = Path(__file__).resolve().parents[1]


def encoded(fmt: str, size: tuple[int, int] = (4, 3)) -> bytes:
    """A tiny real image in ``fmt`` (the loader reads the header: magic bytes are not enough)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, fmt)
    return buf.getvalue()


JPEG = encoded("JPEG")
WEBP = encoded("WEBP")
GIF = b"GIF89a" + b"\x00" * 32
ALL_MODELS = ", ".join(models.MODELS)


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (4, 3)) -> bytes:
    """A tiny valid PNG, written by hand (the loader reads its header with Pillow)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    w, h = size
    raw = (b"\x00" + bytes(color) * w) * h
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(paths: list[Path] | Path, **kw: object) -> list[str]:
    """The problems of loading these manifests, as the user reads them."""
    with pytest.raises(ManifestError) as info:
        read_manifests(paths if isinstance(paths, list) else [paths], **kw)  # type: ignore[arg-type]
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


def one_problem(path: Path, **kw: object) -> str:
    found = problems(path, **kw)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder beside the manifests with valid images of each accepted type."""
    folder = tmp_path / "img"
    write(folder / "red.png", png((255, 0, 0)))
    write(folder / "blue.png", png((0, 0, 255)))
    write(folder / "green.png", png((0, 255, 0)))
    write(folder / "black.png", png((0, 0, 0)))
    write(folder / "photo.jpg", JPEG)
    write(folder / "photo.webp", WEBP)
    return folder


# --- loading -------------------------------------------------------------------------------


def test_yaml_with_defaults_and_overrides(tmp_path: Path, images: Path) -> None:
    path = write(
        tmp_path / "night1.yaml",
        """
        defaults:
          model: veo-3.1-fast-generate-preview
          aspectRatio: 9:16
          durationSeconds: 6
          negativePrompt: blurry
        jobs:
          - prompt: "  A lighthouse at dawn  "
            id: light
          - prompt: A fox runs
            image: img/red.png
            aspectRatio: "16:9"
            resolution: 1080p
            durationSeconds: 8
            personGeneration: allow_adult
            enhancePrompt: false
            seed: 7
            model: veo-3.1-generate-preview
        """,
    )
    first, second = read_manifests([path]).specs
    assert first.id == "light"
    assert first.batch == "night1"
    assert first.prompt == "A lighthouse at dawn"
    assert first.model == "veo-3.1-fast-generate-preview"
    assert first.params == {
        "aspectRatio": "9:16",
        "resolution": "720p",
        "durationSeconds": 6,
        "negativePrompt": "blurry",
    }
    assert first.image is None and first.output_name is None
    assert first.source == f"{path}:7"
    assert second.model == "veo-3.1-generate-preview"
    assert second.params == {
        "aspectRatio": "16:9",
        "resolution": "1080p",
        "durationSeconds": 8,
        "negativePrompt": "blurry",
        "personGeneration": "allow_adult",
        "enhancePrompt": False,
        "seed": 7,
    }
    red = (images / "red.png").read_bytes()
    assert second.image == ImageRef(
        path=str((images / "red.png").resolve()),
        sha256=hashlib.sha256(red).hexdigest(),
        mime_type="image/png",
    )
    assert second.source == f"{path}:9"


def test_builtin_defaults_and_only_user_set_optional_params(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yml", "- prompt: hello\n")
    (spec,) = read_manifests([path]).specs
    assert spec.model == models.DEFAULT_MODEL
    assert spec.params == dict(models.DEFAULT_PARAMS)
    assert spec.batch == "a"


def test_top_level_list_and_numeric_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "jobs.yaml", "- {prompt: one, id: 42}\n- {prompt: two, id: 7.5}\n")
    assert [s.id for s in read_manifests([path]).specs] == ["42", "7.5"]


def test_batch_argument_overrides_file_name(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "- prompt: one\n")
    b = write(tmp_path / "b.csv", "prompt\ntwo\n")
    specs = read_manifests([a, b], batch="friday").specs
    assert [s.batch for s in specs] == ["friday", "friday"]
    assert [s.batch for s in read_manifests([a, b]).specs] == ["a", "b"]


def test_csv_loads_with_types_coerced(tmp_path: Path, images: Path) -> None:
    path = write(
        tmp_path / "shots.csv",
        """
        id,prompt,image,lastFrame,aspectRatio,durationSeconds,enhancePrompt,seed,model,output
        s1,A red car,img/red.png,img/blue.png,9:16,8,no,12,veo-3.1-fast-generate-preview,cars/{id}
        s2,A blue boat,,,,4,TRUE,,,
        """,
    )
    s1, s2 = read_manifests([path]).specs
    assert s1.id == "s1" and s1.batch == "shots" and s1.source == f"{path} row 1"
    assert s1.params == {
        "aspectRatio": "9:16",
        "resolution": "720p",
        "durationSeconds": 8,
        "enhancePrompt": False,
        "seed": 12,
    }
    assert s1.model == "veo-3.1-fast-generate-preview"
    assert s1.image and s1.image.path == str((images / "red.png").resolve())
    assert s1.last_frame and s1.last_frame.path == str((images / "blue.png").resolve())
    assert s1.output_name == "cars/s1"
    assert s2.params == {
        "aspectRatio": "16:9",
        "resolution": "720p",
        "durationSeconds": 4,
        "enhancePrompt": True,
    }
    assert s2.image is None and s2.model == models.DEFAULT_MODEL and s2.output_name is None


def test_csv_bom_crlf_snake_case_and_multiline_prompt(tmp_path: Path, images: Path) -> None:
    text = (
        "\ufeffPrompt,Aspect_Ratio,duration_seconds,person_generation,negative_prompt,"
        "enhance_prompt,sample_count,last_frame,image,reference_images\r\n"
        '"A quiet street,\r\nthen rain ""falls""",9:16,8,allow_adult,people,0,1,'
        "img/blue.png,img/red.png,img/red.png; img/photo.jpg;\r\n"
    )
    path = write(tmp_path / "b.csv", text.encode("utf-8"))
    (spec,) = read_manifests([path]).specs
    assert spec.prompt == 'A quiet street,\r\nthen rain "falls"'
    assert spec.params == {
        "aspectRatio": "9:16",
        "resolution": "720p",
        "durationSeconds": 8,
        "personGeneration": "allow_adult",
        "negativePrompt": "people",
        "enhancePrompt": False,
        "sampleCount": 1,
    }
    assert spec.last_frame and spec.last_frame.mime_type == "image/png"
    assert [r.mime_type for r in spec.reference_images] == ["image/png", "image/jpeg"]


def test_yaml_reference_images_video_and_webp(tmp_path: Path, images: Path) -> None:
    path = write(
        tmp_path / "r.yaml",
        """
        jobs:
          - prompt: uses refs
            referenceImages: [img/red.png, img/photo.webp, img/photo.jpg]
          - prompt: extend it
            video: https://api.gptproto.com/upload/v1beta/files/abc:download?alt=media
        """,
    )
    refs, ext = read_manifests([path]).specs
    assert [r.mime_type for r in refs.reference_images] == [
        "image/png",
        "image/webp",
        "image/jpeg",
    ]
    assert ext.video_uri == "https://api.gptproto.com/upload/v1beta/files/abc:download?alt=media"
    assert ext.inputs_json() == {"video": {"uri": ext.video_uri}}


def test_image_paths_are_relative_to_the_manifest_not_the_cwd(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "m.yaml", "- {prompt: p, image: img/red.png}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (spec,) = read_manifests([path]).specs
    assert spec.image and spec.image.path == str((images / "red.png").resolve())
    monkeypatch.chdir(tmp_path)
    (again,) = read_manifests([Path("m.yaml")]).specs
    assert again.image == spec.image and again.source == "m.yaml:1"


def test_unquoted_aspect_ratio_is_not_a_base_60_number(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "- prompt: p\n  aspectRatio: 9:16\n  seed: 190\n")
    (spec,) = read_manifests([path]).specs
    assert spec.params["aspectRatio"] == "9:16" and spec.params["seed"] == 190


# --- repeat --------------------------------------------------------------------------------


def test_repeat_makes_variants_with_suffixes_and_consecutive_seeds(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.yaml",
        """
        defaults:
          output: "{batch}/{id}"
        jobs:
          - {prompt: a cat, id: cat, repeat: 3, seed: 100}
          - {prompt: a dog, id: dog, repeat: 2}
          - {prompt: a cow, id: cow, repeat: 1, output: cows/cow}
        """,
    )
    specs = read_manifests([path]).specs
    assert [s.id for s in specs] == ["cat-1", "cat-2", "cat-3", "dog-1", "dog-2", "cow-1"]
    assert [s.params.get("seed") for s in specs] == [100, 101, 102, None, None, None]
    assert [s.output_name for s in specs] == [
        "r/cat-1",
        "r/cat-2",
        "r/cat-3",
        "r/dog-1",
        "r/dog-2",
        "cows/cow-1",
    ]
    assert specs[3].params is not specs[4].params  # each spec owns its parameters


def test_repeat_with_auto_id_keeps_ids_when_raised(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    write(path, "- {prompt: a cat, repeat: 2}\n")
    two = [s.id for s in read_manifests([path]).specs]
    write(path, "- {prompt: a cat, repeat: 3}\n")
    three = [s.id for s in read_manifests([path]).specs]
    assert three[:2] == two and three[2].endswith("-3")
    assert two[0].startswith("j") and two[0].endswith("-1")


# --- identity ------------------------------------------------------------------------------


def test_auto_ids_are_stable_and_follow_content_not_paths(tmp_path: Path, images: Path) -> None:
    write(tmp_path / "copy" / "same.png", (images / "red.png").read_bytes())
    path = write(
        tmp_path / "m.yaml",
        """
        - {prompt: p, image: img/red.png}
        - {prompt: p, image: copy/same.png, id: explicit}
        - {prompt: p, image: img/blue.png}
        - {prompt: q, image: img/red.png}
        """,
    )
    red, copy, blue, other_prompt = read_manifests([path]).specs
    assert red.id == read_manifests([path]).specs[0].id  # stable across loads
    placeholder = JobSpec(
        id="",
        batch="m",
        prompt="p",
        model=copy.model,
        params=copy.params,
        image=copy.image,
    )
    assert red.id == "j" + placeholder.spec_hash()[:16]  # same bytes elsewhere: same id
    assert len(red.id) == 17
    assert blue.id != red.id  # different image content
    assert other_prompt.id != red.id


@pytest.mark.parametrize(
    "job",
    [
        {"prompt": 'quotes " and \\ and\nnewline, unicode é 日本 🎬'},
        {"prompt": "p", "output": "{batch}/{id}"},
        {"prompt": "p", "video": "https://x.example/v.mp4?a=1&b=2"},
        {
            "prompt": "p",
            "image": "img/red.png",
            "lastFrame": "img/blue.png",
            "personGeneration": "allow_adult",
            "enhancePrompt": True,
            "negativePrompt": "blur",
            "seed": 4294967295,
            "sampleCount": 1,
            "durationSeconds": 8,
            "resolution": "4k",
        },
        {"prompt": "p", "referenceImages": ["img/red.png", "img/photo.jpg"]},
        {"prompt": "p", "model": "veo-3.1-lite-generate-preview", "aspectRatio": "9:16"},
    ],
)
def test_auto_id_is_the_spec_hash_of_a_placeholder_spec(
    tmp_path: Path, images: Path, job: dict[str, object]
) -> None:
    """The loader builds the hash by hand for speed; it must stay JobSpec.spec_hash()."""
    import yaml

    path = write(tmp_path / "m.yaml", yaml.safe_dump([job]))
    (spec,) = read_manifests([path]).specs
    placeholder = JobSpec(
        id="",
        batch="m",
        prompt=spec.prompt,
        model=spec.model,
        params=spec.params,
        image=spec.image,
        last_frame=spec.last_frame,
        reference_images=spec.reference_images,
        video_uri=spec.video_uri,
        output_name=job.get("output"),  # type: ignore[arg-type]
    )
    assert spec.id == "j" + placeholder.spec_hash()[:16]


def test_identical_jobs_are_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path / "d.yaml", "- prompt: same\n- prompt: other\n- prompt: same\n")
    (msg,) = problems(path)
    same = JobSpec("", "d", "same", models.DEFAULT_MODEL, dict(models.DEFAULT_PARAMS))
    auto = "j" + same.spec_hash()[:16]
    assert msg == f"{path}:3, job {auto}: duplicate of {path}:1 (use repeat: N for variants)"


def test_same_id_for_different_jobs_names_both_places(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "- {id: x, prompt: one}\n")
    b = write(tmp_path / "b.csv", "id,prompt\ny,two\nx,three\n")
    assert problems([a, b]) == [f"{b} row 2, job x: id x is also used by a different job at {a}:1"]


def test_same_explicit_id_and_content_across_files_is_a_duplicate(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "- {id: x, prompt: one}\n")
    b = write(tmp_path / "b.yaml", "- {id: x, prompt: one}\n")
    assert problems([a, b]) == [f"{b}:1, job x: duplicate of {a}:1 (use repeat: N for variants)"]


def test_same_manifest_twice(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "- {prompt: one}\n")
    assert problems([a, a]) == [f"{a}: the same manifest is given twice"]


# --- validation: every rule, its message and its location -----------------------------------

LITE = "veo-3.1-lite-generate-preview"
URI = "https://api.gptproto.com/upload/v1beta/files/abc:download?alt=media"

RULES = [
    ("prompt is missing", {"id": "a"}, "prompt is missing"),
    ("empty prompt", {"prompt": "   "}, "prompt is empty"),
    ("prompt not text", {"prompt": 5}, "prompt must be text, not 5"),
    (
        "prompt too long",
        {"prompt": "x" * 4001},
        "prompt is 4001 characters; Veo takes about 1,024 tokens (roughly 4000 characters) at most",
    ),
    ("unknown model", {"model": "veo-2"}, f"unknown model 'veo-2'; known models: {ALL_MODELS}"),
    (
        "aspect ratio",
        {"aspectRatio": "4:3"},
        "aspectRatio must be one of 16:9, 9:16, not '4:3'",
    ),
    (
        "resolution",
        {"resolution": "480p"},
        "resolution must be one of 720p, 1080p, 4k, not '480p'",
    ),
    (
        "resolution unsupported by model",
        {"model": LITE, "resolution": "4k"},
        f"model {LITE} does not support 4k (only 720p, 1080p)",
    ),
    ("duration", {"durationSeconds": 5}, "durationSeconds must be 4, 6 or 8, not 5"),
    (
        "duration not a number",
        {"durationSeconds": "8s"},
        "durationSeconds must be a whole number, not '8s'",
    ),
    (
        "1080p needs 8 s",
        {"resolution": "1080p", "durationSeconds": 4},
        "durationSeconds must be 8 for resolution 1080p, not 4",
    ),
    (
        "1080p and reference images need 8 s",
        {"resolution": "1080p", "referenceImages": ["img/red.png"], "durationSeconds": 6},
        "durationSeconds must be 8 for resolution 1080p and referenceImages, not 6",
    ),
    (
        "4k needs 8 s",
        {"resolution": "4k", "durationSeconds": 6},
        "durationSeconds must be 8 for resolution 4k, not 6",
    ),
    (
        "reference images need 8 s",
        {"referenceImages": ["img/red.png"], "durationSeconds": 6},
        "durationSeconds must be 8 for referenceImages, not 6",
    ),
    (
        "extension needs 8 s",
        {"video": URI, "durationSeconds": 4},
        "durationSeconds must be 8 for a video extension, not 4",
    ),
    (
        "extension needs 720p",
        {"video": URI, "resolution": "1080p"},
        "a video extension needs resolution 720p, not 1080p",
    ),
    (
        "lastFrame needs image",
        {"lastFrame": "img/red.png"},
        "lastFrame needs image (the first frame)",
    ),
    (
        "at most 3 reference images",
        {"referenceImages": ["img/red.png", "img/blue.png", "img/green.png", "img/black.png"]},
        "at most 3 referenceImages, got 4",
    ),
    (
        "reference images not a list",
        {"referenceImages": "img/red.png"},
        "referenceImages must be a list of image paths",
    ),
    (
        "model without reference images",
        {"model": LITE, "referenceImages": ["img/red.png"]},
        f"model {LITE} does not support referenceImages",
    ),
    (
        "model without extension",
        {"model": LITE, "video": URI},
        f"model {LITE} does not support video extension",
    ),
    (
        "person generation value",
        {"personGeneration": "dont_allow"},
        "personGeneration must be one of allow_all, allow_adult, not 'dont_allow'",
    ),
    (
        "text-to-video allows only allow_all",
        {"personGeneration": "allow_adult"},
        "personGeneration allow_adult is not allowed for text-to-video: use allow_all",
    ),
    (
        "image-to-video allows only allow_adult",
        {"image": "img/red.png", "personGeneration": "allow_all"},
        "personGeneration allow_all is not allowed for image-to-video: use allow_adult",
    ),
    (
        "reference images allow only allow_adult",
        {"referenceImages": ["img/red.png"], "personGeneration": "allow_all"},
        "personGeneration allow_all is not allowed for image-to-video: use allow_adult",
    ),
    (
        "extension allows only allow_all",
        {"video": URI, "personGeneration": "allow_adult"},
        "personGeneration allow_adult is not allowed for a video extension: use allow_all",
    ),
    (
        "enhancePrompt",
        {"enhancePrompt": "maybe"},
        "enhancePrompt must be true or false, not 'maybe'",
    ),
    ("seed negative", {"seed": -1}, "seed must be between 0 and 4294967295, not -1"),
    ("seed too big", {"seed": 2**32}, "seed must be between 0 and 4294967295, not 4294967296"),
    ("seed not int", {"seed": 1.5}, "seed must be a whole number, not 1.5"),
    (
        "sampleCount",
        {"sampleCount": 2},
        "sampleCount must be 1 on provider gptproto, not 2: the Gemini API makes one video "
        "per request (use repeat: N for several variants, or provider vertex for up to 4)",
    ),
    (
        "video not http",
        {"video": "file:///tmp/v.mp4"},
        "video must be the http(s) URI of a previous Veo video, not 'file:///tmp/v.mp4'",
    ),
    (
        "image and video",
        {"image": "img/red.png", "video": URI},
        "image and video cannot be combined: a video extension takes no image",
    ),
    ("empty id", {"id": " "}, "id is empty"),
    ("long id", {"id": "x" * 129}, "id is 129 characters; at most 128"),
    (
        "id with slash",
        {"id": "a/b"},
        "id 'a/b' must not be '.' or '..' nor contain '/', '\\' or control characters",
    ),
    (
        "id with backslash",
        {"id": "a\\b"},
        "id 'a\\\\b' must not be '.' or '..' nor contain '/', '\\' or control characters",
    ),
    (
        "id dot-dot",
        {"id": ".."},
        "id '..' must not be '.' or '..' nor contain '/', '\\' or control characters",
    ),
    (
        "id with control character",
        {"id": "a\tb"},
        "id 'a\\tb' must not be '.' or '..' nor contain '/', '\\' or control characters",
    ),
    ("id not text", {"id": True}, "id must be text, not True"),
    ("repeat zero", {"repeat": 0}, "repeat must be between 1 and 10000, not 0"),
    ("repeat not a number", {"repeat": "x"}, "repeat must be a whole number, not 'x'"),
    (
        "seed overflows with repeat",
        {"seed": 4294967295, "repeat": 2},
        "seed + repeat - 1 must stay at most 4294967295",
    ),
    ("unknown key", {"promt": "x"}, "unknown key 'promt' (did you mean 'prompt'?)"),
    (
        "snake_case key in YAML",
        {"aspect_ratio": "16:9"},
        "unknown key 'aspect_ratio' (did you mean 'aspectRatio'?)",
    ),
    (
        "output escapes",
        {"output": "../x"},
        "output '../x' must be a relative path inside the output folder (no '..')",
    ),
    (
        "output absolute",
        {"output": "/tmp/x"},
        "output '/tmp/x' must be a relative path inside the output folder (no '..')",
    ),
    (
        "output unknown placeholder",
        {"output": "{name}"},
        "output '{name}': the only placeholders are {id} and {batch}",
    ),
    (
        "missing image",
        {"image": "img/nope.png"},
        "image img/nope.png not found (looked for {img}/nope.png)",
    ),
    ("image is a folder", {"image": "img"}, "image img is not a file"),
    ("image not a path", {"image": 3}, "image must be a file path, not 3"),
    ("png holding jpeg", {"image": "img/fake.png"}, "image img/fake.png is JPEG data, not PNG"),
    (
        "text renamed png",
        {"image": "img/notes.png"},
        "image img/notes.png is not a PNG, JPEG or WebP image",
    ),
    (
        "gif",
        {"image": "img/anim.gif"},
        "image img/anim.gif is GIF data; Veo takes PNG, JPEG or WebP",
    ),
    ("empty image", {"image": "img/empty.jpg"}, "image img/empty.jpg is empty"),
    (
        "bad last frame",
        {"image": "img/red.png", "lastFrame": "img/notes.png"},
        "lastFrame img/notes.png is not a PNG, JPEG or WebP image",
    ),
    (
        "bad reference image",
        {"referenceImages": ["img/red.png", "img/fake.png"]},
        "referenceImages[2] img/fake.png is JPEG data, not PNG",
    ),
]


@pytest.fixture
def bad_images(images: Path) -> Path:
    write(images / "fake.png", JPEG)
    write(images / "notes.png", "just some text\n")
    write(images / "anim.gif", GIF)
    write(images / "empty.jpg", b"")
    return images


@pytest.mark.parametrize(("rule", "job", "message"), RULES, ids=[r[0] for r in RULES])
def test_each_rule_in_yaml_says_what_and_where(
    tmp_path: Path, bad_images: Path, rule: str, job: dict[str, object], message: str
) -> None:
    import yaml

    job = {"prompt": "a valid prompt", **job}
    if rule == "prompt is missing":
        del job["prompt"]
    body = yaml.safe_dump({"jobs": [{"prompt": "fine"}, job]}, width=10_000)
    path = write(tmp_path / "m.yaml", body)
    line = [i for i, text in enumerate(body.splitlines(), 1) if text.startswith("- ")][1]
    shown = ", job a" if rule == "prompt is missing" else ""  # a valid id is named
    expected = message.replace("{img}", str(bad_images.resolve()))
    assert one_problem(path) == f"{path}:{line}{shown}: {expected}"


def test_every_rule_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path / "three.csv",
        """
        prompt,durationSeconds,resolution,seed
        fine,8,720p,
        bad duration,5,720p,
        ,8,720p,
        fine too,8,720p,
        bad seed,8,720p,abc
        """,
    )
    assert problems(path) == [
        f"{path} row 2: durationSeconds must be 4, 6 or 8, not 5",
        f"{path} row 3: prompt is missing",
        f"{path} row 5: seed must be a whole number, not 'abc'",
    ]


def test_several_problems_in_one_job_and_job_id_shown(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.yaml",
        """
        jobs:
          - prompt: ok
          - id: hero
            prompt: ""
            resolution: 1080p
            durationSeconds: 4
        """,
    )
    assert problems(path) == [
        f"{path}:3, job hero: prompt is empty",
        f"{path}:3, job hero: durationSeconds must be 8 for resolution 1080p, not 4",
    ]


def test_problems_across_files_are_all_listed(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "- {prompt: p, seed: x}\n")
    b = write(tmp_path / "b.csv", "prompt,seed\np,-3\n")
    c = tmp_path / "missing.yaml"
    assert problems([a, b, c]) == [
        f"{a}:1: seed must be a whole number, not 'x'",
        f"{b} row 1: seed must be between 0 and 4294967295, not -3",
        f"{c}: file not found",
    ]


def test_csv_values_that_do_not_parse(tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.csv",
        "prompt,enhance_prompt,sample_count,repeat,duration_seconds\n"
        "a,perhaps,1,,\n"
        "b,,one,,\n"
        "c,,,2.5,\n"
        "d,,,,eight\n",
    )
    assert problems(path) == [
        f"{path} row 1: enhancePrompt must be true or false, not 'perhaps'",
        f"{path} row 2: sampleCount must be a whole number, not 'one'",
        f"{path} row 3: repeat must be a whole number, not '2.5'",
        f"{path} row 4: durationSeconds must be a whole number, not 'eight'",
    ]


def test_csv_unknown_and_duplicate_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "prompt,aspect_ratio,aspectRatio,promtp,colour\np,,,,\n")
    found = problems(path)
    assert found[:2] == [
        f"{path} header: column 'aspectRatio' appears twice",
        f"{path} header: unknown column 'promtp' (did you mean 'prompt'?)",
    ]
    assert found[2].startswith(f"{path} header: unknown column 'colour' (known: prompt, id, ")
    assert len(found) == 3


def test_csv_without_prompt_column(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "id,seed\na,1\n")
    assert one_problem(path) == f"{path} header: no 'prompt' column"


def test_csv_extra_cells_and_blank_rows_count(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "prompt,seed\n\nfirst,1\n,,\nsecond,2,oops\n")
    assert problems(path) == [f"{path} row 4: 3 cells but the header names 2 columns"]


def test_csv_reference_images_list(tmp_path: Path, images: Path) -> None:
    path = write(tmp_path / "c.csv", "prompt,referenceImages\np,img/red.png;img/blue.png\n")
    (spec,) = read_manifests([path]).specs
    assert [Path(r.path).name for r in spec.reference_images] == ["red.png", "blue.png"]


def test_yaml_duplicate_key_and_non_mapping_job(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.yaml",
        """
        jobs:
          - prompt: first
            prompt: second
          - just a string
        """,
    )
    assert problems(path) == [
        f"{path}:2: 'prompt' is written twice",
        f"{path}:4: a job must be a mapping with at least 'prompt:'",
    ]


def test_defaults_problems_are_located_at_their_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.yaml",
        """
        defaults:
          model: veo-9
          durationSeconds: 7
          colour: red
          budget: 12.5
        jobs:
          - prompt: p
        """,
    )
    assert problems(path) == [
        f"{path}:2: defaults: unknown model 'veo-9'; known models: {ALL_MODELS}",
        f"{path}:3: defaults: durationSeconds must be 4, 6 or 8, not 7",
        f"{path}:4: defaults: unknown key 'colour' (known: {', '.join(manifest.DEFAULT_KEYS)})",
    ]


def test_defaults_budget_is_accepted_but_must_be_an_amount(tmp_path: Path) -> None:
    ok = write(tmp_path / "ok.yaml", "defaults: {budget: 20}\njobs: [{prompt: p}]\n")
    assert len(read_manifests([ok]).specs) == 1
    bad = write(tmp_path / "bad.yaml", "defaults:\n  budget: lots\njobs: [{prompt: p}]\n")
    assert one_problem(bad) == f"{bad}:2: defaults: budget must be an amount in USD, not 'lots'"


def test_top_level_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "defaults: {}\njob:\n  - prompt: p\n")
    assert problems(path) == [
        f"{path}:2: unknown key 'job' (did you mean 'jobs'?)",
        f"{path}: no jobs: add a 'jobs:' list",
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.txt", "prompt\np\n", "not a manifest: use a .yaml, .yml or .csv file"),
        ("m.yaml", "", "empty manifest: no jobs"),
        ("m.yaml", "jobs: []\n", "empty manifest: no jobs"),
        ("m.csv", "prompt\n", "empty manifest: no jobs"),
        ("m.csv", "prompt,seed\n,\n\n", "empty manifest: no jobs"),
        ("m.csv", "\ufeff  \r\n", "empty manifest: no jobs"),
        ("m.yaml", "just text\n", "expected a mapping with 'jobs:' or a list of jobs"),
        ("m.yaml", "jobs: {prompt: p}\n", None),
    ],
)
def test_file_level_problems(tmp_path: Path, name: str, content: str, message: str | None) -> None:
    path = write(tmp_path / name, content.encode())
    if message is None:
        assert one_problem(path) == f"{path}:1: 'jobs' must be a list"
    else:
        assert one_problem(path) == f"{path}: {message}"


def test_missing_file_folder_and_not_utf8(tmp_path: Path) -> None:
    latin = write(tmp_path / "latin.csv", "prompt\ncaf\xe9 au lait\n".encode("latin-1"))
    (tmp_path / "dir.yaml").mkdir()
    assert problems([tmp_path / "nope.csv", tmp_path / "dir.yaml", latin]) == [
        f"{tmp_path / 'nope.csv'}: file not found",
        f"{tmp_path / 'dir.yaml'}: is a folder, not a manifest file",
        f"{latin}:2: not UTF-8 text; save it as UTF-8",
    ]


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "jobs:\n  - prompt: ok\n  - prompt: [unclosed\n")
    msg = one_problem(path)
    assert msg.startswith(f"{path}:4: not valid YAML: ")


def test_yaml_refuses_python_tags(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "- prompt: !!python/object/apply:os.system [echo hi]\n")
    assert one_problem(path).startswith(f"{path}:1: not valid YAML: could not determine")


def test_image_over_the_size_cap(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_files, "MAX_IMAGE_BYTES", 2**20)
    write(images / "big.png", png().ljust(3 * 2**19, b"\x00"))
    path = write(tmp_path / "m.yaml", "- {prompt: p, image: img/big.png}\n")
    assert one_problem(path) == (
        f"{path}:1: image img/big.png is 1.5 MB; images must be at most 1 MB"
    )
    assert image_files.MAX_IMAGE_BYTES == 2**20


def test_each_image_is_hashed_once(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = image_files.hash_image

    def counting(path: Path) -> ImageRef | str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(image_files, "hash_image", counting)
    rows = "".join(f"shot {i},img/red.png,./img/../img/red.png\n" for i in range(50))
    path = write(tmp_path / "m.csv", "prompt,image,lastFrame\n" + rows)
    specs = read_manifests([path]).specs
    assert len(specs) == 50 and calls == [(images / "red.png").resolve()]


def test_output_names_must_not_collide(tmp_path: Path) -> None:
    path = write(
        tmp_path / "o.yaml",
        """
        - {prompt: a, output: intro}
        - {prompt: b, output: intro, id: b}
        """,
    )
    assert one_problem(path) == (
        f"{path}:2, job b: output 'intro' is also used by {path}:1: "
        "one video would replace the other"
    )


def test_problem_str_formats() -> None:
    assert str(Problem("a.yaml:3", "x", "bad")) == "a.yaml:3, job x: bad"
    assert str(Problem("a.csv row 2", None, "bad")) == "a.csv row 2: bad"


# --- bench helper and speed ------------------------------------------------------------------


def test_bench_generators_make_loadable_manifests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.gen_manifest import write_csv, write_images, write_yaml

    imgs = write_images(tmp_path / "pics", 3)
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in imgs}) == 3
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in imgs)
    text = read_manifests([write_csv(tmp_path / "t.csv", 20)]).specs
    with_images = read_manifests([write_yaml(tmp_path / "i.yaml", 7, images=imgs)]).specs
    assert len(text) == 20 and len({s.id for s in text}) == 20
    assert [Path(s.image.path).name for s in with_images if s.image] == [
        p.name for p in (imgs * 3)[:7]
    ]
    assert len(read_manifests([write_csv(tmp_path / "c.csv", 5, images=imgs)]).specs) == 5
    assert len(read_manifests([write_yaml(tmp_path / "y.yaml", 5)]).specs) == 5


def test_yaml_anchors_and_merge_keys_are_not_duplicate_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.yaml",
        """
        jobs:
          - &base {prompt: a harbour, durationSeconds: 6, id: one}
          - <<: *base
            id: two
            prompt: a harbour at night
        """,
    )
    one, two = read_manifests([path]).specs
    assert (two.id, two.prompt, two.params["durationSeconds"]) == ("two", "a harbour at night", 6)
    assert two.source == f"{path}:3" and one.source == f"{path}:2"


def test_csv_empty_header_cells_are_ignored_while_empty(tmp_path: Path) -> None:
    ok = write(tmp_path / "ok.csv", "prompt,,\r\na,,\r\n")
    assert [s.prompt for s in read_manifests([ok]).specs] == ["a"]
    bad = write(tmp_path / "bad.csv", "prompt,\na,stray\n")
    assert one_problem(bad) == f"{bad} row 1: a value in a column whose header is empty"


def test_image_path_with_nul_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", '- {prompt: p, image: "a\\0b.png"}\n')
    assert one_problem(path).startswith(f"{path}:1: image 'a\\x00b.png' is not a usable path (")


def test_csv_rows_are_records_not_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", 'prompt,seed\n"two\nlines",1\nthree,x\n')
    assert one_problem(path) == f"{path} row 2: seed must be a whole number, not 'x'"


def test_csv_video_column_extends_a_video(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", f"prompt,video\nkeep going,{URI}\n")
    (spec,) = read_manifests([path]).specs
    assert spec.video_uri == URI and spec.image is None


def test_defaults_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "d.yaml", "defaults:\n  - 16:9\njobs:\n  - prompt: p\n")
    assert one_problem(path) == f"{path}:2: 'defaults' must be a mapping"


def test_a_hash_carried_from_loading_equals_the_recomputed_one(tmp_path: Path) -> None:
    import dataclasses

    (tmp_path / "m.yaml").write_text(
        "defaults: {aspectRatio: '9:16'}\njobs:\n  - prompt: a\n  - prompt: b\n    seed: 3\n"
        "  - prompt: c\n    output: 'x/{id}'\n  - prompt: d\n    repeat: 2\n"
    )
    specs = read_manifests([tmp_path / "m.yaml"]).specs
    assert any(s.known_hash for s in specs)
    for spec in specs:
        recomputed = dataclasses.replace(spec, known_hash=None).spec_hash()
        assert spec.spec_hash() == recomputed


def test_rows_alike_make_the_specs_the_whole_checks_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text job's shape is checked once per file (``job.Shapes``); the specs are those of
    checking every row the whole way, field for field."""
    from batchveo.manifest import job

    rows = ["prompt,aspect_ratio,durationSeconds,id,output,model"]
    rows += [f"take {i},16:9,8,,,veo-3.1-fast-generate-preview" for i in range(3)]
    rows += ["named,9:16,6,my-id,,", "out,16:9,8,,{batch}/{id},", "  spaced  ,16:9,8,,,"]
    csv_path = write(tmp_path / "a.csv", "\n".join(rows) + "\n")
    yaml_path = write(
        tmp_path / "b.yaml",
        "defaults: {aspectRatio: '9:16', output: 'y/{id}'}\njobs:\n"
        "  - prompt: one\n  - prompt: two\n    seed: 4\n  - {prompt: three, id: 7}\n",
    )
    fast = read_manifests([csv_path, yaml_path]).specs
    monkeypatch.setattr(job.Shapes, "spec", lambda *a, **k: None)  # every row the whole way
    whole = read_manifests([csv_path, yaml_path]).specs
    assert [vars(s) for s in fast] == [vars(s) for s in whole] and len(fast) == 9


def test_rows_alike_still_report_each_rows_own_problems(tmp_path: Path) -> None:
    """After a valid row of a shape, a row of it with a bad prompt or id is reported; a shape
    with a problem is reported at every row of it; a value equal to a valid one but of
    another type (8.0 for 8) is not taken for it."""
    write(
        tmp_path / "m.yaml",
        "- {prompt: fine, durationSeconds: 8}\n"
        "- {prompt: '', durationSeconds: 8}\n"
        "- {prompt: ok, id: 'a/b', durationSeconds: 8}\n"
        "- {prompt: float, durationSeconds: 8.0}\n"
        "- {prompt: hd, resolution: 1080p, durationSeconds: 4}\n"
        "- {prompt: hd again, resolution: 1080p, durationSeconds: 4}\n"
        "- {prompt: audio, generateAudio: true}\n"
        "- {prompt: audio one, generateAudio: 1}\n",
    )
    with pytest.raises(ManifestError) as e:
        read_manifests([tmp_path / "m.yaml"])
    lines = [str(p) for p in e.value.problems]
    assert [line.split(":")[1].split(",")[0] for line in lines] == [str(n) for n in range(2, 9)]
    assert "prompt is empty" in lines[0] and "must not be '.' or '..'" in lines[1]
    assert "durationSeconds must be a whole number, not 8.0" in lines[2]
    assert all("durationSeconds must be 8 for resolution 1080p" in s for s in lines[3:5])
    assert all("provider gptproto does not take it" in s for s in lines[5:])


def test_a_yaml_job_built_alone_reports_what_building_the_whole_file_did(tmp_path: Path) -> None:
    """Without anchors, aliases or tags a document is composed job by job (``yamlstream``:
    its whole tree is never in memory); a job that cannot be built is the same one line as
    reading the whole way gives, at its line, and the whole load is refused."""
    write(tmp_path / "m.yaml", "- prompt: a\n- {prompt: b, referenceImages: [{[x]: y}]}\n")
    with pytest.raises(ManifestError) as e:
        read_manifests([tmp_path / "m.yaml"])
    assert [str(p) for p in e.value.problems] == [
        f"{tmp_path / 'm.yaml'}:2: not valid YAML: found unhashable key"
    ]
    write(tmp_path / "ok.yaml", "defaults: {seed: 3}\njobs:\n  - prompt: a\n  - prompt: b\n")
    specs = read_manifests([tmp_path / "ok.yaml"]).specs
    assert [(s.prompt, s.params["seed"]) for s in specs] == [("a", 3), ("b", 3)]


def test_rows_that_all_differ_keep_no_shape_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seed per row makes every row a shape of its own: past ``MAX_SHAPES`` a file keeps
    no more of them (memory stays flat), and those rows are checked the whole way."""
    from batchveo.manifest import job

    monkeypatch.setattr(job, "MAX_SHAPES", 2)
    kept: list[int] = []
    real_spec = job.Shapes.spec

    def spec(self: job.Shapes, *a: Any, **k: Any) -> JobSpec | None:
        made = real_spec(self, *a, **k)
        kept.append(len(self._known))
        return made

    monkeypatch.setattr(job.Shapes, "spec", spec)
    rows = "prompt,seed\n" + "".join(f"take {i},{i}\n" for i in range(6))
    specs = read_manifests([write(tmp_path / "m.csv", rows)]).specs
    assert [s.params["seed"] for s in specs] == list(range(6)) and max(kept) == 2


STREAMED_DOCUMENTS = [
    "defaults:\n  aspectRatio: '9:16'\njobs:\n  - prompt: a\n  - prompt: b\n    seed: 4\n",
    "- prompt: a\n- {prompt: b, referenceImages: [x.png, y.png]}\n- just text\n",
    "jobs:\n- prompt: a\n  prompt: again\n- prompt: b\n  <<: {seed: 2}\nextra: 1\n",
    "jobs: []\n",
    "jobs: {prompt: not a list}\n",
    "defaults: {model: veo}\nnotes: |\n  - prompt: not a job\n"
    "jobs:\n  - prompt: |\n      two\n      lines\n",
    "# only a comment\n",
    "just a scalar\n",
]


@pytest.mark.parametrize("text", STREAMED_DOCUMENTS)
def test_a_document_composed_job_by_job_is_the_whole_documents(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``yamlstream`` (no anchor, alias or tag: each job's node built alone, the tree never
    held) gives the values, lines and keys written twice that reading the whole way does."""
    from batchveo.manifest import yamlfile

    streamed = yamlfile._streamed(text)
    assert streamed is not None  # taken, not handed to the whole way
    monkeypatch.setattr(yamlfile, "_streamed", lambda text: None)
    whole = yamlfile._parse("m.yaml", text)
    assert vars(streamed) == vars(whole)
