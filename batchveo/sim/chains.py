"""Scene chains as the simulator sees them: where each extension it made stands in its
chain, and how many hops each chain has.

An extension's answer is a new video one hop further along its input's chain. The service
must know how far (the Gemini format allows at most 20 extensions in a chain), and the
tests want hops per chain: ``stats()["chains"]`` maps a chain's root to the extensions
accepted in it (branches included), ``stats()["extensions"]`` counts them all.

A video's key is its file id (Gemini format) or what its ``free`` box names (Vertex:
``<operation id>/sample_<n>``, ``storage.tag_of``), so a bucket object or inline bytes
sent back name their own video. Only extensions are recorded (a video not recorded is a
root, hop 0): one small entry per extension made, none per plain video. Vertex's objects
outlive their operations (a bucket has no two-day deadline), hence a record of its own
rather than a field on the operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Link:
    """Where a video stands: its chain's root and how many extensions led to it."""

    root: str
    hop: int


class Chains:
    """The links of every extension made, and the hops counted per chain."""

    def __init__(self) -> None:
        self._links: dict[str, Link] = {}
        self.hops: dict[str, int] = {}
        self.extensions = 0

    def link(self, video: str) -> Link:
        """Where ``video`` stands (a video never recorded is a root)."""
        return self._links.get(video) or Link(video, 0)

    def extended(self, parent: str, outputs: Iterable[str]) -> Link:
        """Count one accepted extension of ``parent``, whose videos will be ``outputs``;
        where they stand."""
        before = self.link(parent)
        link = Link(before.root, before.hop + 1)
        for video in outputs:
            self._links[video] = link
        self.extensions += 1
        self.hops[link.root] = self.hops.get(link.root, 0) + 1
        return link

    def snapshot(self) -> dict[str, Any]:
        return {"extensions": self.extensions, "chains": dict(self.hops)}
