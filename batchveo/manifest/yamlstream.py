"""A YAML manifest composed one job at a time: the node tree of the whole document is never
held (PyYAML's is about 1.2 KB a job, 120 MB for 100k jobs), only the values built from it.

For a document without anchors, aliases or tags (``yamlfile`` decides), nothing is shared
between nodes, so a job's node built alone gives what building the whole document gives.
PyYAML's own composer makes the top level and each job from the C parser's events; each
job's node is built (``construct_document``) and let go at once, after what only nodes tell
is taken (its line, its keys written twice). A top level of another shape (a merge key,
``jobs`` twice) raises ``NotPlain``: the caller then reads the document the whole way, as
it does on any error met here (so that its message is the whole way's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import yaml
from yaml.composer import Composer


def _compose(loader: Any, parent: Any, index: Any) -> yaml.Node:
    """PyYAML's composer on ``loader``'s events: the next node, whole."""
    return cast(yaml.Node, Composer.compose_node(loader, parent, index))


class NotPlain(Exception):
    """A document this module does not compose job by job."""


def line_of(node: yaml.Node) -> int:
    """The 1-based line where a node starts."""
    return int(node.start_mark.line) + 1


def duplicate_keys(node: yaml.Node) -> list[str]:
    """Keys written twice in one mapping (PyYAML silently keeps the last one); call it before
    constructing, which rewrites mappings that use ``<<`` merge keys."""
    if not isinstance(node, yaml.MappingNode) or len(node.value) < 2:
        return []
    keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
    if len(keys) == len(set(keys)) or "<<" in keys:
        return []
    seen: set[str] = set()
    return [k for k in keys if k in seen or seen.add(k)]  # type: ignore[func-returns-value]


@dataclass
class Streamed:
    """A document composed job by job."""

    root: yaml.Node
    """Its top node, the list of jobs in it left empty."""
    jobs: list[Any] | None = None
    """The jobs' values in order (None: the document has no list of jobs)."""
    job_lines: list[int] = field(default_factory=list)
    duplicates: dict[int, list[str]] = field(default_factory=dict)
    """Job index -> the keys written twice in it."""


def compose_streamed(loader: Any) -> Streamed | None:
    """The document of ``loader`` (a C parser with PyYAML's composer and constructor), its
    jobs built one by one; None for an empty document."""
    loader.get_event()  # the stream's start
    if loader.check_event(yaml.StreamEndEvent):
        return None
    loader.get_event()  # the document's start
    streamed = Streamed(yaml.ScalarNode("", ""))
    if loader.check_event(yaml.SequenceStartEvent):
        streamed.root = _jobs(loader, streamed, None, None)
    elif loader.check_event(yaml.MappingStartEvent):
        streamed.root = _top(loader, streamed)
    else:
        streamed.root = _compose(loader, None, None)
    loader.get_event()  # the document's end
    if not loader.check_event(yaml.StreamEndEvent):
        raise NotPlain("another document follows")
    return streamed


def _top(loader: Any, streamed: Streamed) -> yaml.MappingNode:
    """The top-level mapping, its ``jobs:`` list composed job by job."""
    start = loader.get_event()
    tag = loader.resolve(yaml.MappingNode, None, start.implicit)
    node = yaml.MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
    loader.descend_resolver(None, None)
    while not loader.check_event(yaml.MappingEndEvent):
        key = _compose(loader, node, None)
        if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
            raise NotPlain("a top-level key that is not plain text")
        if key.value == "jobs" and streamed.jobs is not None:
            raise NotPlain("jobs twice")
        if key.value == "jobs" and loader.check_event(yaml.SequenceStartEvent):
            value: yaml.Node = _jobs(loader, streamed, node, key)
        else:
            value = _compose(loader, node, key)
        node.value.append((key, value))
    node.end_mark = loader.get_event().end_mark
    loader.ascend_resolver()
    return node


def _jobs(loader: Any, streamed: Streamed, parent: Any, index: Any) -> yaml.SequenceNode:
    """The list of jobs, each composed, noted, built and let go; the list's node is left
    empty."""
    start = loader.get_event()
    loader.descend_resolver(parent, index)
    tag = loader.resolve(yaml.SequenceNode, None, start.implicit)
    node = yaml.SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
    jobs: list[Any] = []
    while not loader.check_event(yaml.SequenceEndEvent):
        job = _compose(loader, node, len(jobs))
        streamed.job_lines.append(line_of(job))
        if twice := duplicate_keys(job):
            streamed.duplicates[len(jobs)] = twice
        jobs.append(loader.construct_document(job))
    node.end_mark = loader.get_event().end_mark
    loader.ascend_resolver()
    streamed.jobs = jobs
    return node
