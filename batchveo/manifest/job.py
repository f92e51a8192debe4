"""One job of a manifest, in four steps: fields -> inputs -> rules -> variants.

Each step adds what is wrong to the job's list of problems and goes on, so a row's every
problem is reported at once; only a job without problems becomes specs.

Identity: a job's id is its ``id`` if given, else ``"j"`` + the first 16 hex digits of the
``spec_hash`` of its content (prompt, model, parameters, the images' sha256, video URI,
unrendered output template). Ids are therefore stable across loads, survive moving or
renaming an image, and change when an image's bytes change.

The job's route (provider, and for Vertex its project, region and bucket) is its file's
``defaults:`` over the loading command's (``routing``); the provider decides which model
ids and parameters the job may use (``rules.provider_problems``), and the model of a job
that names none (``veo-3.1-generate-preview`` on the Gemini-format providers, as before;
``veo-3.1-generate-001`` on Vertex). The route is stored with the job, not hashed.

``repeat: N`` (N >= 1) makes N variants with ids ``ID-1`` .. ``ID-N``; the suffix is added
even for N = 1, so raising N later keeps the existing ids. If the job sets ``seed``, variant
i gets ``seed + i - 1`` so the variants differ. An output template without ``{id}`` gets the
same ``-i`` suffix so variants do not overwrite each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchveo import models
from batchveo.manifest import fields
from batchveo.manifest.fields import COERCE, MAX_ID_CHARS, MAX_SEED, Bad
from batchveo.manifest.images import ImageFiles
from batchveo.manifest.rows import Defaults
from batchveo.manifest.rules import (
    TEXT_ONLY,
    Uses,
    combination_problems,
    model_problem,
    provider_problems,
)
from batchveo.manifest.show import show
from batchveo.routes import Route
from batchveo.spec import ImageRef, JobSpec, TextHasher, content_hash, text_hasher

# --- 1. fields ----------------------------------------------------------------------------


@dataclass(slots=True)
class Fields:
    """A job's own values, over its file's defaults; each one valid (or left at the default
    when its value was not, with the problem reported)."""

    job_id: str | None
    """As given; None for an id made from the content (in ``variants``)."""
    prompt: str
    model: str | None
    """None until ``route_problems`` gives a job that names none its provider's default."""
    params: dict[str, Any]
    output: str | None
    """The output template, unrendered."""
    repeat: int | None


_SET_BY_FIELD = frozenset({*COERCE, "model", "output", "repeat"})


def parse_fields(raw: Mapping[str, Any], d: Defaults, bad: list[str]) -> Fields:
    job_id = None
    if raw.get("id") is not None:
        try:
            job_id = fields.job_id(raw["id"])
        except Bad as e:
            bad.append(str(e))
    try:
        prompt = fields.prompt(raw.get("prompt"))
    except Bad as e:
        bad.append(str(e))
        prompt = ""
    f = Fields(job_id, prompt, d.model, dict(d.params), d.output, None)
    for key, v in raw.items():
        if v is not None and key in _SET_BY_FIELD:
            try:
                _set(f, key, v)
            except Bad as e:
                bad.append(str(e))
    return f


def _set(f: Fields, key: str, v: object) -> None:
    if key == "model":
        f.model = fields.model(v)
    elif key == "output":
        f.output = fields.template(v)
    elif key == "repeat":
        f.repeat = fields.repeat(v)
    elif (value := COERCE[key](v)) is None:  # e.g. an empty negativePrompt: not set
        f.params.pop(key, None)
    else:
        f.params[key] = value


# --- 2. inputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inputs:
    """The images (checked and hashed) and the video a job starts from."""

    uses: Uses
    image: ImageRef | None = None
    last_frame: ImageRef | None = None
    reference_images: tuple[ImageRef, ...] = ()
    video_uri: str | None = None


NO_INPUTS = Inputs(TEXT_ONLY)
"""A text-to-video job's (one object, shared by every such row)."""


def parse_inputs(raw: Mapping[str, Any], images: ImageFiles, base: Path, bad: list[str]) -> Inputs:
    """The job's inputs; image paths are relative to ``base``, the manifest's folder."""
    image, last, refs, video = (
        raw.get("image"),
        raw.get("lastFrame"),
        raw.get("referenceImages"),
        raw.get("video"),
    )
    if image in (None, "") and last in (None, "") and refs is None and video is None:
        return NO_INPUTS
    uses = Uses(image not in (None, ""), last not in (None, ""), bool(refs), video is not None)
    return Inputs(
        uses,
        images.ref(image, "image", base, bad) if uses.image else None,
        images.ref(last, "lastFrame", base, bad) if uses.last_frame else None,
        _reference_images(refs, images, base, bad),
        None if video is None else _video_uri(video, bad),
    )


