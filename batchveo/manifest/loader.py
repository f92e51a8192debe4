"""Turn manifests (YAML or CSV) into validated ``JobSpec``s, reporting every problem at once.

Why so strict: every API rule that can be checked before paying is checked here, so a bad
row costs a re-run of ``load`` instead of money or an hour of waiting. Nothing is returned
unless every row of every file is valid; otherwise ``ManifestError`` lists all problems.

The loader opens each file (``opening``), hands it to its reader (``yamlfile``,
``csvfile``), makes each row a job (``job``: fields -> inputs -> rules -> variants), and
refuses a second job with the same id or output; once every file is read it checks the
videos' paths together (``output_paths``), since those clash across files.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchveo.chains import Link
from batchveo.errors import ManifestError, Problem
from batchveo.manifest.chaining import (
    Links,
    chain_entries,
    hop_spec,
    link_of,
    may_extend,
    provider_name,
)
from batchveo.manifest.csvfile import read_csv
from batchveo.manifest.fields import batch_name_problem
from batchveo.manifest.images import ImageFiles
from batchveo.manifest.job import (
    Shapes,
    parse_fields,
    parse_inputs,
    route_problems,
    rule_problems,
    variants,
)
from batchveo.manifest.opening import Unreadable, open_manifest, text_lines
from batchveo.manifest.output_paths import (
    OutputTree,
    output_length_problem,
    output_problem,
    output_problems,
)
from batchveo.manifest.routing import FileRoute, check_route, file_route
from batchveo.manifest.rows import Defaults
from batchveo.manifest.show import show
from batchveo.manifest.yamljobs import read_yaml_file
from batchveo.routes import Route
from batchveo.spec import JobSpec
from batchveo.verdicts import ReviewSettings

_SUFFIXES = (".yaml", ".yml", ".csv")


@dataclass(frozen=True)
class Manifests:
    specs: list[JobSpec]
    budgets: dict[str, float]
    """Batch name -> budget in USD, for the batches whose manifest sets one."""
    reviews: dict[str, ReviewSettings] = field(default_factory=dict)
    """Batch name -> review settings, for the batches whose manifest sets them."""


def read_manifests(
    paths: Sequence[Path | str],
    *,
    batch: str | None = None,
    route: Route | None = None,
    parents: Parents | None = None,
) -> Manifests:
    """Every job of every manifest, in order, with the batches' budgets; or ``ManifestError``
    listing every problem.

    ``batch`` names the batch of every job; by default each file's name without extension.
    ``route`` is the loading command's (its ``--provider``, ``--project``, ``--location``,
    ``--storage-uri`` and their environment variables; None parts: not given): each file's
    ``defaults:`` override it part by part, and a job's checks and stored route follow
    (``routing``). A part of ``route`` that is not a valid name raises ``ConfigError``
    naming its flag. A one-shot load of many rows is faster inside ``gc_paused()`` (the
    caller's choice: it pauses the whole process's collector). ``parents`` finds a stored
    job a scene chain's hop extends (``extends:`` a job not in the load).
    """
    loader = _Loader(batch, Route() if route is None else check_route(route), parents=parents)
    loader.may_extend = may_extend(paths)
    for path in paths:
        loader.load(path)
    loader.problems += output_problems(loader.specs)
    if loader.problems:
        raise ManifestError(loader.problems)
    return Manifests(loader.specs, loader.budgets, loader.reviews)


STREAM_CHUNK_ITEMS = 1000
"""Specs and problems ``stream_manifests`` hands on at a time."""
Item = JobSpec | Problem
Parents = Callable[[str], Link | None]
"""A stored job by its id, as a hop extending it needs it (None: no such job)."""


def stream_manifests(
    paths: Sequence[Path | str],
    take: Callable[[list[Item]], None],
    *,
    batch: str | None = None,
    route: Route | None = None,
    reviews: dict[str, ReviewSettings] | None = None,
    parents: Parents | None = None,
) -> dict[str, float]:
    """Every job and every problem of every manifest, in file order, handed to ``take`` a
    chunk at a time (a list of at most about ``STREAM_CHUNK_ITEMS``); the batches' budgets.

    ``read_manifests`` without keeping the jobs: what needs every job of the load at once
    is left to whoever takes them (the store, where they go anyway): a second job with an
    id or output name of an earlier one, and videos where another needs a folder. Each
    job's own checks are all made here, its output's length too. ``batch`` and ``route``
    as for ``read_manifests``. ``reviews``, if given, gets the batches' review settings.
    """
    loader = _Loader(batch, Route() if route is None else check_route(route), take, parents)
    loader.may_extend = may_extend(paths)
    for path in paths:
        loader.load(path)
    loader.flush()
    if reviews is not None:
        reviews.update(loader.reviews)
    return loader.budgets


class _Loader:
    """The state of one ``read_manifests`` or ``stream_manifests``: what is loaded so far,
    and every problem; the ``Sink`` its readers report to. With ``take``, jobs and problems
    are handed on in chunks instead of kept (``items``), and only each job's own checks
    are made."""

    def __init__(
        self,
        batch: str | None,
        route: Route,
        take: Callable[[list[Item]], None] | None = None,
        parents: Parents | None = None,
    ) -> None:
        self.batch = batch
        self.route = route
        """The loading command's route: the defaults of every file's own."""
        self._take = take
        self.items: list[Item] = []
        """Streaming: what is found and not handed on yet."""
        self._tree = OutputTree()
        self._file_route: tuple[Defaults, FileRoute] | None = None
        self._shapes: Shapes | None = None
        """The text jobs' shapes of the file being read (its ``defaults``)."""
        self.problems: list[Problem] = []
        self.specs: list[JobSpec] = []
        self.budgets: dict[str, float] = {}
        """Per-batch budgets in USD from the manifests' ``defaults: budget``."""
        self.reviews: dict[str, ReviewSettings] = {}
        """Per-batch review settings from the manifests' ``defaults: review``."""
        self._ids: dict[str, JobSpec] = {}
        self._outputs: dict[str, str] = {}
        """Rendered output name -> where its job is."""
        self._files: set[Path] = set()
        self._images = ImageFiles()
        self._links = Links()
        """Jobs a later hop may extend (``chaining``)."""
        self.may_extend = True
        """Whether a job of the load can extend another (``chaining.may_extend``): else
        no job is noted in ``_links``."""
        self._parents = parents
        """Stored jobs a hop may extend (the database's; None: there is none)."""
        self._file_batch = ""
        self._base = Path()
        """The folder of the manifest being read: its image paths are relative to it."""

    def problem(self, where: str, job: str | None, message: str) -> None:
        if self._take is None:
            self.problems.append(Problem(where, job, message))
        else:
            self.items.append(Problem(where, job, message))
            if len(self.items) >= STREAM_CHUNK_ITEMS:
                self.flush()

    def flush(self) -> None:
        """Streaming: hand on what was found since the last time."""
        if self._take is not None and self.items:
            items, self.items = self.items, []
            self._take(items)

    def load(self, path: Path | str) -> None:
        """Read one manifest, its jobs into ``specs`` and its problems into ``problems``."""
        name, p = os.fspath(path), Path(path)
        suffix = p.suffix.lower()
        if suffix not in _SUFFIXES:
            return self.problem(name, None, "not a manifest: use a .yaml, .yml or .csv file")
        opened = open_manifest(p)
        if isinstance(opened, str):
            return self.problem(name, None, opened)
        fd, _ = opened
        try:
            if p.resolve() in self._files:
                return self.problem(name, None, "the same manifest is given twice")
            self._files.add(p.resolve())
            batch = self.batch if self.batch is not None else p.stem
            if (problem := batch_name_problem(batch, from_flag=self.batch is not None)) is not None:
                return self.problem(name, None, problem)
            self._file_batch, self._base = batch, p.absolute().parent
            defaults = self._csv(name, fd) if suffix == ".csv" else self._yaml(name, fd)
        except OSError as e:
            return self.problem(name, None, f"cannot read it: {e.strerror}")
        finally:
            os.close(fd)
        if defaults is not None and defaults.budget_usd is not None:
            self.budgets[batch] = defaults.budget_usd
        if defaults is not None and defaults.review is not None:
            self.reviews[batch] = defaults.review
        return None

    def _yaml(self, name: str, fd: int) -> Defaults | None:
        """A YAML manifest, its jobs handed on as they are read (``yamljobs``)."""
        return read_yaml_file(name, fd, self)

    def _csv(self, name: str, fd: int) -> Defaults | None:
        """A CSV manifest, read line by line."""
        lines = text_lines(fd)
        try:
            blank = []  # the lines before the first that is not blank
            for line in lines:
                blank.append(line)
                if not line.isspace():
                    break
            else:
                self.problem(name, None, "empty manifest: no jobs")
                return None
            return read_csv(name, itertools.chain(blank, lines), self)
        except Unreadable as e:
            where = name if e.line is None else f"{name}:{e.line}"
            self.problem(where, None, e.why)
            return None

    def job(self, raw: Mapping[str, Any], where: str, defaults: Defaults, bad: list[str]) -> None:
        """Validate one job, then register its spec(s), or its problems."""
        route = self._route_of(defaults)
        if raw.get("extends") is not None:
            return self._extends(raw, where, defaults, route, bad)
        if not bad:  # the common row: its shape is checked already, or now for the rest
            shapes = self._shapes
            if shapes is None or shapes.defaults is not defaults:
                shapes = self._shapes = Shapes(defaults, route.provider)
            if (spec := shapes.spec(raw, self._file_batch, where, route.route)) is not None:
                return self._register(
                    [spec], where, provider_name(route), named=raw.get("id") is not None
                )
        f = parse_fields(raw, defaults, bad)
        inputs = parse_inputs(raw, self._images, self._base, bad)
        bad += route_problems(f, inputs, route.provider)
        bad += rule_problems(f, inputs)
        chain = raw.get("chain")
        if chain is not None and f.repeat is not None:
            bad.append("chain and repeat cannot be combined: give each chain its own root")
        if bad:
            for message in bad:
                self.problem(where, f.job_id, message)
            return None
        specs = variants(f, inputs, self._file_batch, where, route.route)
        if chain is not None:
            specs = self._chain(specs[0], chain, where, defaults, route)
            if not specs:
                return None
        self._register(specs, where, provider_name(route), named=f.job_id is not None)
        return None

    def _extends(
        self,
        raw: Mapping[str, Any],
        where: str,
        defaults: Defaults,
        route: FileRoute,
        bad: list[str],
    ) -> None:
        """A job that extends another's video (``chaining``)."""
        parent_id, own_id = str(raw["extends"]), raw.get("id")
        parent = self._links.get(parent_id)
        if parent is None and self._parents is not None and parent_id != own_id:
            parent = self._parents(parent_id)
        if parent_id == own_id:
            bad.append(f"extends itself: a chain cannot be a cycle ({parent_id})")
        elif parent is None:
            bad.append(
                f"extends {show(parent_id)}, which is neither in the database nor a job with an"
                " id loaded before it (a parent comes before its hops, so a chain never loops)"
            )
        spec = None
        if parent is not None and not bad:
            batch = self._file_batch
            spec = hop_spec(raw, parent, route, defaults, batch, where, bad, own_file=True)
        if spec is None or bad:
            job_id = own_id if isinstance(own_id, str) else None
            for message in bad:
                self.problem(where, job_id, message)
            return
        self._register([spec], where, provider_name(route), named=True)

    def _chain(
        self, root: JobSpec, chain: object, where: str, defaults: Defaults, route: FileRoute
    ) -> list[JobSpec]:
        """A root and the hops its ``chain:`` lists; [] with their problems reported."""
        root = replace(root, chain_root=root.id, hop=1)
        bad: list[str] = []
        entries = chain_entries(chain, root.id, bad)
        for message in bad:
            self.problem(where, root.id, message)
        specs, parent = [root], link_of(root, provider_name(route))
        for hop_id, entry in entries:
            hop_bad: list[str] = []
            spec = hop_spec(
                entry, parent, route, defaults, self._file_batch, where, hop_bad, hop_id=hop_id
            )
            for message in hop_bad:
                self.problem(where, hop_id, message)
            if spec is None:
                return []  # the hops after it would extend a video that cannot be made
            specs.append(spec)
            parent = link_of(spec, parent.provider)
        return [] if bad else specs

    def _register(self, specs: list[JobSpec], where: str, provider: str, *, named: bool) -> None:
        """Hand on or keep a job's specs (unless they clash), and note those a later hop
        may extend: the jobs ``named`` by an id of their own, and chains' members."""
        for spec in specs:
            if self.may_extend and (named or spec.chain_root is not None):
                self._links.note(spec, provider)
        if self._take is not None:
            return self._hand_on(specs, where)
        for spec in specs:
            if self._clashes(spec, where):
                return None
        for spec in specs:
            self._ids[spec.id] = spec
            if spec.output_name is not None:
                self._outputs[spec.output_name] = where
        self.specs += specs
        return None

    def _hand_on(self, specs: list[JobSpec], where: str) -> None:
        """Streaming: a job's specs, unless its output cannot be a file name at all."""
        for spec in specs:
            out = spec.output_name
            if out is not None and (
                (why := output_problem(out))
                or (why := output_length_problem(self._tree, spec.id, out))
            ):
                return self.problem(where, spec.id, why)
        self.items += specs
        if len(self.items) >= STREAM_CHUNK_ITEMS:
            self.flush()
        return None

    def _route_of(self, defaults: Defaults) -> FileRoute:
        """The route of the file whose defaults these are, its problems reported once (at
        its first job: after its ``defaults:``, before its jobs, so in file order)."""
        if self._file_route is not None and self._file_route[0] is defaults:
            return self._file_route[1]
        found = file_route(defaults.route, defaults.route_where, self.route)
        for where, message in found.problems:
            self.problem(where, None, message)
        self._file_route = (defaults, found)
        return found

    def _clashes(self, spec: JobSpec, where: str) -> bool:
        """Report a second job with the same id or the same output name."""
        first = self._ids.get(spec.id)
        if first is not None:
            if first.spec_hash() == spec.spec_hash():
                msg = f"duplicate of {first.source} (use repeat: N for variants)"
            else:
                msg = f"id {spec.id} is also used by a different job at {first.source}"
            self.problem(where, spec.id, msg)
            return True
        out = spec.output_name
        if out is not None:
            if problem := output_problem(out):
                self.problem(where, spec.id, problem)
                return True
            if (other := self._outputs.get(out)) is not None:
                msg = (
                    f"output {show(out)} is also used by {other}: one video would replace the other"
                )
                self.problem(where, spec.id, msg)
                return True
        return False
