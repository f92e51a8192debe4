"""What one job asks for: the validated, normalised form of a manifest row.

A ``JobSpec`` is what the manifest loader produces, what the store keeps, and
what the client turns into a ``predictLongRunning`` body. Images are kept as
references (path + sha256 + mime type), never as bytes: a 100k-row manifest
must not copy gigabytes into SQLite or into memory. A Vertex job may name a Cloud
Storage image instead (``gs://``): there is no file to hash, the service reads it, and
the URI itself is its part of the job's identity.

The route (``routes.Route``: provider, project, region, bucket) says where a job is
sent, not what it asks for, so it is not part of the identity: the same request sent
another way makes the same video, and a reload with another ``--project`` must not make
(and pay for) every job again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from batchveo.models import billed_params, estimate_params_cost_usd
from batchveo.routes import Route

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_json_str = json.encoder.encode_basestring_ascii


@lru_cache(maxsize=4096)
def _params_json_of(items: tuple[tuple[str, Any], ...]) -> str:
    return _ENCODER.encode(dict(items))


def params_json(params: Mapping[str, Any]) -> str:
    """Canonical JSON of a job's parameters (keys sorted), the one used in ``content_hash``
    and stored in the database. A batch shares a handful, so it is cached; the key is the
    items in their given order (the encoder sorts them), which the rows of one manifest
    share, so a hit costs no sort."""
    try:
        return _params_json_of(tuple(params.items()))
    except TypeError:  # an unhashable value: encode it directly
        return _ENCODER.encode(dict(params))


def content_hash(
    prompt: str,
    model: str,
    params: Mapping[str, Any],
    image: ImageRef | None,
    last_frame: ImageRef | None,
    reference_images: Sequence[ImageRef],
    video_uri: str | None,
    output_name: str | None,
    extends: str | None = None,
) -> str:
    """``JobSpec.spec_hash()`` of these fields (``JobSpec``'s own, in its order), for the
    loader, which needs the hash to name a job before the job exists.

    The blob is byte for byte ``json.dumps(JobSpec.content_key(), sort_keys=True,
    separators=(",", ":"))``, built by hand: ``json.dumps`` per job would be most of the time
    of loading a 100k-row manifest. ``tests/test_spec.py`` holds the two equal and pins the
    values: a changed hash changes every auto id, and a reloaded manifest would be paid again.
    A hop of a scene chain (``extends``) has its parent's id in its identity (the key
    ``extends``, absent from every other job's, whose hash is therefore unchanged).
    """
    refs = ",".join([_json_str(r.identity) for r in reference_images]) if reference_images else ""
    hop = "" if extends is None else f'"extends":{_json_str(extends)},'
    blob = (
        f'{{{hop}"image":{"null" if image is None else _json_str(image.identity)},'
        f'"lastFrame":{"null" if last_frame is None else _json_str(last_frame.identity)},'
        f'"model":{_json_str(model)},'
        f'"output":{"null" if output_name is None else _json_str(output_name)},'
        f'"params":{params_json(params)},'
        f'"prompt":{_json_str(prompt)},'
        f'"referenceImages":[{refs}],'
        f'"video":{"null" if video_uri is None else _json_str(video_uri)}}}'
    )
    return hashlib.sha256(blob.encode()).hexdigest()


TextHasher = Callable[[str], str]
"""A text-only job's ``content_hash`` from its prompt (``text_hasher``)."""


def text_hasher(model: str, params: Mapping[str, Any], output_name: str | None) -> TextHasher:
    """``content_hash`` of a text-only job (no image, frame, reference or video) of this
    model, parameters and output, as a function of its prompt: what is the same for every
    such job of a manifest's shape is put into the blob once (``tests/test_spec.py`` holds
    the two equal)."""
    head = (
        '{"image":null,"lastFrame":null,'
        f'"model":{_json_str(model)},'
        f'"output":{"null" if output_name is None else _json_str(output_name)},'
        f'"params":{params_json(params)},'
        '"prompt":'
    )
    tail = ',"referenceImages":[],"video":null}'
    sha256 = hashlib.sha256

    def hash_of(prompt: str) -> str:
        return sha256(f"{head}{_json_str(prompt)}{tail}".encode()).hexdigest()

    return hash_of


def take_hash(spec_hash: str, take: int) -> str:
    """The identity of take ``take`` (2, 3, ...) of the job whose hash is ``spec_hash``: the
    same request made again (a retake, ``store.takes``), so not the same job to a load.
    Derived from the original's, never changing it: every job loaded before keeps its hash.
    """
    return hashlib.sha256(f"{spec_hash}~take{take}".encode()).hexdigest()


@dataclass(frozen=True)
class ImageRef:
    """An image a job gives: a local file (``path`` + ``sha256``), or, on Vertex, a Cloud
    Storage object (``gcs_uri``, made with ``ImageRef.cloud``; ``path`` and ``sha256`` are
    empty then: there is no file here to read or hash)."""

    path: str
    """Absolute path, resolved against the manifest's folder at load time."""
    sha256: str
    mime_type: str
    gcs_uri: str | None = None
    """``gs://bucket/object``: sent as ``{"gcsUri": ..., "mimeType": ...}``, read by Vertex."""

    @classmethod
    def cloud(cls, gcs_uri: str, mime_type: str) -> ImageRef:
        """A Cloud Storage image (its type from its name: nothing here reads it)."""
        return cls(path="", sha256="", mime_type=mime_type, gcs_uri=gcs_uri)

    @property
    def identity(self) -> str:
        """What the job's identity holds of this image: its bytes' sha256, or the URI of a
        Cloud Storage image (never a 64-hex-digit string, so never taken for a hash)."""
        return self.sha256 if self.gcs_uri is None else self.gcs_uri

    def to_json(self) -> dict[str, str]:
        if self.gcs_uri is not None:
            return {"gcsUri": self.gcs_uri, "mimeType": self.mime_type}
        return {"path": self.path, "sha256": self.sha256, "mimeType": self.mime_type}

    @classmethod
    def from_json(cls, d: dict[str, str]) -> ImageRef:
        if "gcsUri" in d:
            return cls.cloud(d["gcsUri"], d["mimeType"])
        return cls(path=d["path"], sha256=d["sha256"], mime_type=d["mimeType"])


@dataclass(frozen=True)
class JobSpec:
    id: str
    batch: str
    prompt: str
    model: str
    params: dict[str, Any]
    """API ``parameters`` with API names; ``durationSeconds`` is an int here."""
    image: ImageRef | None = None
    last_frame: ImageRef | None = None
    reference_images: tuple[ImageRef, ...] = ()
    video_uri: str | None = None
    output_name: str | None = None
    """File stem for the video(s); defaults to the job id."""
    source: str = field(default="", compare=False)
    """Where the job was defined ("jobs.yaml:12"), for messages only."""
    known_hash: str | None = field(default=None, compare=False, repr=False)
    """``spec_hash()`` when the loader already computed it (auto ids), so a job is hashed once
    per load: hashing is a large part of loading 100k jobs."""
    route: Route | None = None
    """Where the job goes (None: the run's route, as for jobs loaded before routes)."""
    extends: str | None = None
    """A hop of a scene chain: the id of the job whose video it extends (``chains``)."""
    chain_root: str | None = None
    """The first job of the hop's chain (a chain's root names itself)."""
    hop: int | None = None
    """The hop's place in its chain: 1 for the root, 2 for the first extension, ..."""
    output_s: int | None = field(default=None, compare=False)
    """A hop's video length (the root's plus one extension per hop): what it costs."""

    @classmethod
    def made(
        cls,
        id: str,
        batch: str,
        prompt: str,
        model: str,
        params: dict[str, Any],
        image: ImageRef | None,
        last_frame: ImageRef | None,
        reference_images: tuple[ImageRef, ...],
        video_uri: str | None,
        output_name: str | None,
        source: str,
        known_hash: str | None,
        route: Route | None,
    ) -> JobSpec:
        """``JobSpec(...)`` of every field (a job, not a scene chain's hop), as the loader
        makes 100,000s: a frozen dataclass's
        ``__init__`` sets each field through ``object.__setattr__`` (2.8 us a spec, 2 s of a
        million-row load); this sets them in one go (0.6 us). It checks nothing, like the
        generated ``__init__``; ``tests/test_spec.py`` holds the two equal."""
        spec = object.__new__(cls)
        spec.__dict__.update(
            id=id,
            batch=batch,
            prompt=prompt,
            model=model,
            params=params,
            image=image,
            last_frame=last_frame,
            reference_images=reference_images,
            video_uri=video_uri,
            output_name=output_name,
            source=source,
            known_hash=known_hash,
            route=route,
            extends=None,  # a scene chain's hop is made by ``chaining``, the long way
            chain_root=None,
            hop=None,
            output_s=None,
        )
        return spec

    def inputs_json(self) -> dict[str, Any]:
        """The job's inputs as stored (paths and hashes, not bytes)."""
        out: dict[str, Any] = {}
        if self.image:
            out["image"] = self.image.to_json()
        if self.last_frame:
            out["lastFrame"] = self.last_frame.to_json()
        if self.reference_images:
            out["referenceImages"] = [r.to_json() for r in self.reference_images]
        if self.video_uri:
            out["video"] = {"uri": self.video_uri}
        return out

    @property
    def cost_usd(self) -> float:
        """What this job is estimated to cost at the price table's rates: stored with it
        (a run with ``--prices`` reprices the stored jobs)."""
        return estimate_params_cost_usd(self.model, billed_params(self.params, self.output_s))

    def content_key(self) -> dict[str, Any]:
        """What makes two jobs the same request: content, not paths or names.

        The readable definition of a job's identity: ``spec_hash()`` is the sha256 of this
        as canonical JSON (``content_hash`` builds that JSON by hand, for speed).
        """
        hop = {} if self.extends is None else {"extends": self.extends}
        return hop | {
            "prompt": self.prompt,
            "model": self.model,
            "params": self.params,
            "image": self.image.identity if self.image else None,
            "lastFrame": self.last_frame.identity if self.last_frame else None,
            "referenceImages": [r.identity for r in self.reference_images],
            "video": self.video_uri,
            "output": self.output_name,
        }

    def spec_hash(self) -> str:
        """sha256 of ``content_key()``: auto ids come from it, and a reload compares it."""
        if self.known_hash is not None:
            return self.known_hash
        return content_hash(
            self.prompt,
            self.model,
            self.params,
            self.image,
            self.last_frame,
            self.reference_images,
            self.video_uri,
            self.output_name,
            self.extends,
        )

    @classmethod
    def from_row(
        cls,
        *,
        id: str,
        batch: str,
        prompt: str,
        model: str,
        params: dict[str, Any],
        inputs: dict[str, Any],
        output_name: str | None,
        source: str = "",
        route: Route | None = None,
        extends: str | None = None,
        chain_root: str | None = None,
        hop: int | None = None,
    ) -> JobSpec:
        img = inputs.get("image")
        last = inputs.get("lastFrame")
        refs = inputs.get("referenceImages") or []
        video = inputs.get("video")
        return cls(
            id=id,
            batch=batch,
            prompt=prompt,
            model=model,
            params=params,
            image=ImageRef.from_json(img) if img else None,
            last_frame=ImageRef.from_json(last) if last else None,
            reference_images=tuple(ImageRef.from_json(r) for r in refs),
            video_uri=video["uri"] if video else None,
            output_name=output_name,
            route=route,
            source=source,
            extends=extends,
            chain_root=chain_root,
            hop=hop,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
