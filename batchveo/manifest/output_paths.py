"""Videos the file system could not take, found at load instead of at every night's download.

``batchveo.outputs`` is the rule for where a job's videos go; this module checks, before a
job is stored, that the file system can take those paths: an ``output`` is a relative path
inside ``--out``, no name or path is too long, and no video stands where another job needs
a folder (``output: x`` makes ``x.mp4``, ``output: "x.mp4/{id}"`` needs a folder ``x.mp4``:
a file system holds one or the other, and the download of the second would fail at every
run). The store uses ``output_clashes`` too, against the jobs already loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from batchveo.errors import Problem
from batchveo.manifest.show import show
from batchveo.outputs import safe_segment
from batchveo.spec import JobSpec

MAX_NAME_BYTES = 255
"""The longest file or folder name of ext4, XFS, btrfs, APFS and NTFS."""
DOWNLOAD_NAME_EXTRA_BYTES = len("-9999.mp4.0123abcd.part")
"""What a download adds to a video's stem: ``-N`` when the name is taken, ``.mp4``, and the
temporary ``.<8 hex>.part`` it is written under (see ``files.py``)."""
MAX_OUTPUT_PATH_BYTES = 1024
"""A video's path relative to ``--out``: a quarter of Linux's PATH_MAX (4096), which must also
hold ``--out`` itself. Real templates (``{batch}/{id}``) take a few dozen bytes."""

_ABSOLUTE = re.compile(r"^(?:[/\\]|[A-Za-z]:)")
NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""Control characters, which no id or output name may hold."""


def output_problem(out: str) -> str | None:
    """Why a rendered output name is not a relative path inside the output folder, if it is not."""
    parts = re.split(r"[/\\]", out)
    if _ABSOLUTE.match(out) or ".." in parts:
        return f"output {show(out)} must be a relative path inside the output folder (no '..')"
    if parts[-1] in ("", ".") or NAME_CONTROL.search(out):
        return f"output {show(out)} is not a usable file name"
    return None


class Placed(Protocol):
    """A job as these checks see it (a ``JobSpec``, or a stored row)."""

    @property
    def id(self) -> str: ...
    @property
    def output_name(self) -> str | None: ...
    @property
    def source(self) -> str: ...


def output_length_problem(tree: OutputTree, job_id: str, output_name: str) -> str | None:
    """Why the file system cannot take this job's video path (a name or the path too long),
    if it cannot; ``tree`` caches the folder parts, which a batch shares."""
    parts = tree.parts(job_id, output_name)
    return _length_problem(output_name, parts, "/".join(parts))


def output_parts(job_id: str, output_name: str | None) -> tuple[str, ...]:
    """A video's path under ``--out``, segment by segment (folders, then ``<stem>.mp4``), as
    ``outputs.video_paths`` names the file of a one-video job."""
    return OutputTree().parts(job_id, output_name)


def _length_problem(output_name: str, parts: tuple[str, ...], path: str) -> str | None:
    """Why the file system cannot take this video's ``path`` (its ``parts`` joined), if it
    cannot: a name or the whole path too long."""
    if path.isascii() and len(path) <= MAX_NAME_BYTES - DOWNLOAD_NAME_EXTRA_BYTES:
        return None  # the common case: shorter than any bound, whole
    shown = show(output_name)
    for i, part in enumerate(parts):
        size = len(part.encode())
        if i == len(parts) - 1:
            size -= len(".mp4")
            limit, what = MAX_NAME_BYTES - DOWNLOAD_NAME_EXTRA_BYTES, "name"
            why = (
                f"file systems take {MAX_NAME_BYTES} bytes a name, and a download adds up to "
                f"{DOWNLOAD_NAME_EXTRA_BYTES}"
            )
        else:
            limit, what, why = MAX_NAME_BYTES, "folder name", "what file systems take"
        if size > limit:
            return f"output {shown} has a {what} of {size:,} bytes; at most {limit} ({why})"
    if (total := len(path.encode())) > MAX_OUTPUT_PATH_BYTES:
        return (
            f"output {shown} makes a path of {total:,} bytes under the output folder; "
            f"at most {MAX_OUTPUT_PATH_BYTES:,}"
        )
    return None


