"""What one job asks for: the validated, normalised form of a manifest row.

A ``JobSpec`` is what the manifest loader produces, what the store keeps, and
what the client turns into a ``predictLongRunning`` body. Images are kept as
references (path + sha256 + mime type), never as bytes: a 100k-row manifest
must not copy gigabytes into SQLite or into memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from batchveo.models import estimate_params_cost_usd

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_json_str = json.encoder.encode_basestring_ascii


@lru_cache(maxsize=4096)
def _params_json_of(items: tuple[tuple[str, Any], ...]) -> str:
    return _ENCODER.encode(dict(items))


def params_json(params: Mapping[str, Any]) -> str:
    """Canonical JSON of a job's parameters; a batch shares a handful, so it is cached."""
    try:
        return _params_json_of(tuple(sorted(params.items())))
    except TypeError:  # an unhashable value: encode it directly
        return _ENCODER.encode(dict(params))


def content_hash(
    prompt: str,
    model: str,
    params_json_text: str,
    image_sha256: str | None,
    last_frame_sha256: str | None,
    reference_sha256s: Sequence[str],
    video: str | None,
    output: str | None,
) -> str:
    """sha256 of what makes two jobs the same request: content, not paths or names.

    The blob is byte for byte ``json.dumps(content_key(), sort_keys=True,
    separators=(",", ":"))``, built by hand: ``json.dumps`` per job was most of
    the time of loading a 100k-row manifest.
    """
    blob = (
        f'{{"image":{_json_str(image_sha256) if image_sha256 else "null"},'
        f'"lastFrame":{_json_str(last_frame_sha256) if last_frame_sha256 else "null"},'
        f'"model":{_json_str(model)},'
        f'"output":{"null" if output is None else _json_str(output)},'
        f'"params":{params_json_text},'
        f'"prompt":{_json_str(prompt)},'
        f'"referenceImages":[{",".join(_json_str(r) for r in reference_sha256s)}],'
        f'"video":{"null" if video is None else _json_str(video)}}}'
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class ImageRef:
    path: str
    """Absolute path, resolved against the manifest's folder at load time."""
    sha256: str
    mime_type: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256, "mimeType": self.mime_type}

    @classmethod
    def from_json(cls, d: dict[str, str]) -> ImageRef:
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
    """``spec_hash()`` when the loader already computed it (auto ids): hashing 100k jobs twice
    was a sixth of a load."""

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
        return estimate_params_cost_usd(self.model, self.params)

    def content_key(self) -> dict[str, Any]:
        """What makes two jobs the same request: content, not paths or names."""
        return {
            "prompt": self.prompt,
            "model": self.model,
            "params": self.params,
            "image": self.image.sha256 if self.image else None,
            "lastFrame": self.last_frame.sha256 if self.last_frame else None,
            "referenceImages": [r.sha256 for r in self.reference_images],
            "video": self.video_uri,
            "output": self.output_name,
        }

    def spec_hash(self) -> str:
        if self.known_hash is not None:
            return self.known_hash
        return content_hash(
            self.prompt,
            self.model,
            params_json(self.params),
            self.image.sha256 if self.image else None,
            self.last_frame.sha256 if self.last_frame else None,
            [r.sha256 for r in self.reference_images],
            self.video_uri,
            self.output_name,
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
            source=source,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
