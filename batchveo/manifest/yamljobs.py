"""A YAML manifest read from its file, each job handed to the loader as it is composed:
neither the file's text nor its jobs are ever all in memory (a million jobs: 94 MB of
text, some 400 MB of built jobs), as with a CSV.

The file is scanned first (``yamlscan``), then parsed from the file a block at a time, its
jobs composed one by one (``yamlstream``) and handed on at once (``yamlfile.read_job``),
after the top level's keys before ``jobs:`` are reported and its ``defaults:`` read
(``yamlfile.read_head``), as reading the whole text does. What that cannot do is read the
whole way, as before (the text read whole, ``yamlfile.read_yaml``), and reported the same:

- an anchor, alias or tag anywhere (``Scan.plain``): nodes may be shared, and an alias
  bomb is refused only by counting the whole tree;
- a top-level key that may come after ``jobs:`` (``Scan.jobs_last``), or a top-level
  mapping written in flow style (``{jobs: [...]}``) or not at the start of lines;
- a top level of another shape (``yamlstream.NotPlain``: a merge key, ``jobs`` twice), a
  document without a list of jobs, and any error met before the first job is handed on.

An error met after (a YAML error on line 900,000) is reported as reading the whole way
reports it: a syntax error or a second document as the parser says it (the same C parser,
the same events), anything else with the message of the text read again whole. The
store's transaction writes nothing of a load with a problem; but the problems of the jobs
before it are listed too, before it (reading the whole way lists the error alone).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from batchveo.manifest import opening
from batchveo.manifest.opening import decode, read_bounded
from batchveo.manifest.rows import Defaults, Sink
from batchveo.manifest.show import show
from batchveo.manifest.yamlfile import (
    EMPTY,
    Document,
    StreamLoader,
    parse_problem,
    read_head,
    read_job,
    read_yaml,
    yaml_problem,
)
from batchveo.manifest.yamlscan import Scan, scan_yaml
from batchveo.manifest.yamlstream import Anchored, Job, NotPlain, compose_streamed, line_of


def read_yaml_file(name: str, fd: int, sink: Sink) -> Defaults | None:
    """Hand every job of the YAML manifest open as ``fd`` to ``sink``, with every problem;
    the file's defaults (None: none, for a problem of the whole file)."""
    scan = scan_yaml(fd)
    if isinstance(scan, str):
        sink.problem(name, None, scan)
        return None
    if isinstance(scan, tuple):
        sink.problem(f"{name}:{scan[0]}", None, scan[1])
        return None
    if scan.blank:
        sink.problem(name, None, EMPTY)
        return None
    if scan.plain:
        os.lseek(fd, 0, os.SEEK_SET)
        outcome = _Hand(name, sink, scan).read(_Bytes(fd, scan.size))
        if isinstance(outcome, Defaults):
            return outcome
        if isinstance(outcome, Exception):  # met after jobs were handed on
            _report_error(name, fd, outcome, sink)
            return None
    text = _text(name, fd, sink)
    return None if text is None else read_yaml(name, text, sink)


def _report_error(name: str, fd: int, error: Exception, sink: Sink) -> None:
    """An error met after jobs were handed on, as reading the whole way reports it: the
    parser's own errors are the same (the same C parser, the same events); for the rest
    (a value that cannot be built, a character the reader refuses, whose message names
    the stream) the text is read again, whole."""
    if isinstance(error, yaml.MarkedYAMLError) and not isinstance(error, ConstructorError):
        sink.problem(*yaml_problem(name, error))
        return
    if isinstance(error, Anchored):
        sink.problem(name, None, CHANGED)
        return
    text = _text(name, fd, sink)
    if text is None:
        return
    problem = parse_problem(name, text)
    if problem is None:  # the whole way has none: not bad input
        raise error
    sink.problem(problem.where, problem.job, problem.message)


CHANGED = "changed while it was being read (an anchor appeared): load it again"


def _text(name: str, fd: int, sink: Sink) -> str | None:
    """The whole text of the file, read again (None: it changed meanwhile, reported)."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = read_bounded(fd, os.fstat(fd).st_size)
    if isinstance(data, str):
        sink.problem(name, None, data)
        return None
    text = decode(data)
    del data
    if isinstance(text, tuple):
        sink.problem(f"{name}:{text[0]}", None, text[1])
        return None
    return text


class _Bytes:
    """The file for the C parser: what was scanned, a block at a time."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd, self._left = fd, size

    def read(self, size: int) -> bytes:
        data = os.read(self._fd, min(size, opening.READ_CHUNK_BYTES, self._left))
        self._left -= len(data)
        return data


@dataclass(frozen=True)
class _Whole:
    """Read the whole way: nothing was reported yet."""

    why: str


class _Hand:
    """One file's jobs handed on as they are composed."""

    def __init__(self, name: str, sink: Sink, scan: Scan) -> None:
        self._name, self._sink, self._scan = name, sink, scan
        self._loader: Any = None
        self._defaults: Defaults | None = None
        """Set once something may have been reported: then there is no going back."""
        self._sink_failed = False
        """The sink raised (the store stopped, say): that goes on up as it is."""

    def read(self, stream: _Bytes) -> Defaults | _Whole | Exception:
        """The file's defaults, or why it must be read the whole way, or the error met after
        jobs were handed on."""
        self._loader = loader = StreamLoader(stream)  # type: ignore[arg-type]  # read() only
        try:
            root = compose_streamed(loader, self._take)
        except Exception as e:
            if self._sink_failed:
                raise
            return _Whole(f"{type(e).__name__}: {e}") if self._defaults is None else e
        finally:
            loader.dispose()
        if self._defaults is None:
            return _Whole("no list of jobs")
        if isinstance(root, yaml.MappingNode) and root.value[-1][0].value != "jobs":
            key = root.value[-1][0]  # which the scan rules out: so that no job lacks it
            where, what = f"{self._name}:{line_of(key)}", show(key.value)
            self._sink.problem(where, None, f"{what} comes after 'jobs:'; move it before")
        return self._defaults

    def _take(
        self, top: yaml.MappingNode | None, key: yaml.ScalarNode | None, jobs: Iterator[Job]
    ) -> None:
        """Where the list starts: the keys before it reported, then each job handed on."""
        data: dict[Any, Any] = {}
        document = Document()
        if top is not None:
            if top.flow_style or key is None or key.start_mark.column or not self._scan.jobs_last:
                raise NotPlain("a top-level key may come after jobs:")
            data = self._loader.construct_document(top)  # the keys before jobs:
            document = Document.of(top)
        name, sink = self._name, self._sink
        self._defaults = Defaults()
        try:
            defaults = self._defaults = read_head(name, data, document, sink)
            count = 0
            while (job := self._next(jobs)) is not None:
                count += 1
                read_job(f"{name}:{job.line}", job.value, job.duplicates, defaults, sink)
            if not count:
                sink.problem(name, None, EMPTY)
        except _Parsing as e:  # YAML's: the caller reports it
            raise e.error from None
        except BaseException:  # the sink's: it goes on up as it is
            self._sink_failed = True
            raise

    @staticmethod
    def _next(jobs: Iterator[Job]) -> Job | None:
        """The next job, or None at the end; what composing or building it raises is
        YAML's (``_Parsing``)."""
        try:
            return next(jobs, None)
        except Exception as e:
            raise _Parsing(e) from e


class _Parsing(Exception):
    """What composing or building a job raised (``error``), apart from the sink's."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