class OutputTree:
    """The files and folders the jobs' videos take under ``--out``, to find a video that would
    stand where another job needs a folder (``output: x`` makes ``x.mp4``, ``output:
    "x.mp4/{id}"`` needs a folder ``x.mp4``): a file system holds one or the other, and the
    download of the second would fail at every run.
    """

    def __init__(self) -> None:
        self._files: dict[str, str] = {}
        self._folders: dict[str, str] = {}
        self._folders_of: dict[str, tuple[str, ...]] = {}
        """Folder part of an output -> its safe names: a batch shares a few (ids differ)."""

    def parts(self, job_id: str, output_name: str | None) -> tuple[str, ...]:
        """``output_parts``, each distinct folder part cleaned once."""
        head, _, last = (output_name or "").rpartition("/")
        if last in ("", ".", ".."):  # no output, or one the loader would refuse anyway
            names = [p for p in (output_name or "").split("/") if p not in ("", ".", "..")]
            if not names:
                return (safe_segment(job_id) + ".mp4",)
            head, last = "/".join(names[:-1]), names[-1]
        if (folders := self._folders_of.get(head)) is None:
            names = [p for p in head.split("/") if p not in ("", ".", "..")]
            folders = self._folders_of[head] = tuple(safe_segment(p) for p in names)
        return (*folders, safe_segment(last) + ".mp4")

    @staticmethod
    def plain_jobs_matter(output_names: Iterable[str | None]) -> bool:
        """Whether jobs without ``output`` (``<id>.mp4`` at the top) can clash at all: only with
        a top-level folder whose name ends in ``.mp4``. Without one they are not looked at,
        so a 100k-job manifest without ``output`` costs nothing here."""
        tree = OutputTree()
        return any(_top_folder_mp4(tree.parts("", n)) for n in output_names if n and "/" in n)

    def add(self, parts: tuple[str, ...], output_name: str | None, who: str) -> str | None:
        """Take a video's path (``parts``); the clash it makes with one taken before, if any
        (then it is not taken). ``who`` names the job in messages: "job a (m.yaml:3)"."""
        file = "/".join(parts)
        folders = ["/".join(parts[:i]) for i in range(1, len(parts))] if len(parts) > 1 else []
        for folder in folders:
            if (other := self._files.get(folder)) is not None:
                shown = show(output_name)
                return f"output {shown} needs a folder {folder} where {other} writes its video"
        if (other := self._folders.get(file)) is not None:
            return f"its video {file} would stand where {other} needs a folder"
        self._files.setdefault(file, who)
        for folder in folders:
            self._folders.setdefault(folder, who)
        return None


def _top_folder_mp4(parts: tuple[str, ...]) -> bool:
    return len(parts) > 1 and parts[0].endswith(".mp4")


def output_clashes(
    stored: Iterable[tuple[str, str | None, str | None]],
    specs: Sequence[Placed],
    *,
    tree: OutputTree | None = None,
) -> list[Problem]:
    """The problems of ``specs`` whose video would stand where another job needs a folder, or
    the other way round: against the ``stored`` jobs ((id, output_name, source), which are not
    reported themselves) and against the specs before them.

    Jobs without ``output`` are only looked at when a top-level folder could clash with them
    (the caller gives stored ones only then: ``OutputTree.plain_jobs_matter``).
    """
    tree = tree or OutputTree()
    taken = [
        (tree.parts(i, o), o, f"job {i} (already loaded from {src or '?'})") for i, o, src in stored
    ]
    mine = [
        (spec, tree.parts(spec.id, spec.output_name))
        for spec in specs
        if spec.output_name is not None
    ]
    plain = any(_top_folder_mp4(p) for p, _, _ in taken) or any(_top_folder_mp4(p) for _, p in mine)
    for parts, output_name, who in taken:
        tree.add(parts, output_name, who)
    of = {spec.id: parts for spec, parts in mine}
    problems = []
    for spec in specs:
        path = of.get(spec.id) if spec.output_name is not None else None
        if path is None:
            if not plain:
                continue
            path = tree.parts(spec.id, None)
        if msg := tree.add(path, spec.output_name, f"job {spec.id} ({spec.source})"):
            problems.append(Problem(spec.source, spec.id, msg))
    return problems


def output_problems(specs: Sequence[JobSpec]) -> list[Problem]:
    """Videos of ``specs`` the file system cannot take: paths too long, a file where a folder
    must be.

    After every manifest is read (clashes cross files). Only jobs with ``output`` are looked
    at, jobs without it only when a top-level folder could clash with them, and the jobs are
    walked in order (to name the second of two) only when some path is both a file and a
    folder: for 100k jobs under ``{batch}/{id}`` this costs about 0.1 s.
    """
    problems: list[Problem] = []
    tree, files, parents = OutputTree(), set(), set()
    for spec in specs:
        if (output_name := spec.output_name) is None:
            continue
        parts = tree.parts(spec.id, output_name)
        path = "/".join(parts)
        if problem := _length_problem(output_name, parts, path):
            problems.append(Problem(spec.source, spec.id, problem))
        files.add(path)
        if len(parts) > 1:
            parents.add(parts[:-1])
    if not parents:  # without a folder, no video can stand where one must be
        return problems
    folders = {"/".join(p[:i]) for p in parents for i in range(1, len(p) + 1)}
    if any("/" not in f and f.endswith(".mp4") for f in folders):
        files.update(tree.parts(s.id, None)[0] for s in specs if s.output_name is None)
    if not files.isdisjoint(folders):
        problems += output_clashes((), specs, tree=tree)
    return problems
