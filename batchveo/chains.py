"""Scene chains: the rules of a hop (a job that extends another job's video), pure.

A hop is an extension request: it sends its parent's video (``instances[0].video``) and
gets back one combined video ``ExtensionLimits.added_s`` longer. So a hop inherits what
the video is (model, aspect ratio, resolution: its root's), may say only what happens
next (``HOP_KEYS``), and its length, its cost and whether the route takes it follow from
its place in the chain. The manifest checks a chain with these rules at load (before
anything is paid for); the store releases a hop with them once its parent is done
(``parent_expired``, its messages), and the submitter checks the parent's video once
more before sending.

The route's limits are data (``models.ExtensionLimits``, one per provider).
"""

from __future__ import annotations

from dataclasses import dataclass

from batchveo.models import RETENTION_S, ExtensionLimits
from batchveo.routes import Wire

HOP_KEYS = ("prompt", "negativePrompt", "seed", "output")
"""What a hop may set of its own; the rest is its root's."""
INHERITED_PARAMS = ("aspectRatio", "resolution", "generateAudio")
"""What a hop takes of its parent's parameters (its model too; ``generateAudio`` where the
root set it, on Vertex: the combined video keeps its sound, or its silence, and price)."""


def family(model: str) -> str:
    """A model's family: its id without the release suffix (``-preview``, ``-001``)."""
    for suffix in ("-preview", "-001"):
        if model.endswith(suffix):
            return model[: -len(suffix)]
    return model


@dataclass(frozen=True, slots=True)
class Link:
    """What a hop needs to know of the job it extends."""

    id: str
    provider: str
    model: str
    aspect_ratio: str
    resolution: str
    output_s: int
    """The length of this job's video."""
    hop: int
    """1 for a chain's root (or any job extended), 2 for its first extension, ..."""
    chain_root: str
    generate_audio: bool | None = None
    """The root's ``generateAudio`` (Vertex), None where it set none."""

    def child(self, child_id: str, limits: ExtensionLimits) -> Link:
        """The link of a hop extending this job."""
        return Link(
            child_id,
            self.provider,
            self.model,
            self.aspect_ratio,
            self.resolution,
            self.output_s + limits.added_s,
            self.hop + 1,
            self.chain_root,
            self.generate_audio,
        )


def hop_problems(parent: Link, hop_id: str, limits: ExtensionLimits, provider: str) -> list[str]:
    """What the route would refuse of ``hop_id`` extending ``parent`` (messages name the
    hop where a chain breaks the route's limit)."""
    bad: list[str] = []
    if provider != parent.provider:
        bad.append(
            f"extends {parent.id}, which goes to provider {parent.provider}, not {provider}:"
            " a chain stays on one provider"
        )
        return bad
    if parent.resolution not in limits.resolutions:
        bad.append(
            f"extends {parent.id} at {parent.resolution}: provider {provider} extends only"
            f" {', '.join(limits.resolutions)} videos"
        )
    extensions = parent.hop  # this hop is extension number parent.hop
    if limits.max_extensions is not None and extensions > limits.max_extensions:
        bad.append(
            f"the chain breaks at hop {hop_id}: at most {limits.max_extensions} extensions"
            f" on provider {provider}, this is extension {extensions}"
        )  # one line for the hop where it breaks: its other limits go with it
    elif not limits.min_input_s <= parent.output_s <= limits.max_input_s:
        bad.append(
            f"the chain breaks at hop {hop_id}: it would extend a {parent.output_s} s video,"
            f" provider {provider} extends {limits.min_input_s}-{limits.max_input_s} s"
        )
    elif (out_s := parent.output_s + limits.added_s) > limits.max_output_s:
        bad.append(
            f"the chain breaks at hop {hop_id}: its video would last {out_s} s, provider"
            f" {provider} makes at most {limits.max_output_s} s"
        )
    return bad


SEND_MARGIN_S = 600.0
"""A parent's video must have at least this long left on the server when its hop is
released or claimed: the request takes time to arrive, and the server's clock is not
this machine's."""


def parent_expired(parent_generated_at: float | None, now: float, wire: Wire) -> bool:
    """Whether the parent's video is gone from the server (or about to be, within
    ``SEND_MARGIN_S``): the Gemini-format routes delete videos after ``RETENTION_S`` (using
    one for an extension is reported to reset that, but nothing here relies on it);
    Vertex's are objects in the user's bucket, which stay."""
    if wire is Wire.VERTEX or parent_generated_at is None:
        return False
    return now >= parent_generated_at + RETENTION_S - SEND_MARGIN_S


def parent_failed_message(broken_id: str, state: str, kind: str | None) -> str:
    """The error of a hop whose chain broke at ``broken_id``."""
    why = state if kind is None else f"{state} ({kind})"
    if kind == "parent_expired":  # a retry cannot bring back a video the server deleted
        todo = f"load the chain again from {broken_id}'s parent under new ids"
    elif state == "failed":
        todo = f"`batchveo retry {broken_id}` reopens it"
    else:  # retry takes failed jobs unless told otherwise
        todo = f"`batchveo retry --state {state} {broken_id}` reopens it"
    return f"the chain broke at {broken_id}, which ended {why}: nothing of it was sent; {todo}"


def parent_expired_message(parent_id: str) -> str:
    """The error of a hop whose parent's video the server no longer keeps."""
    hours = RETENTION_S // 3600
    return (
        f"parent {parent_id} was generated more than {hours} h ago: the server no longer"
        f" keeps its video, so it cannot be extended (nothing was sent); load the chain"
        f" again from {parent_id} under new ids to make it again"
    )
