"""A YAML manifest is read from its file and each job handed on as it is composed
(``yamljobs``): what the load reports and stores is what reading the whole text says, and
what cannot be handed on early (a ``defaults:`` after ``jobs:``, anchors, another shape) is
read the whole way instead.

The reference in each comparison is the whole way itself (``_Hand.read`` told to give up,
so the text is read whole as before this module); the blocks the file is read in are made
tiny, so that lines and characters are cut between them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from batchveo.cli import main
from batchveo.errors import ManifestError
from batchveo.manifest import loader, opening, read_manifests, stream_manifests, yamljobs
from batchveo.manifest.loader import Item
from batchveo.manifest.yamlscan import Scan, scan_yaml
from batchveo.spec import JobSpec

MANY = "".join(f"  - prompt: take {i}\n" for i in range(40))

DOCUMENTS = {
    "defaults first": "defaults:\n  seed: 3\n  aspectRatio: '9:16'\njobs:\n  - prompt: a\n"
    "  - {prompt: b, seed: 4}\n",
    "a bare list": "- prompt: a\n- just text\n- {prompt: b, seeed: 1}\n",
    "a BOM": "\ufeffdefaults:\n  seed: 3\njobs:\n  - prompt: a\n  - prompt: ''\n",
    "CRLF": "defaults:\r\n  seed: 3\r\njobs:\r\n  - prompt: a\r\n  - {prompt: b, bogus: 1}\r\n",
    "keys written twice": "jobs:\n  - prompt: a\n    prompt: b\n    seed: 1\n    seed: 2\n"
    "  - prompt: c\n",
    "unknown keys and bad defaults before jobs": "extra: 1\ndefaults: {seed: x, bogus: 2}\n"
    "zz: 3\njobs:\n  - prompt: ''\n  - prompt: ok\n",
    "a quoted jobs key": '"jobs":\n  - prompt: a\n  - prompt: é€🌊 ünïcode\n',
    "a bad route in defaults": "defaults:\n  provider: nosuch\njobs:\n  - prompt: a\n",
    "an empty list": "defaults: {seed: 1}\njobs: []\n",
    "a YAML error after many jobs": f"jobs:\n{MANY}  - prompt: [unclosed\n  - prompt: z\n",
    "a second document": f"- prompt: a\n{MANY.replace('  - ', '- ')}---\n- prompt: c\n",
    "a job that cannot be built": f"jobs:\n{MANY}  - {{prompt: b, referenceImages: [{{[x]: y}}]}}"
    "\n",
    "a character YAML refuses": f"jobs:\n{MANY}  - prompt: bell\x07\n",
    "not UTF-8 deep in": f"jobs:\n{MANY}  - prompt: caf\udce9\n",
    "white space only": "  \n\n\t\n",
    # read the whole way:
    "defaults after jobs": "jobs:\n  - prompt: a\n  - prompt: b\ndefaults:\n  seed: 7\n",
    "an unknown key after jobs": "jobs:\n  - prompt: ''\nextra: 1\n",
    "jobs twice": "jobs:\n  - prompt: a\njobs:\n  - prompt: b\n",
    "a merge key at the top": "<<: {defaults: {seed: 4}}\njobs:\n  - prompt: a\n",
    "a flow mapping at the top": "{jobs: [{prompt: a}], defaults: {seed: 1}}\n",
    "an indented top": "  jobs:\n    - prompt: a\n  defaults:\n    seed: 2\n",
    "a flow mapping at the top, jobs: starting a line": "{\njobs: [{prompt: a}], "
    "defaults: {seed: 1}}\n",
    "an indented top, jobs: starting a quoted text's line": '  notes: "x\njobs: y"\n  jobs:\n'
    "    - prompt: a\n  defaults: {seed: 2}\n",
    "a line break YAML alone sees": "jobs:\r  - prompt: a\rdefaults:\r  seed: 3\r",
    "an anchor": "defaults: &d {seed: 1}\njobs:\n  - prompt: a\n",
    "two documents of mappings": "jobs:\n  - prompt: a\n---\njobs:\n  - prompt: c\n",
    "no list of jobs": "defaults: {seed: 1}\njobs:\n",
    "a comment only": "# nothing yet\n",
}
HANDED_ON = list(DOCUMENTS)[: list(DOCUMENTS).index("defaults after jobs")]
REREAD = {"a job that cannot be built", "a character YAML refuses"}
"""Handed on, then the text read again for the message of what the parser met (whose
message reading the whole way names the first value that cannot be built, or the text's
position)."""


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def outcome(path: Path) -> list[Any]:
    """What ``read_manifests`` gives: each spec's prompt, parameters and place, or every
    problem."""
    try:
        specs = read_manifests([path]).specs
    except ManifestError as e:
        return [str(p) for p in e.problems]
    return [(s.prompt, sorted(s.params.items()), s.source) for s in specs]


@pytest.fixture
def whole_texts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the times a YAML manifest's text is read whole."""
    counted: list[int] = []
    real = yamljobs._text

    def text(*args: Any) -> str | None:
        counted.append(1)
        return real(*args)

    monkeypatch.setattr(yamljobs, "_text", text)
    return counted


