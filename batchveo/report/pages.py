"""A report of many page files: where each goes, how they link, how they are written.

A big night is ``CARDS_PER_PAGE`` cards a page: the first page is the file asked for
(``report.html``: the night's numbers, the jobs that need attention and the first cards),
the others go in a folder beside it named after it (``report-pages/2.html``, ...), all
linked to each other with relative URLs, so the folder can be moved or zipped whole. A
night that fits one page is one file, as it always was, and no folder.

Each page is written to a temp name in its folder and fsynced as it is made; only when
every page is ready are they renamed over the old ones (the first page last), the folders
fsynced and the pages of an earlier, longer report removed. A crash before that leaves the
old report whole; one amid the renames leaves each page whole, of one night or the other.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from batchveo.report.paths import rel_url

CARDS_PER_PAGE = 1000
"""Cards a page holds: a page of about 1 MB that a browser lays out at once (5,000 cards
on one page still scroll smoothly, but a night of 100,000 made a 47 MB page)."""
_PAGE_NAME = re.compile(r"^([0-9]+)\.html$")


@dataclass(frozen=True)
class PageFiles:
    """The files of a report whose first page is ``first``, of ``count`` pages."""

    first: Path
    count: int

    @property
    def folder(self) -> Path:
        """Where the pages after the first go: ``report-pages`` beside ``report.html``."""
        return self.first.with_name(f"{self.first.stem}-pages")

    def path(self, number: int) -> Path:
        return self.first if number == 1 else self.folder / f"{number}.html"

    def url(self, src: int, dst: int) -> str:
        """The relative URL of page ``dst`` from page ``src``."""
        return rel_url(self.path(dst), self.path(src).absolute().parent)


@dataclass(frozen=True)
class Pager:
    """Where one page is among the others: what its navigation links to."""

    number: int
    files: PageFiles
    first_job: int
    """Position of the page's first card in the whole report (1: the first job)."""
    last_job: int
    total_jobs: int

    @property
    def count(self) -> int:
        return self.files.count

    def href(self, number: int) -> str:
        return self.files.url(self.number, number)


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not possible on every platform; the rename stands
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path)
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


class PageWriter:
    """The pages of one report: each written aside as it is made, all put in place at the
    end (``commit``), or none (``abort``: the old report stays as it was)."""

    def __init__(self, files: PageFiles):
        self.files = files
        self.bytes = 0
        self._temps: dict[int, Path] = {}
        self._made_folder = False

    def write(self, number: int, data: bytes) -> None:
        path = self.files.path(number)
        if number > 1 and not self.files.folder.is_dir():
            self.files.folder.mkdir(parents=True)
            self._made_folder = True
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp(path)
        self._temps[number] = tmp
        _write_synced(tmp, data)
        self.bytes += len(data)

    def commit(self) -> None:
        """Every page in place (the first last), the folders fsynced, older pages gone."""
        for number in sorted(self._temps, reverse=True):
            os.replace(self._temps.pop(number), self.files.path(number))
        if self.files.count > 1:
            _fsync_dir(self.files.folder)
        _fsync_dir(self.files.first.absolute().parent)
        self._remove_stale()

    def abort(self) -> None:
        for tmp in self._temps.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._temps.clear()
        if self._made_folder:
            with contextlib.suppress(OSError):
                self.files.folder.rmdir()  # only if empty: nothing of an older report

    def _remove_stale(self) -> None:
        """Pages beyond this report's last, left by an earlier report of more pages; the
        folder too when it is left empty. Only names this module writes are touched."""
        folder = self.files.folder
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in names:
            m = _PAGE_NAME.match(name)
            if m and int(m.group(1)) > self.files.count:
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
        if self.files.count == 1:
            with contextlib.suppress(OSError):
                folder.rmdir()
