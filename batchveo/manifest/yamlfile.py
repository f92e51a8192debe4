"""YAML manifests: a ``jobs:`` list (with optional ``defaults:``) or a bare list of jobs.

A problem is located at ``FILE:LINE``, LINE being the 1-based line where the job's mapping
starts (or where the key in ``defaults:`` or at the top is). The document is composed to
nodes first, to take what the built values forget (lines, keys written twice, which PyYAML
silently keeps the last of) and to refuse alias bombs before anything is built; then the
nodes are let go, before the jobs are: for 100k jobs they are the largest thing in memory.
A document without anchors, aliases or tags (most) is composed one job at a time instead
(``yamlstream``): nothing is shared between its nodes, so each job's node is built and let
go at once, and the whole document's tree is never held (100k jobs: 120 MB less). Most
files do not even come here: ``yamljobs`` parses them from the file and hands each job on
as it is composed (``read_head``, ``read_job``: what this module does with a document's
top and each of its jobs); here come the text of those it cannot (``read_yaml``).

``16:9`` may be written unquoted: numbers are read the YAML 1.2 way (PyYAML's YAML 1.1 would
read it as the base-60 int 969). Only the safe loader's tags are known (no ``!!python``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

import yaml
from yaml.composer import Composer

from batchveo.errors import Problem
from batchveo.manifest import fields
from batchveo.manifest.fields import MAX_NUMBER_DIGITS, Bad, HugeInt
from batchveo.manifest.review import review_settings
from batchveo.manifest.rows import (
    DEFAULT_KEYS,
    JOB_KEY_SET,
    JOB_KEYS,
    TOP_KEYS,
    Defaults,
    Sink,
    unknown_key,
)
from batchveo.manifest.show import show
from batchveo.manifest.yamlaliases import BOMB, Endless, anchor_before, is_bomb
from batchveo.manifest.yamlaliases import expanded_size as expanded_size
from batchveo.manifest.yamlstream import Job, compose_streamed, duplicate_keys, line_of

# --- the YAML 1.2 loader ------------------------------------------------------------------

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YamlLoader(_BaseLoader):  # type: ignore[misc]
    """The safe (C when available) loader, minus YAML 1.1 base-60 numbers like ``16:9`` and
    YAML 1.1 timestamps: YAML 1.2 has no dates, a manifest has no date field, and a prompt
    or an id such as ``2001-02-03`` is its text (``2001-02-30`` made PyYAML raise)."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_YamlLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> int:
    """PyYAML's int, except that a number too long to convert stays a ``HugeInt``."""
    text = str(node.value).replace("_", "")
    sign = text[:1] in ("+", "-")
    digits = text[sign:]
    if digits[:2].lower() in ("0x", "0b", "0o"):
        digits = digits[2:]
    if len(digits) > MAX_NUMBER_DIGITS:
        return HugeInt(len(digits), text.startswith("-"))
    return int(yaml.constructor.SafeConstructor.construct_yaml_int(loader, node))


_YamlLoader.add_constructor(_INT, _construct_int)
_YamlLoader.add_constructor(  # an explicit !!timestamp: its text, as an untagged one
    _TIMESTAMP, yaml.constructor.SafeConstructor.construct_yaml_str
)


# --- what the nodes tell and the values forget ------------------------------------------------


_line = line_of


def _key_nodes(node: yaml.Node | None) -> dict[str, yaml.Node]:
    """The value node of each plain key of a mapping node."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _key_lines(node: yaml.Node | None) -> dict[Any, int]:
    """Line of each key of a mapping node, to locate problems in ``defaults:`` and the top."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: _line(k) for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _job_nodes(root: yaml.Node | None) -> list[yaml.Node]:
    """The nodes of the jobs, from a top-level list or the ``jobs:`` key."""
    if isinstance(root, yaml.MappingNode):
        root = next((v for k, v in root.value if k.value == "jobs"), None)
    return root.value if isinstance(root, yaml.SequenceNode) else []


_duplicate_keys = duplicate_keys


