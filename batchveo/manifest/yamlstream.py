"""A YAML manifest composed one job at a time: the node tree of the whole document is never
held (PyYAML's is about 1.2 KB a job, 120 MB for 100k jobs), only the values built from it.

For a document without anchors, aliases or tags (``yamlfile`` decides), nothing is shared
between nodes, so a job's node built alone gives what building the whole document gives.
PyYAML's own composer makes the top level and each job from the C parser's events; each
job's node is built (``construct_document``) and let go at once, after what only nodes tell
is taken (its line, its keys written twice), and handed to the caller's ``take`` as it is
made (``Job``): whether the jobs are kept is the caller's choice. A top level of another
shape (a merge key, ``jobs`` twice) raises ``NotPlain``: the caller then reads the document
the whole way, as it does on any error met before it hands a job on (so that its message
is the whole way's). A second document raises the whole way's own error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, cast

import yaml
from yaml.composer import Composer, ComposerError


def _compose(loader: Any, parent: Any, index: Any) -> yaml.Node:
    """PyYAML's composer on ``loader``'s events: the next node, whole."""
    return cast(yaml.Node, Composer.compose_node(loader, parent, index))


class NotPlain(Exception):
    """A document this module does not compose job by job."""


class Anchored(NotPlain):
    """An anchor where the caller saw none (a file changed since it was scanned): a node
    may be shared, and an alias bomb is counted only the whole way. Raised once the
    anchored node is composed, before it is built."""


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


class Job(NamedTuple):
    """One job of the list, built, and what only its node told."""

    value: Any
    line: int
    duplicates: list[str]
    """The keys written twice in it."""


Take = Callable[[yaml.MappingNode | None, yaml.ScalarNode | None, Iterator[Job]], None]
"""Called where the list of jobs starts: the top-level mapping so far (the keys before
``jobs:``; None for a top-level list), the ``jobs`` key (None likewise), and the jobs, each
composed and built as the iterator is advanced. What ``take`` leaves of them is composed
and dropped once it returns."""


def compose_streamed(loader: Any, take: Take) -> yaml.Node | None:
    """The document of ``loader`` (a C parser with PyYAML's composer and constructor), its
    list of jobs handed to ``take`` job by job and left empty in it; None for an empty
    document."""
    loader.get_event()  # the stream's start
    if loader.check_event(yaml.StreamEndEvent):
        return None
    document = loader.get_event()  # the document's start
    if loader.check_event(yaml.SequenceStartEvent):
        root: yaml.Node = _jobs(loader, take, None, None)
    elif loader.check_event(yaml.MappingStartEvent):
        root = _top(loader, take)
    else:
        root = _compose(loader, None, None)
    loader.get_event()  # the document's end
    if not loader.check_event(yaml.StreamEndEvent):  # as the whole way says it
        raise ComposerError(
            "expected a single document in the stream",
            document.start_mark,
            "but found another document",
            loader.peek_event().start_mark,
        )
    return root


def _top(loader: Any, take: Take) -> yaml.MappingNode:
    """The top-level mapping, its ``jobs:`` list composed job by job."""
    start = loader.get_event()
    tag = loader.resolve(yaml.MappingNode, None, start.implicit)
    node = yaml.MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
    loader.descend_resolver(None, None)
    jobs_seen = False
    while not loader.check_event(yaml.MappingEndEvent):
        key = _compose(loader, node, None)
        if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
            raise NotPlain("a top-level key that is not plain text")
        if key.value == "jobs" and jobs_seen:
            raise NotPlain("jobs twice")
        jobs_seen = jobs_seen or key.value == "jobs"
        if key.value == "jobs" and loader.check_event(yaml.SequenceStartEvent):
            value: yaml.Node = _jobs(loader, take, node, key)
        else:
            value = _compose(loader, node, key)
        node.value.append((key, value))
    node.end_mark = loader.get_event().end_mark
    loader.ascend_resolver()
    return node


def _jobs(
    loader: Any, take: Take, parent: yaml.MappingNode | None, key: yaml.ScalarNode | None
) -> yaml.SequenceNode:
    """The list of jobs, handed to ``take``; its node is left empty."""
    start = loader.get_event()
    loader.descend_resolver(parent, key)
    tag = loader.resolve(yaml.SequenceNode, None, start.implicit)
    node = yaml.SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
    if loader.anchors:
        raise Anchored("an anchor before the list of jobs")
    jobs = _each_job(loader, node)
    take(parent, key, jobs)
    for _ in jobs:  # what ``take`` left
        pass
    node.end_mark = loader.get_event().end_mark
    loader.ascend_resolver()
    return node


def _each_job(loader: Any, node: yaml.SequenceNode) -> Iterator[Job]:
    """Each job of the list: composed, noted, built and let go."""
    compose = loader.compose_node  # PyYAML's composer's
    index, end = 0, yaml.SequenceEndEvent
    while not loader.check_event(end):
        job = compose(node, index)
        if loader.anchors:
            raise Anchored(f"an anchor in the job at line {line_of(job)}")
        twice = duplicate_keys(job)  # before building, which rewrites merge keys
        yield Job(_build(loader, job), job.start_mark.line + 1, twice)
        index += 1


_MAP = "tag:yaml.org,2002:map"
_NOT_PLAIN_KEYS = frozenset(("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"))


def _build(loader: Any, node: yaml.Node) -> Any:
    """What ``construct_document`` builds of a job's node; a mapping of scalars (most jobs)
    directly, each scalar by its tag's own constructor, as ``construct_mapping`` does, but
    without its bookkeeping (some 0.2 s for 100k jobs)."""
    if node.__class__ is yaml.MappingNode and node.tag == _MAP:
        built = {}
        ctors, scalar = loader.yaml_constructors, yaml.ScalarNode
        for key, value in node.value:
            if key.__class__ is not scalar or value.__class__ is not scalar:
                break
            if key.tag in _NOT_PLAIN_KEYS or key.tag not in ctors or value.tag not in ctors:
                break
            built[ctors[key.tag](loader, key)] = ctors[value.tag](loader, value)
        else:
            return built
    return loader.construct_document(node)