@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
@pytest.mark.parametrize("what", list(DOCUMENTS))
def test_a_manifest_read_job_by_job_gives_what_the_whole_text_gives(
    what: str,
    block_bytes: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    whole_texts: list[int],
) -> None:
    path = write(tmp_path / "m.yaml", DOCUMENTS[what])
    monkeypatch.setattr(opening, "READ_CHUNK_BYTES", block_bytes)
    got = outcome(path)
    assert bool(whole_texts) == (what not in HANDED_ON or what in REREAD)
    with monkeypatch.context() as m:
        m.setattr(yamljobs._Hand, "read", lambda self, stream: yamljobs._Whole("test"))
        whole = outcome(path)
    assert got == whole and got


def test_the_jobs_are_handed_on_before_the_end_of_the_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of jobs reaches the store while the parser is still reading the file, and
    the text is never read whole."""
    path = write(tmp_path / "m.yaml", f"defaults: {{seed: 5}}\njobs:\n{MANY}")
    monkeypatch.setattr(loader, "STREAM_CHUNK_ITEMS", 3)
    monkeypatch.setattr(opening, "READ_CHUNK_BYTES", 64)
    monkeypatch.setattr(yamljobs, "read_bounded", None)  # never called
    fd_offsets: list[int] = []
    real_read = yamljobs._Bytes.read

    def read(self: yamljobs._Bytes, size: int) -> bytes:
        fd_offsets.append(os.lseek(self._fd, 0, os.SEEK_CUR))
        return real_read(self, size)

    monkeypatch.setattr(yamljobs._Bytes, "read", read)
    seen: list[tuple[int, int]] = []  # (jobs so far, bytes read then)

    def take(items: list[Item]) -> None:
        seen.append((len(items), fd_offsets[-1]))

    stream_manifests([path], take)
    assert sum(n for n, _ in seen) == 40
    assert seen[0][1] < path.stat().st_size // 2


def test_a_yaml_error_after_many_jobs_is_one_line_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loader, "STREAM_CHUNK_ITEMS", 3)
    write(tmp_path / "m.yaml", f"jobs:\n{MANY}  - prompt: 'never closed\n")
    result = invoke("load", "m.yaml", "--db", "jobs.db")
    assert result.exit_code == 2, result.output
    assert "m.yaml:43: not valid YAML: found unexpected end of stream" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "jobs.db").exists()


def test_the_jobs_problems_before_a_yaml_error_are_listed_with_it_in_file_order(
    tmp_path: Path,
) -> None:
    """Reading the whole way lists the YAML error alone; job by job, the problems of the
    jobs before it are found first and listed too (the load is refused either way)."""
    path = write(tmp_path / "m.yaml", f"jobs:\n  - prompt: ''\n{MANY}  - {{prompt: x\n")
    assert outcome(path) == [
        f"{path}:2: prompt is empty",
        f"{path}:44: not valid YAML: did not find expected ',' or '}}'",
    ]


def test_a_second_document_is_refused_as_the_whole_way_refuses_it(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "- prompt: a\n- prompt: b\n---\n- prompt: c\n")
    assert outcome(path) == [f"{path}:3: not valid YAML: but found another document"]


def test_defaults_after_the_jobs_still_reach_every_job(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "jobs:\n  - prompt: a\n  - prompt: b\ndefaults:\n  seed: 7\n")
    specs = read_manifests([path]).specs
    assert [(s.prompt, s.params.get("seed")) for s in specs] == [("a", 7), ("b", 7)]


def test_a_load_job_by_job_stores_every_job_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loader, "STREAM_CHUNK_ITEMS", 3)
    monkeypatch.setattr(opening, "READ_CHUNK_BYTES", 5)
    write(
        tmp_path / "m.yaml",
        f"\ufeffdefaults:\n  seed: 9\njobs:\n{MANY}".replace("\n", "\r\n"),
    )
    result = invoke("load", "m.yaml", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    assert "40 new" in result.output
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        stored = conn.execute("SELECT prompt, source FROM jobs ORDER BY rowid").fetchall()
    assert stored == [(f"take {i}", f"m.yaml:{i + 4}") for i in range(40)]


SCANS = {
    "defaults:\n  seed: 1\njobs:\n  - prompt: a\n  # note\n\n-  x\n": True,
    "jobs:\n- prompt: a\n  seed: 1\n": True,
    "'jobs' :\n  - prompt: a\n": True,
    "jobs:\n  - prompt: a\ndefaults: {}\n": False,
    "jobs:\n  - prompt: a\n-x: 1\n": False,
    "jobs:\n  - prompt: a\n...\n": False,
    'jobs:\n  - prompt: a\n"later": 1\n': False,
    "- prompt: jobs:\n": False,
    "  jobs:\n    - prompt: a\n": False,
    "jobs:\r  - prompt: a\rdefaults:\r": False,
    "jobs:\n  - prompt: a\u2028defaults: {}\n": False,
}


@pytest.mark.parametrize("block_bytes", [1, 3, 1 << 20])
@pytest.mark.parametrize("text", list(SCANS))
def test_the_scan_sees_whether_a_key_may_follow_jobs(
    text: str, block_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(opening, "READ_CHUNK_BYTES", block_bytes)
    scan = scanned(write(tmp_path / "m.yaml", text))
    assert isinstance(scan, Scan) and scan.jobs_last == SCANS[text]


@pytest.mark.parametrize(
    ("text", "plain"), [("- prompt: a & b\n", False), ("- prompt: '*'\n", False),
                        ("- !!str x\n", False), ("- prompt: a\n", True)]
)  # fmt: skip
def test_the_scan_sees_anything_like_an_anchor_alias_or_tag(
    text: str, plain: bool, tmp_path: Path
) -> None:
    scan = scanned(write(tmp_path / "m.yaml", text))
    assert isinstance(scan, Scan) and scan.plain == plain


def scanned(path: Path) -> Scan | str | tuple[int, str]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return scan_yaml(fd)
    finally:
        os.close(fd)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_specs_are_what_the_whole_way_makes_field_for_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "m.yaml", DOCUMENTS["defaults first"] + MANY)
    specs: list[JobSpec] = read_manifests([path]).specs
    monkeypatch.setattr(yamljobs._Hand, "read", lambda self, stream: yamljobs._Whole("test"))
    whole = read_manifests([path]).specs
    assert [vars(s) for s in specs] == [vars(s) for s in whole] and len(specs) == 42


def test_a_key_after_jobs_the_scan_missed_refuses_the_load_rather_than_lose_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan rules a key after ``jobs:`` out before a job is handed on; were it wrong,
    the jobs handed on without the ``defaults:`` that follow them are not stored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Scan, "jobs_last", property(lambda self: True))
    write(tmp_path / "m.yaml", DOCUMENTS["defaults after jobs"])
    result = invoke("load", "m.yaml", "--db", "jobs.db")
    assert result.exit_code == 2, result.output
    assert "m.yaml:4: 'defaults' comes after 'jobs:'; move it before" in result.output
    assert not (tmp_path / "jobs.db").exists()


SCALARS = (
    "{prompt: a, seed: 0x1F, durationSeconds: 0o17, big: 1_000, huge: "
    + "9" * 5000
    + ", f: 1.5e+3, inf: -.inf, yes: yes, t: true, n: ~, e: , d: 2001-12-14, q: '8', 1: one,"
    " 16:9: x, aspect: 16:9, '=': v, dup: 1, dup: 2}"
)


@pytest.mark.parametrize(
    "text",
    [SCALARS, "{prompt: a, refs: [x, y]}", "{prompt: a, <<: {seed: 1}}", "{= : 1, prompt: a}",
     "{prompt: a, <<: x}", "{prompt: a, seed: 2001-02-30}", "[not, a, mapping]", "just text",
     "{prompt: {nested: 1}}"],
)  # fmt: skip
def test_a_job_built_directly_is_what_construct_document_builds(text: str) -> None:
    """A job that is a mapping of scalars is built without PyYAML's bookkeeping
    (``yamlstream._build``); the value is the one ``construct_document`` makes."""
    from batchveo.manifest import yamlstream
    from batchveo.manifest.yamlfile import StreamLoader

    def outcome(build: Callable[[Any], Any]) -> object:
        loader = StreamLoader(text)
        try:
            return build(loader)
        except Exception as e:  # the same error either way
            return f"{type(e).__name__}: {e}"
        finally:
            loader.dispose()

    direct = outcome(lambda loader: yamlstream._build(loader, loader.get_single_node()))
    whole = outcome(lambda loader: loader.construct_document(loader.get_single_node()))
    assert direct == whole


def test_when_the_store_stops_taking_jobs_the_reading_stops_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_texts: list[int]
) -> None:
    """What the sink raises (the store failed) is not taken for the YAML's: it goes on up
    at once, the file not read again."""
    path = write(tmp_path / "m.yaml", f"jobs:\n{MANY}")
    monkeypatch.setattr(loader, "STREAM_CHUNK_ITEMS", 3)
    taken: list[int] = []

    def take(items: list[Item]) -> None:
        taken.append(len(items))
        raise RuntimeError("the store stopped")

    with pytest.raises(RuntimeError, match="the store stopped"):
        stream_manifests([path], take)
    assert taken == [3] and not whole_texts


def test_an_anchor_the_scan_did_not_see_is_never_built_job_by_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the file changed between the scan and the parse (here: the scan told that a
    file with anchors has none), an anchored job is refused before it is built (an alias
    bomb is counted only the whole way); an anchor before the jobs reads it the whole
    way."""
    real_block = Scan.block

    def block(self: Scan, data: bytes) -> None:
        real_block(self, data)
        self.plain = True

    monkeypatch.setattr(Scan, "block", block)
    bomb = "- prompt: a\n- &a [x, x]\n- &b [*a, *a]\n- [*b, *b]\n"
    path = write(tmp_path / "m.yaml", bomb)
    assert outcome(path) == [f"{path}: {yamljobs.CHANGED}"]
    early = write(tmp_path / "e.yaml", "defaults: &d {seed: 1}\njobs:\n  - prompt: a\n")
    assert [dict(params)["seed"] for _, params, _ in outcome(early)] == [1]