@dataclass
class Document:
    """A YAML manifest's values, and what only its nodes knew."""

    data: object = None
    top_lines: dict[Any, int] = field(default_factory=dict)
    defaults_line: int = 1
    defaults_lines: dict[Any, int] = field(default_factory=dict)
    jobs_line: int = 1
    job_lines: list[int] = field(default_factory=list)
    duplicates: dict[int, list[str]] = field(default_factory=dict)
    """Job index -> the keys written twice in it."""

    @classmethod
    def of(cls, root: yaml.Node) -> Document:
        """What the nodes of ``root`` tell (its values are built apart)."""
        top = _key_nodes(root)
        defaults = top.get("defaults", root)
        job_nodes = _job_nodes(root)
        return cls(
            top_lines=_key_lines(root),
            defaults_line=_line(defaults),
            defaults_lines=_key_lines(defaults),
            jobs_line=_line(top.get("jobs", root)),
            job_lines=[_line(node) for node in job_nodes],
            duplicates={i: d for i, node in enumerate(job_nodes) if (d := _duplicate_keys(node))},
        )


class StreamLoader(_YamlLoader, Composer):
    """The C parser's events, composed by PyYAML's own composer (``yamlstream``); from a
    text or a binary file."""

    def __init__(self, source: str | BinaryIO) -> None:
        _YamlLoader.__init__(self, source)  # type: ignore[call-arg]  # the C loader's own...
        Composer.__init__(self)  # ...which does not call the composer's


def _streamed(text: str) -> Document | None:
    """The document composed job by job (``yamlstream``), its jobs kept, or None: read it
    the whole way."""
    loader = StreamLoader(text)
    held: list[Job] | None = None

    def take(top: Any, key: Any, jobs: Iterator[Job]) -> None:
        nonlocal held
        held = list(jobs)

    try:
        root = compose_streamed(loader, take)
        if root is None:
            return Document()
        document = Document.of(root)
        data = loader.construct_document(root)
        if held is not None:
            document.job_lines = [job.line for job in held]
            document.duplicates = {
                i: job.duplicates for i, job in enumerate(held) if job.duplicates
            }
            if isinstance(data, dict):
                data["jobs"] = [job.value for job in held]
            else:
                data = [job.value for job in held]
        document.data = data
        return document
    except Exception:  # NotPlain, or an error: the whole way says what it is
        return None
    finally:
        loader.dispose()


def _parse(name: str, text: str) -> Document | Problem:
    """The document, or the one problem that stops it being read."""
    if "&" not in text and "*" not in text and "!" not in text:
        document = _streamed(text)  # nothing shared between nodes: one job at a time
        if document is not None:
            return document
    return _whole(name, text)


def parse_problem(name: str, text: str) -> Problem | None:
    """The one problem that stops the document being read, read the whole way (None:
    there is none)."""
    found = _whole(name, text)
    return found if isinstance(found, Problem) else None


def _whole(name: str, text: str) -> Document | Problem:
    """The document read the whole way: its tree composed, then built."""
    loader = _YamlLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return Document()
        if is_bomb(root, text):
            return Problem(name, None, BOMB)
        document = Document.of(root)  # before constructing, which rewrites merge keys
        document.data = loader.construct_document(root)
        return document
    except yaml.YAMLError as e:
        return Problem(*yaml_problem(name, e))
    except Endless as e:
        anchor = anchor_before(text, e.node)
        named = f" (*{anchor} inside &{anchor})" if anchor else ""
        return Problem(
            f"{name}:{_line(e.node)}",
            None,
            f"an alias refers to a value that contains it{named}; a manifest cannot be endless",
        )
    finally:
        loader.dispose()