def _reference_images(
    v: object, images: ImageFiles, base: Path, bad: list[str]
) -> tuple[ImageRef, ...]:
    if v is not None and not isinstance(v, list):
        bad.append("referenceImages must be a list of image paths")
    elif v and len(v) > models.MAX_REFERENCE_IMAGES:
        bad.append(f"at most {models.MAX_REFERENCE_IMAGES} referenceImages, got {len(v)}")
    elif v:
        refs = [images.ref(p, f"referenceImages[{i}]", base, bad) for i, p in enumerate(v, 1)]
        return tuple(r for r in refs if r)
    return ()


def _video_uri(v: object, bad: list[str]) -> str | None:
    """The URI of the video to extend: Veo's own, so http(s) (the Gemini format's) or
    ``gs://`` (Vertex's; which one the provider takes is a route rule)."""
    if isinstance(v, str) and v.strip().startswith("gs://"):
        parts = fields.split_gcs(v.strip())
        if parts is None or not parts[1] or parts[1].endswith("/"):
            bad.append(f"video {show(v)} is not a Cloud Storage object (gs://BUCKET/NAME.mp4)")
            return None
        return v.strip()
    try:
        u = urlsplit(v.strip()) if isinstance(v, str) else None
    except ValueError:  # what urllib cannot split at all ("http://[oops")
        u = None
    if u is None or u.scheme.lower() not in ("http", "https") or not u.netloc:
        bad.append(f"video must be the http(s) URI of a previous Veo video, not {show(v)}")
        return None
    return str(v).strip()


def cloud_inputs(inputs: Inputs) -> list[str]:
    """The job's Cloud Storage images, as a message names them."""
    refs = [("image", inputs.image), ("lastFrame", inputs.last_frame)]
    refs += [(f"referenceImages[{i}]", r) for i, r in enumerate(inputs.reference_images, 1)]
    return [f"{what} {show(r.gcs_uri)}" for what, r in refs if r is not None and r.gcs_uri]


# --- 3. rules -----------------------------------------------------------------------------


def route_problems(f: Fields, inputs: Inputs, provider: models.ProviderModels) -> list[str]:
    """What the job's provider would refuse; a job that names no model gets the provider's
    default one here."""
    if f.model is None:
        f.model = provider.default_model
    bad = [] if (problem := model_problem(provider, f.model)) is None else [problem]
    if inputs is NO_INPUTS and "generateAudio" not in f.params and "sampleCount" not in f.params:
        return bad  # the common text-to-video job: only the model can be wrong
    return bad + provider_problems(provider, f.params, cloud_inputs(inputs), inputs.video_uri)


def rule_problems(f: Fields, inputs: Inputs) -> list[str]:
    """The API's cross-field rules, and what ``repeat`` would push out of bounds."""
    assert f.model is not None, "route_problems gives every job its model first"
    bad = combination_problems(f.model, f.params, inputs.uses)
    if f.repeat and (seed := f.params.get("seed")) is not None and seed + f.repeat - 1 > MAX_SEED:
        bad.append(f"seed + repeat - 1 must stay at most {MAX_SEED}")
    if f.job_id and f.repeat and len(f"{f.job_id}-{f.repeat}") > MAX_ID_CHARS:
        bad.append(f"id {f.job_id}-{f.repeat} would be over {MAX_ID_CHARS} characters")
    return bad


# --- 4. variants --------------------------------------------------------------------------


def variants(
    f: Fields, inputs: Inputs, batch: str, where: str, route: Route | None = None
) -> list[JobSpec]:
    """The job's spec, or its ``repeat`` variants; ``where`` is the row, for messages."""
    assert f.model is not None, "route_problems gives every job its model first"
    job_id, known_hash = f.job_id, None
    if job_id is None:
        digest = content_hash(
            f.prompt,
            f.model,
            f.params,
            inputs.image,
            inputs.last_frame,
            inputs.reference_images,
            inputs.video_uri,
            f.output,
        )
        job_id = "j" + digest[:16]
        if f.output is None:  # then the spec below hashes to exactly this
            known_hash = digest
    if f.repeat is None:
        return [_spec(f, inputs, job_id, f.params, batch, None, where, known_hash, route)]
    seed = f.params.get("seed")
    return [
        _spec(
            f,
            inputs,
            f"{job_id}-{i}",
            dict(f.params) if seed is None else {**f.params, "seed": seed + i - 1},
            batch,
            i,
            where,
            None,
            route,
        )
        for i in range(1, f.repeat + 1)
    ]


