"""Scene chains in a manifest: ``extends: ID`` and the shorthand ``chain: [...]``.

A hop names the job whose video it extends (``extends``); a root may list its hops
instead (``chain``: each entry a prompt, or a mapping of the keys a hop may set), ids
``ID-2``, ``ID-3``, ... each extending the one before. A hop takes its root's model,
aspect ratio and resolution, says only what happens next (``chains.HOP_KEYS``) and is
checked against its route's extension limits here, at load (``chains.hop_problems``):
a chain that would break them is one line naming the hop where it breaks.

The parent of an ``extends`` must come earlier in the load (the same manifest or one
named before it), or be in the database already (the loader's ``parents``): the loader
keeps a ``Link`` of every job of the load a hop may name (``Links``), but only when one of
the load's manifests can hold an ``extends`` at all (``may_extend``: a CSV with that column,
a YAML file where the key appears): a million-row manifest with ids and no chain keeps no
entry a job (94 MB at 1M).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from batchveo import chains, models
from batchveo.manifest.job import parse_fields, render
from batchveo.manifest.opening import MAX_MANIFEST_BYTES, open_manifest
from batchveo.manifest.routing import FileRoute
from batchveo.manifest.rows import Defaults
from batchveo.manifest.show import show
from batchveo.routes import DEFAULT_PROVIDER
from batchveo.spec import JobSpec, content_hash

_ENTRY_KEYS = frozenset(chains.HOP_KEYS)
"""What an entry of ``chain:`` may hold."""
_OWN_KEYS = _ENTRY_KEYS | {"id", "extends"}
"""What a job with ``extends`` may hold."""


_EXTENDS_KEY = re.compile(rb"extends['\"]?[ \t]*:")
"""``extends`` as a YAML key (plain, quoted, in a flow mapping)."""
_SCAN_BLOCK_BYTES = 1 << 20


def may_extend(paths: Iterable[Path | str]) -> bool:
    """Whether any of these manifests can hold a job with ``extends``: a CSV whose header
    has that column, a YAML file in which ``extends:`` appears anywhere (in a prompt too:
    then a few jobs too many are noted, never one too few). A key written by escapes
    alone (``"\\x65xtends":``) is not seen: its hop is refused at load as extending a job
    that is not loaded, never taken for another kind of job."""
    return any(_may_extend(Path(p)) for p in paths)


def _may_extend(path: Path) -> bool:
    """Opened as the load opens it (``open_manifest``: a regular file only, never a FIFO
    or a device, at most ``MAX_MANIFEST_BYTES``); one it refuses gives no job."""
    opened = open_manifest(path)
    if isinstance(opened, str):
        return False
    fd, _ = opened
    try:
        if path.suffix.lower() == ".csv":
            with os.fdopen(os.dup(fd), "rb") as f:
                return b"extends" in f.readline(_SCAN_BLOCK_BYTES).lower()
        tail, total = b"", 0
        while total <= MAX_MANIFEST_BYTES and (block := os.read(fd, _SCAN_BLOCK_BYTES)):
            if _EXTENDS_KEY.search(tail + block):
                return True
            tail, total = block[-32:], total + len(block)
        return False
    except OSError:
        return False  # the load reports it, and reads no job from it
    finally:
        os.close(fd)


Shape = tuple[str, str, str, str, int, bool | None]
"""What a hop needs of a plain job: provider, model, aspect ratio, resolution, length,
audio."""


class Links:
    """Every job of the load a later hop may name: jobs with an id of their own, and the
    members of chains (an auto id is a content hash, named only once it is stored).

    A plain job is kept as its id and a shared ``Shape`` (a night has a handful), so a
    million-row manifest with ids costs a dict entry a job, not a ``Link``."""

    def __init__(self) -> None:
        self._links: dict[str, chains.Link] = {}
        self._plain: dict[str, Shape] = {}
        self._shapes: dict[Shape, Shape] = {}

    def get(self, job_id: str) -> chains.Link | None:
        if (shape := self._plain.get(job_id)) is not None:
            provider, model, aspect, resolution, length_s, audio = shape
            return chains.Link(
                job_id, provider, model, aspect, resolution, length_s, 1, job_id, audio
            )
        return self._links.get(job_id)

    def note(self, spec: JobSpec, provider: str) -> None:
        link = link_of(spec, provider)
        if spec.chain_root is not None:
            self._links[spec.id] = link
            return
        shape = (
            link.provider,
            link.model,
            link.aspect_ratio,
            link.resolution,
            link.output_s,
            link.generate_audio,
        )
        self._plain[spec.id] = self._shapes.setdefault(shape, shape)


def link_of(spec: JobSpec, provider: str) -> chains.Link:
    """What a hop needs of ``spec`` (a root's hop is 1, its video as long as it asks)."""
    return chains.Link(
        spec.id,
        provider,
        spec.model,
        str(spec.params.get("aspectRatio", "16:9")),
        str(spec.params.get("resolution", "720p")),
        spec.output_s or int(spec.params.get("durationSeconds", 8)),
        spec.hop or 1,
        spec.chain_root or spec.id,
        audio_of(spec.params),
    )


def audio_of(params: Mapping[str, Any]) -> bool | None:
    """A job's ``generateAudio``, which its hops keep (None: it set none)."""
    audio = params.get("generateAudio")
    return None if audio is None else bool(audio)


def provider_name(fr: FileRoute) -> str:
    return (fr.route.provider if fr.route else None) or DEFAULT_PROVIDER


def chain_entries(v: object, root_id: str, bad: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The hops a root's ``chain:`` lists: ``(id, own keys)`` each."""
    if not isinstance(v, list) or not v:
        bad.append("chain must be a list of prompts (or of mappings with prompt:)")
        return []
    out = []
    for i, entry in enumerate(v, 2):
        hop_id = f"{root_id}-{i}"
        if isinstance(entry, str):
            out.append((hop_id, {"prompt": entry}))
        elif isinstance(entry, Mapping):
            out.append((hop_id, dict(entry)))  # hop_spec refuses the keys it may not set
        else:
            bad.append(
                f"hop {hop_id}: a chain entry must be a prompt or a mapping, not {show(entry)}"
            )
    return out


def hop_spec(
    raw: Mapping[str, Any],
    parent: chains.Link,
    fr: FileRoute,
    defaults: Defaults,
    batch: str,
    where: str,
    bad: list[str],
    *,
    hop_id: str | None = None,
    own_file: bool = False,
) -> JobSpec | None:
    """The spec of a hop extending ``parent`` (``bad`` gets what is wrong with it).

    ``own_file``: an ``extends`` in a file of its own, whose defaults must agree with the
    parent's model family and aspect ratio (a ``chain`` entry is its root's row)."""
    allowed = _OWN_KEYS if hop_id is None else _ENTRY_KEYS  # a chain entry's id is given
    set_keys = [str(k) for k, v in raw.items() if v is not None and k not in allowed]
    if set_keys:
        bad.append(
            f"a hop may set only {', '.join(chains.HOP_KEYS)}, not"
            f" {', '.join(set_keys)} (its model, aspectRatio and resolution are its root's)"
        )
    f = parse_fields({k: raw[k] for k in allowed - {"extends"} if k in raw}, defaults, bad)
    provider = provider_name(fr)
    limits = fr.provider.extension
    bad += chains.hop_problems(parent, hop_id or f.job_id or "(this job)", limits, provider)
    info = models.MODELS.get(parent.model)
    if info is not None and not info.supports_extension:
        bad.append(f"extends {parent.id}: model {parent.model} does not support video extension")
    if own_file:
        bad += _defaults_problems(parent, defaults)
    if limits.needs_storage and (fr.route is None or fr.route.storage_uri is None):
        bad.append(
            f"a chain on provider {provider} needs a storage uri (--storage-uri or"
            " storageUri in defaults:): each hop sends its parent's gs:// video"
        )
    params: dict[str, Any] = {
        "aspectRatio": parent.aspect_ratio,
        "resolution": parent.resolution,
        "durationSeconds": limits.request_duration_s,
    }
    if parent.generate_audio is not None:
        params["generateAudio"] = parent.generate_audio
    for key in ("negativePrompt", "seed"):
        if key in f.params:
            params[key] = f.params[key]
    if bad:
        return None
    job_id = hop_id or f.job_id
    if job_id is None:
        digest = content_hash(
            f.prompt, parent.model, params, None, None, (), None, f.output, parent.id
        )
        job_id = "j" + digest[:16]
    link = parent.child(job_id, limits)
    return JobSpec(
        id=job_id,
        batch=batch,
        prompt=f.prompt,
        model=parent.model,
        params=params,
        output_name=None if f.output is None else render(f.output, job_id, batch, None),
        route=fr.route,
        source=where,
        extends=parent.id,
        chain_root=parent.chain_root,
        hop=link.hop,
        output_s=link.output_s,
    )


def _defaults_problems(parent: chains.Link, defaults: Defaults) -> list[str]:
    """An ``extends`` whose file would make another kind of video than its parent's."""
    bad = []
    if defaults.model is not None and chains.family(defaults.model) != chains.family(parent.model):
        bad.append(
            f"extends {parent.id}, a {parent.model} video: this file's model {defaults.model}"
            " is another family (a chain keeps its root's model)"
        )
    aspect = defaults.params.get("aspectRatio")
    if aspect is not None and aspect != parent.aspect_ratio:
        bad.append(
            f"extends {parent.id}, a {parent.aspect_ratio} video: this file's aspectRatio is"
            f" {aspect} (a chain keeps its root's)"
        )
    return bad
