"""Manifests that used to slip through, hang or crash ``load``: each must be one line per
problem (``FILE:LINE`` or ``FILE row N``), exit 2, and no database at all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from batchveo import manifest
from batchveo.cli import main
from batchveo.errors import ManifestError
from batchveo.manifest import opening, output_paths, read_manifests, yamlfile
from batchveo.run import downloader
from batchveo.store import Store
from tests.helpers import make_spec
from tests.test_manifest import encoded, one_problem, png, problems, write


def cli_load(tmp_path: Path, *manifests: Path) -> tuple[int, list[str], Path]:
    """``batchveo load`` in-process: exit code, the lines on stderr, the database path."""
    db = tmp_path / "jobs.db"
    result = CliRunner().invoke(main, ["load", *map(str, manifests), "--db", str(db)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr.splitlines(), db


def assert_refused(tmp_path: Path, path: Path, *expected: str) -> None:
    """Exit 2, exactly these problem lines, and no database file (not even created)."""
    code, lines, db = cli_load(tmp_path, path)
    assert (code, lines) == (2, [f"batchveo: {e}" for e in expected])
    assert not db.exists() and not list(tmp_path.glob("jobs.db*"))


# --- 1. CSV quotes -----------------------------------------------------------------------------

UNCLOSED = 'id,prompt\nr1,A fox in snow\nr2,"A harbour at dawn\nr3,A lighthouse\nr4,A desert road\n'
UNCLOSED_MSG = (
    "not valid CSV: a quote in this row (line 3) is never closed, "
    "so it would swallow every later row"
)


def test_csv_unclosed_quote_is_refused_not_swallowing_later_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", UNCLOSED.encode())
    assert one_problem(path) == f"{path} row 2: {UNCLOSED_MSG}"


def test_csv_unclosed_quote_through_the_cli(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", UNCLOSED.encode())
    assert_refused(tmp_path, path, f"{path} row 2: {UNCLOSED_MSG}")


def test_csv_text_after_a_closing_quote_is_refused(tmp_path: Path) -> None:
    """Lenient CSV drops the quotes of ``"A harbour" at dawn`` and reads on silently."""
    path = write(tmp_path / "m.csv", b'id,prompt\nr1,ok\nr2,"A harbour" at dawn\nr3,fine\n')
    assert one_problem(path) == (
        f"{path} row 2: not valid CSV: text follows the closing quote of a cell on line 3 "
        '(a quote inside a quoted cell is written twice: "")'
    )


def test_csv_stray_quote_that_swallows_lines_until_another_quote(tmp_path: Path) -> None:
    text = b'id,prompt\nr1,"A harbour\nr2,A "tall" lighthouse\nr3,fine\n'
    path = write(tmp_path / "m.csv", text)
    assert one_problem(path) == (
        f"{path} row 1: not valid CSV: a quoted cell from line 2 ends on line 3 "
        "with text right after its closing quote (is a quote left unclosed?)"
    )


def test_csv_unclosed_quote_in_a_long_file_is_named_as_such(tmp_path: Path) -> None:
    """Past 128 KB the csv module stops at its cell size limit, before the end of the file."""
    rows = "".join(f"r{i},a shot of the coast number {i}\n" for i in range(3, 10_000))
    path = write(tmp_path / "m.csv", f'id,prompt\nr1,ok\nr2,"A harbour at dawn\n{rows}'.encode())
    assert one_problem(path) == (
        f"{path} row 2: not valid CSV: a cell of this row (from line 3) is over 131,072 "
        "characters: is a quote left unclosed?"
    )


def test_csv_quotes_that_are_fine_keep_working(tmp_path: Path) -> None:
    text = (
        b'id,prompt\nr1,"A quiet street,\nthen rain ""falls"""\n'
        b'r2,A "tall" lighthouse\nr3,"two\r\n\r\nparagraphs"\n'
    )
    specs = read_manifests([write(tmp_path / "m.csv", text)]).specs
    assert [(s.id, s.prompt, s.source.rsplit(" ", 1)[1]) for s in specs] == [
        ("r1", 'A quiet street,\nthen rain "falls"', "1"),
        ("r2", 'A "tall" lighthouse', "2"),
        ("r3", "two\r\n\r\nparagraphs", "3"),
    ]