# --- the rows alike: a text job's shape checked once ------------------------------------

_PER_ROW = frozenset({"prompt", "id"})
_SHAPE_KEYS = frozenset({*_PER_ROW, *COERCE, "model", "output"})
"""The keys of a job the shapes may hold: a text job's (no inputs, no ``repeat``)."""


MAX_SHAPES = 1024
"""Shapes kept per file: a manifest whose rows all differ (a seed each) must not keep one
per row; past this many, a row of a new shape goes the whole way."""


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the rows of one shape share: valid fields, and their hash but for the prompt."""

    model: str
    params: dict[str, Any]
    output: str | None
    hash_of: TextHasher


class Shapes:
    """A file's text jobs by shape: the values of every key but ``prompt`` and ``id``.

    A 100k-row CSV has a handful of shapes (its ``aspect_ratio`` and ``durationSeconds``
    columns), and a shape's checks (fields, the route's, the API's rules) give the same
    answer for every row of it: they are made once per shape, on its first row, and each
    row checks only its prompt and id. A shape with a problem, a row with inputs or
    ``repeat``, or a value that cannot be a key (a YAML list), goes the whole way
    (``parse_fields`` ... ``variants``), which reports every problem in order. One
    ``Shapes`` per file: the shapes hold its defaults and its route.
    """

    def __init__(self, defaults: Defaults, provider: models.ProviderModels) -> None:
        self.defaults = defaults
        self._provider = provider
        self._known: dict[tuple[Any, ...], _Shape | None] = {}

    def spec(
        self, raw: Mapping[str, Any], batch: str, where: str, route: Route | None
    ) -> JobSpec | None:
        """The row's spec, if its shape is valid and so are its prompt and id; None: check
        the row the whole way."""
        if not raw.keys() <= _SHAPE_KEYS:
            return None
        key = tuple([(k, v.__class__, v) for k, v in raw.items() if k not in _PER_ROW])
        try:
            shape = self._known[key]
        except KeyError:
            if len(self._known) >= MAX_SHAPES:
                return None  # a seed per row, say: no two rows alike to share the checks
            shape = self._known[key] = self._shape(raw)
        except TypeError:  # an unhashable value
            return None
        if shape is None:
            return None
        try:
            prompt = fields.prompt(raw.get("prompt"))
            job_id = None if (given := raw.get("id")) is None else fields.job_id(given)
        except Bad:
            return None
        known_hash = None
        if job_id is None:
            digest = shape.hash_of(prompt)
            job_id = "j" + digest[:16]
            if shape.output is None:
                known_hash = digest
        return JobSpec.made(
            job_id,
            batch,
            prompt,
            shape.model,
            dict(shape.params),
            None,
            None,
            (),
            None,
            None if shape.output is None else render(shape.output, job_id, batch, None),
            where,
            known_hash,
            route,
        )

    def _shape(self, raw: Mapping[str, Any]) -> _Shape | None:
        """The shape's checks on a stand-in prompt (None: a problem, the row's own)."""
        bad: list[str] = []
        probe = {k: v for k, v in raw.items() if k not in _PER_ROW} | {"prompt": "x"}
        f = parse_fields(probe, self.defaults, bad)
        bad += route_problems(f, NO_INPUTS, self._provider)
        bad += rule_problems(f, NO_INPUTS)
        if bad or f.model is None:
            return None
        return _Shape(f.model, f.params, f.output, text_hasher(f.model, f.params, f.output))


def _spec(
    f: Fields,
    inputs: Inputs,
    job_id: str,
    params: dict[str, Any],
    batch: str,
    variant: int | None,
    where: str,
    known_hash: str | None,
    route: Route | None,
) -> JobSpec:
    assert f.model is not None
    return JobSpec.made(
        job_id,
        batch,
        f.prompt,
        f.model,
        params,
        inputs.image,
        inputs.last_frame,
        inputs.reference_images,
        inputs.video_uri,
        None if f.output is None else render(f.output, job_id, batch, variant),
        where,
        known_hash,
        route,
    )


def render(template: str, job_id: str, batch: str, variant: int | None) -> str:
    """An output template filled in; a variant's gets ``-i`` if it does not name ``{id}``."""
    out = template.replace("{id}", job_id).replace("{batch}", batch)
    return out if variant is None or "{id}" in template else f"{out}-{variant}"