def yaml_problem(name: str, e: yaml.YAMLError) -> tuple[str, None, str]:
    """Where and what a YAML error is, as a problem."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = f"{name}:{mark.line + 1}" if mark else name
        return where, None, f"not valid YAML: {e.problem or e.context}"
    return name, None, f"not valid YAML: {e}"


# --- the manifest's shape -------------------------------------------------------------------


def read_yaml(name: str, text: str, sink: Sink) -> Defaults:
    """Hand every job of a YAML manifest to ``sink``, with every problem; return the file's
    defaults (whose budget is its batch's)."""
    document = _parse(name, text)
    if isinstance(document, Problem):
        sink.problem(document.where, document.job, document.message)
        return Defaults()
    data, defaults = document.data, Defaults()
    if isinstance(data, dict):
        defaults = read_head(name, data, document, sink)
        jobs = data.get("jobs")
        if jobs is None:
            sink.problem(name, None, "no jobs: add a 'jobs:' list")
            return defaults
    elif isinstance(data, list) or data is None:
        jobs = data
    else:
        sink.problem(name, None, "expected a mapping with 'jobs:' or a list of jobs")
        return defaults
    if jobs is not None and not isinstance(jobs, list):
        sink.problem(f"{name}:{document.jobs_line}", None, "'jobs' must be a list")
    elif not jobs:
        sink.problem(name, None, EMPTY)
    else:
        _jobs(name, jobs, document, defaults, sink)
    return defaults


EMPTY = "empty manifest: no jobs"


def read_head(name: str, data: dict[Any, Any], document: Document, sink: Sink) -> Defaults:
    """The top level's keys but ``jobs``: the unknown ones reported, then ``defaults:``
    read (the jobs' defaults)."""
    for key in [k for k in data if k not in TOP_KEYS]:
        where = f"{name}:{document.top_lines.get(key, 1)}"
        sink.problem(where, None, unknown_key(key, TOP_KEYS, "key"))
    if data.get("defaults") is not None:
        return _defaults(name, data["defaults"], document, sink)
    return Defaults()


def _jobs(name: str, jobs: list[Any], document: Document, d: Defaults, sink: Sink) -> None:
    lines = document.job_lines
    if len(lines) != len(jobs):  # only with exotic merge keys: locate the list instead
        lines = [document.jobs_line] * len(jobs)
    duplicates = document.duplicates
    for i, (job, line) in enumerate(zip(jobs, lines, strict=True)):
        read_job(f"{name}:{line}", job, duplicates.get(i, ()), d, sink)


def read_job(where: str, job: object, twice: Iterable[str], d: Defaults, sink: Sink) -> None:
    """One job as built, its keys written ``twice`` (which the built value forgets)."""
    if not isinstance(job, dict):
        sink.problem(where, None, "a job must be a mapping with at least 'prompt:'")
        return
    bad = [f"{show(k)} is written twice" for k in twice]
    if job.keys() - JOB_KEY_SET:
        bad += [unknown_key(k, JOB_KEYS, "key") for k in job if k not in JOB_KEY_SET]
    sink.job(job, where, d, bad)


def _defaults(name: str, raw: object, document: Document, sink: Sink) -> Defaults:
    """The ``defaults:`` mapping, each key checked as in a job (plus ``budget``)."""
    d = Defaults()
    if not isinstance(raw, dict):
        sink.problem(f"{name}:{document.defaults_line}", None, "'defaults' must be a mapping")
        return d
    for key, v in raw.items():
        where = f"{name}:{document.defaults_lines.get(key, document.defaults_line)}"
        if key not in DEFAULT_KEYS:
            sink.problem(where, None, "defaults: " + unknown_key(key, DEFAULT_KEYS, "key"))
        elif v is not None:
            try:
                _set_default(d, key, v)
            except Bad as e:
                sink.problem(where, None, f"defaults: {e}")
            else:
                if key in _ROUTE_PARTS:
                    d.route_where[key] = where
    return d


_ROUTE_PARTS = {
    "provider": ("provider", fields.provider),
    "project": ("project", fields.project),
    "location": ("location", fields.location),
    "storageUri": ("storage_uri", fields.storage_uri),
}
"""A route key of ``defaults:`` -> the ``Route`` field it sets, and its coercer."""


def _set_default(d: Defaults, key: str, v: object) -> None:
    if key in _ROUTE_PARTS:
        part, coerce = _ROUTE_PARTS[key]
        d.route = replace(d.route, **{part: coerce(v)})
    elif key == "model":
        d.model = fields.model(v)
    elif key == "output":
        d.output = fields.template(v)
    elif key == "budget":
        d.budget_usd = fields.budget_usd(v)
    elif key == "review":
        d.review = review_settings(v)
    elif (value := fields.COERCE[key](v)) is not None:
        d.params[key] = value