# --- 3. manifests that never end ---------------------------------------------------------------


def _watchdog(fn: object, timeout_s: float = 20.0) -> list[BaseException | object]:
    """Run ``fn`` in a thread; a hang shows up as an empty result, not a frozen suite."""
    out: list[BaseException | object] = []

    def target() -> None:
        try:
            out.append(fn())  # type: ignore[operator]
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout_s)
    return out


def _release(fifo: Path) -> None:
    """Let a reader still blocked in ``open()`` of the FIFO go (only before the fix)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "m.yaml"
    os.mkfifo(fifo)
    try:
        result = _watchdog(lambda: read_manifests([fifo]))
        assert result, "load blocked on the FIFO"
        (error,) = result
        assert isinstance(error, ManifestError)
        assert str(error) == f"{fifo}: is a named pipe, not a manifest file"
    finally:  # release a reader that may still be blocked in open()
        _release(fifo)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_through_the_cli_exits_2(tmp_path: Path) -> None:
    fifo = tmp_path / "m.csv"
    os.mkfifo(fifo)
    db = tmp_path / "jobs.db"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "batchveo", "load", str(fifo), "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        _release(fifo)
    assert (proc.returncode, proc.stderr) == (
        2,
        f"batchveo: {fifo}: is a named pipe, not a manifest file\n",
    )
    assert not db.exists()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_link_to_a_device_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Should the type check ever go, the size bound (made small here) still stops the read.
    monkeypatch.setattr(opening, "MAX_MANIFEST_BYTES", 2**20)
    link = tmp_path / "m.yaml"
    link.symlink_to("/dev/zero")
    assert one_problem(link) == f"{link}: is a device, not a manifest file"
    assert_refused(tmp_path, link, f"{link}: is a device, not a manifest file")


def test_a_manifest_over_the_size_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opening, "MAX_MANIFEST_BYTES", 1000)
    rows = "".join(f"fox {i}\n" for i in range(200))
    ok = write(tmp_path / "ok.csv", "prompt\n" + rows[:993].rsplit("\n", 1)[0] + "\n")
    assert len(ok.read_bytes()) <= 1000 and len(read_manifests([ok]).specs) > 100
    big = write(tmp_path / "big.csv", "prompt\n" + rows)
    assert one_problem(big) == (
        f"{big}: is over 1,000 bytes, the most a manifest may be (split it into several files)"
    )


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
def test_the_size_bound_holds_for_files_that_lie_about_their_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc files say 0 bytes and are longer: the bound is on what is read, not on stat."""
    monkeypatch.setattr(opening, "MAX_MANIFEST_BYTES", 100)
    link = tmp_path / "m.yaml"
    link.symlink_to("/proc/self/status")
    assert one_problem(link) == (
        f"{link}: is over 100 bytes, the most a manifest may be (split it into several files)"
    )


def test_the_bound_is_generous() -> None:
    assert manifest.MAX_MANIFEST_BYTES >= 2**30


# --- 4. alias bombs and long values in messages ------------------------------------------------


def laughs(levels: int = 9) -> str:
    """The billion laughs: 9 levels of 9 aliases, about 1 KB, 9**9 strings once expanded."""
    lines = ["  a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "defaults:\n" + "\n".join(lines) + f"\njobs:\n  - prompt: *a{levels - 1}\n"


BOMB_MSG = (
    "its aliases expand it to over 100,000,000 values; refused as an alias bomb "
    "(a manifest of a million jobs that share an anchor is far below that)"
)


def test_billion_laughs_is_refused_before_it_is_built(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.yaml", laughs())
    assert len(path.read_bytes()) < 1100
    assert one_problem(path) == f"{path}: {BOMB_MSG}"


def test_billion_laughs_through_the_cli(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.yaml", laughs())
    assert_refused(tmp_path, path, f"{path}: {BOMB_MSG}")


def test_merge_keys_that_double_at_every_level_are_refused(tmp_path: Path) -> None:
    """``<<: [*m, *m]`` at every level: 2**40 values once expanded. PyYAML releases that copy
    every merged pair would build them all; the count refuses it whatever the release."""
    lines = ["  m0: &m0 {seed: 1}"]
    lines += [f"  m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 40)]
    text = "defaults:\n" + "\n".join(lines) + "\njobs:\n  - {<<: *m39, prompt: p}\n"
    path = write(tmp_path / "merge.yaml", text)
    assert one_problem(path) == f"{path}: {BOMB_MSG}"


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "loop.yaml", "- &job {prompt: p, <<: *job}\n")
    assert one_problem(path) == (
        f"{path}:1: an alias refers to a value that contains it (*job inside &job); "
        "a manifest cannot be endless"
    )


def test_shared_defaults_anchor_stays_far_below_the_bound(tmp_path: Path) -> None:
    """A million jobs that each merge a defaults anchor must load: measured on a thousand."""
    first = "  - &first {aspectRatio: '9:16', durationSeconds: 8, seed: 1, prompt: s, id: s}\n"
    jobs = "".join(f"  - {{<<: *first, prompt: shot {i}, id: s{i}}}\n" for i in range(1000))
    path = write(tmp_path / "shared.yaml", "jobs:\n" + first + jobs)
    assert len(read_manifests([path]).specs) == 1001
    node = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    size = yamlfile.expanded_size(node, manifest.MAX_YAML_EXPANDED_NODES)
    assert 1000 * size < manifest.MAX_YAML_EXPANDED_NODES / 2


def test_messages_show_at_most_80_characters_of_a_value(tmp_path: Path) -> None:
    path = write(
        tmp_path / "long.yaml",
        "- prompt: p\n  aspectRatio: " + "x" * 10_000 + "\n"
        "- prompt: &l [" + ", ".join(["word"] * 5000) + "]\n"
        "- prompt: q\n  ? " + "k" * 10_000 + "\n  : 1\n",
    )
    found = problems(path)
    assert found == [
        f"{path}:1: aspectRatio must be one of 16:9, 9:16, not '{'x' * 78}…",
        f"{path}:3: prompt must be text, not ['word', 'word', 'word', 'word', 'word', 'word', …]",
        f"{path}:4: unknown key '{'k' * 78}… (known: {', '.join(manifest.JOB_KEYS)})",
    ]


def test_shared_lists_in_a_message_are_not_expanded(tmp_path: Path) -> None:
    """Under the bound but still 9**7 strings: the message must not walk them all."""
    path = write(tmp_path / "wide.yaml", laughs(7))
    found = problems(path)
    assert found[-1].startswith(f"{path}:10: prompt must be text, not [[[")
    assert all(len(line) - len(str(path)) < 250 for line in found)  # not the 9**7 strings


# --- 5. numbers beyond Python's int-string limit --------------------------------------------

HUGE = "7" * 5000
HUGE_LINES = [
    "seed must be between 0 and 4294967295, not a 5000-digit number",
    "durationSeconds must be 4, 6 or 8, not a 5000-digit number",
    "repeat must be between 1 and 10000, not a 5000-digit number",
]


def test_huge_integers_in_yaml_are_one_line_per_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "big.yaml",
        f"- prompt: p\n  seed: {HUGE}\n  durationSeconds: {HUGE}\n  repeat: {HUGE}\n"
        f"- prompt: q\n  id: {HUGE}\n  enhancePrompt: -{HUGE}\n  seed: 0x{'f' * 5000}\n",
    )
    assert problems(path) == [f"{path}:1: {m}" for m in HUGE_LINES] + [
        f"{path}:5: id is 5000 characters; at most 128",
        f"{path}:5: enhancePrompt must be true or false, not a negative 5000-digit number",
        f"{path}:5: seed must be between 0 and 4294967295, not a 5000-digit number",
    ]


def test_huge_integers_in_csv_are_one_line_per_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "big.csv", f"prompt,seed,durationSeconds,repeat\np,{HUGE},{HUGE},{HUGE}\n"
    )
    assert problems(path) == [f"{path} row 1: {m}" for m in HUGE_LINES]


def test_huge_integers_through_the_cli(tmp_path: Path) -> None:
    path = write(tmp_path / "big.yaml", f"- prompt: p\n  seed: {HUGE}\n")
    assert_refused(tmp_path, path, f"{path}:1: {HUGE_LINES[0]}")


def test_long_but_convertible_numbers_are_still_shown(tmp_path: Path) -> None:
    path = write(tmp_path / "n.yaml", "- prompt: p\n  seed: 123456789012345678901234567890\n")
    assert one_problem(path) == (
        f"{path}:1: seed must be between 0 and 4294967295, not 123456789012345678901234567890"
    )


# --- 7. control characters in prompts ------------------------------------------------------

CTRL = "only line breaks and tabs may be in a prompt"


def test_control_characters_in_yaml_prompts(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        '- prompt: "A fox \\e[31mred"\n'
        '- {prompt: ok, negativePrompt: "blur\\x00"}\n'
        '- prompt: "csi \\x9b here"\n'
        "- prompt: |\n    two lines\n    \twith a tab\n",
    )
    assert problems(path) == [
        f"{path}:1: prompt has the control character U+001B at character 7; {CTRL}",
        f"{path}:2: negativePrompt has the control character U+0000 at character 5; {CTRL}",
        f"{path}:3: prompt has the control character U+009B at character 5; {CTRL}",
    ]


def test_control_characters_in_csv_prompts(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.csv", b'prompt,negativePrompt\nbell\x07,\nfine,"x\x1b"\n"tab\tand\r\nCRLF",\n'
    )
    assert problems(path) == [
        f"{path} row 1: prompt has the control character U+0007 at character 5; {CTRL}",
        f"{path} row 2: negativePrompt has the control character U+001B at character 2; {CTRL}",
    ]


def test_control_characters_through_the_cli(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", '- prompt: "A fox \\e[31mred"\n')
    assert_refused(
        tmp_path, path, f"{path}:1: prompt has the control character U+001B at character 7; {CTRL}"
    )


# --- 6. images must really be images -------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0"))


BROKEN = "its header is missing, cut short or broken"
BROKEN_IMAGES = [
    ("sig.png", b"\x89PNG\r\n\x1a\n", f"is not a readable PNG image ({BROKEN})"),
    ("cut.png", png()[:20], f"is not a readable PNG image ({BROKEN})"),
    ("zero.png", png_header(0, 0), f"is not a readable PNG image ({BROKEN})"),
    ("jfif.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\0" * 32, "is not a readable JPEG"),
    ("half.jpg", encoded("JPEG")[:100], f"is not a readable JPEG image ({BROKEN})"),
    ("riff.webp", b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\0" * 32, "is not a readable WebP"),
    ("wide.png", png_header(40_000, 10), "is 40000×10 pixels; at most 32768 on a side"),
    ("huge.png", png_header(100_000, 100_000), "is not a readable PNG image (over 178,956,970"),
]


@pytest.mark.parametrize(
    ("name", "data", "message"), BROKEN_IMAGES, ids=[b[0] for b in BROKEN_IMAGES]
)
def test_images_whose_header_is_missing_cut_or_insane(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    write(tmp_path / "img" / name, data)
    path = write(tmp_path / "m.yaml", f"- {{prompt: p, image: img/{name}}}\n")
    assert one_problem(path).startswith(f"{path}:1: image img/{name} {message}")


def test_real_images_of_each_kind_load(tmp_path: Path) -> None:
    for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.webp", "WEBP")):
        write(tmp_path / "img" / name, encoded(fmt, (64, 36)))
    path = write(
        tmp_path / "m.yaml",
        "- {prompt: p, referenceImages: [img/a.png, img/b.jpg, img/c.webp]}\n",
    )
    (spec,) = read_manifests([path]).specs
    assert [r.mime_type for r in spec.reference_images] == [
        "image/png",
        "image/jpeg",
        "image/webp",
    ]


def test_a_signature_only_png_through_the_cli(tmp_path: Path) -> None:
    write(tmp_path / "img" / "sig.png", b"\x89PNG\r\n\x1a\n")
    path = write(tmp_path / "m.csv", "prompt,image\np,img/sig.png\n")
    code, lines, db = cli_load(tmp_path, path)
    assert code == 2 and not db.exists()
    assert len(lines) == 1
    assert lines[0].startswith(f"batchveo: {path} row 1: image img/sig.png is not a readable PNG")


# --- 2. output paths the file system cannot take -------------------------------------------


def test_output_file_where_another_job_needs_a_folder(tmp_path: Path) -> None:
    path = write(
        tmp_path / "o.yaml",
        """
        - {prompt: a, id: a, output: x}
        - {prompt: b, id: b, output: "x.mp4/{id}"}
        - {prompt: c, id: c, output: "deep/y.mp4/{id}"}
        - {prompt: d, id: d, output: "deep/y"}
        - {prompt: e, id: plain}
        - {prompt: f, id: f, output: "plain.mp4/{id}"}
        - {prompt: g, id: g, output: "x/{id}"}
        """,
    )
    assert problems(path) == [
        f"{path}:2, job b: output 'x.mp4/b' needs a folder x.mp4 where job a ({path}:1) "
        "writes its video",
        f"{path}:4, job d: its video deep/y.mp4 would stand where job c ({path}:3) needs a folder",
        f"{path}:6, job f: output 'plain.mp4/f' needs a folder plain.mp4 where job plain "
        f"({path}:5) writes its video",
    ]


def test_output_paths_across_manifests_clash(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "- {prompt: a, id: a}\n")
    b = write(tmp_path / "b.csv", "id,prompt,output\nb,b,a.mp4/{id}\n")
    assert problems([a, b]) == [
        f"{b} row 1, job b: output 'a.mp4/b' needs a folder a.mp4 where job a ({a}:1) "
        "writes its video"
    ]
    code, lines, db = cli_load(tmp_path, a, b)
    assert code == 2 and not db.exists()
    assert lines == [
        f"batchveo: {b} row 1, job b: output 'a.mp4/b' needs a folder a.mp4 where job a "
        f"({a}:1) writes its video"
    ]


def test_output_path_too_long_in_total(tmp_path: Path) -> None:
    deep = "/".join(["abcdefghij"] * 100)
    path = write(tmp_path / "o.yaml", f"- {{prompt: p, id: p, output: '{deep}/{{id}}'}}\n")
    message = (
        f"{path}:1, job p: output '{deep[:78]}… makes a path of 1,105 bytes under the output "
        "folder; at most 1,024"
    )
    assert one_problem(path) == message
    assert_refused(tmp_path, path, message)


def test_output_segment_too_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The downloader keeps names under 160 bytes today; the check holds should that change."""
    monkeypatch.setattr(output_paths, "safe_segment", lambda name: name)
    long = "n" * 240
    path = write(tmp_path / "o.yaml", f"- {{prompt: p, id: p, output: 'f/{long}'}}\n")
    assert one_problem(path) == (
        f"{path}:1, job p: output 'f/{long[:76]}… has a name of 240 bytes; at most 232 "
        "(file systems take 255 bytes a name, and a download adds up to 23)"
    )
    folder = write(tmp_path / "f.yaml", f"- {{prompt: p, id: p, output: '{'d' * 300}/x'}}\n")
    assert one_problem(folder) == (
        f"{folder}:1, job p: output '{'d' * 78}… has a folder name of 300 bytes; at most 255 "
        "(what file systems take)"
    )


@pytest.mark.parametrize(
    ("job_id", "output"),
    [("a", None), ("shot 1", None), ("x", "cars/{id}"), ("x", "a//./b/../c"), ("x", "é/ü?")],
)
def test_load_time_paths_are_the_downloaders(job_id: str, output: str | None) -> None:
    name = output.replace("{id}", job_id) if output else None
    job = SimpleNamespace(id=job_id, output_name=name, video_uris=["u"])
    (real,) = downloader.output_paths(Path("/out"), job)  # type: ignore[arg-type]
    assert "/".join(manifest.output_parts(job_id, name)) == str(real.relative_to("/out"))


async def test_output_clashes_with_jobs_already_in_the_database(store: Store) -> None:
    await store.add_jobs([make_spec("a"), make_spec("n", output_name="night/n")])
    with pytest.raises(ManifestError) as info:
        await store.add_jobs(
            [
                make_spec("b", output_name="a.mp4/b", source="m2.yaml:1"),
                make_spec("c", output_name="night/n.mp4/c", source="m2.yaml:2"),
                make_spec("ok", output_name="night/ok", source="m2.yaml:3"),
            ]
        )
    assert str(info.value).splitlines() == [
        "m2.yaml:1, job b: output 'a.mp4/b' needs a folder a.mp4 where job a "
        "(already loaded from jobs.yaml:a) writes its video",
        "m2.yaml:2, job c: output 'night/n.mp4/c' needs a folder night/n.mp4 where job n "
        "(already loaded from jobs.yaml:n) writes its video",
    ]
    assert {j.id for j in await store.jobs()} == {"a", "n"}
    # Loading the same jobs again, or replacing one with itself, is no clash.
    again = await store.add_jobs([make_spec("a"), make_spec("n", output_name="night/n")])
    assert (again.new, again.existing) == (0, 2)
    await store.add_jobs([make_spec("p", output_name="night/p")])
    # A folder already loaded, and a new job without output whose video would stand there.
    await store.add_jobs([make_spec("f", output_name="x.mp4/f")])
    with pytest.raises(ManifestError) as info:
        await store.add_jobs([make_spec("x", source="m3.yaml:1")])
    assert str(info.value) == (
        "m3.yaml:1, job x: its video x.mp4 would stand where job f "
        "(already loaded from jobs.yaml:f) needs a folder"
    )


def test_output_clash_with_the_database_through_the_cli(tmp_path: Path) -> None:
    first = write(tmp_path / "first.yaml", "- {prompt: a, id: a}\n")
    second = write(tmp_path / "second.yaml", "- {prompt: b, id: b, output: 'a.mp4/{id}'}\n")
    code, _, db = cli_load(tmp_path, first)
    assert code == 0
    code, lines, _ = cli_load(tmp_path, second)
    assert (code, lines) == (
        2,
        [
            f"batchveo: {second}:1, job b: output 'a.mp4/b' needs a folder a.mp4 where job a "
            f"(already loaded from {first}:1) writes its video"
        ],
    )
    assert asyncio.run(_ids(db)) == {"a"}


async def _ids(db: Path) -> set[str]:
    async with await Store.open(db) as store:
        return {j.id for j in await store.jobs()}


def test_a_video_uri_urllib_cannot_split_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path / "v.yaml", '- {prompt: p, video: "http://[oops/v.mp4"}\n')
    assert_refused(
        tmp_path,
        path,
        f"{path}:1: video must be the http(s) URI of a previous Veo video, "
        "not 'http://[oops/v.mp4'",
    )


# --- dates: YAML 1.2 has none, and a manifest has no date field ----------------------------


@pytest.mark.parametrize("whole_way", [False, True], ids=["job by job", "the whole way"])
def test_a_date_shaped_value_is_its_text_and_an_impossible_date_is_a_problem_not_a_crash(
    tmp_path: Path, whole_way: bool
) -> None:
    # `2001-02-30` made PyYAML raise ValueError (exit 70, "a bug"); `2001-02-03` became a
    # date, refused as a prompt. A tag or an anchor sends the file the whole way instead.
    text = "jobs:\n  - id: 2001-02-03\n    prompt: 2001-02-30\n"
    if whole_way:
        text = "jobs:\n  - id: 2001-02-03\n    prompt: &p 2001-02-30\n"
        text += "  - id: b\n    prompt: !!timestamp 2001-02-03 10:00:00\n"
        text += "  - id: c\n    prompt: *p\n"
    path = write(tmp_path / "dates.yaml", text.encode())
    expected = [("2001-02-03", "2001-02-30")]
    if whole_way:
        expected += [("b", "2001-02-03 10:00:00"), ("c", "2001-02-30")]
    assert [(s.id, s.prompt) for s in read_manifests([path]).specs] == expected
    seed = write(tmp_path / "seed.yaml", b"jobs:\n  - {id: a, prompt: hi, seed: 2001-02-30}\n")
    assert_refused(
        tmp_path, seed, f"{seed}:2, job a: seed must be a whole number, not '2001-02-30'"
    )
