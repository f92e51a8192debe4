"""Turn manifests (YAML or CSV) into validated ``JobSpec``s, reporting every problem at once.

Why so strict: every API rule that can be checked before paying is checked here, so a bad
row costs a re-run of ``load`` instead of money or an hour of waiting. Nothing is returned
unless every row of every file is valid; otherwise ``ManifestError`` lists all problems.

Where a problem is:
  * YAML: ``FILE:LINE``, LINE being the 1-based line where the job's mapping starts.
  * CSV: ``FILE row N``, N being the 1-based data row. The header is not counted and blank
    lines are, so without multi-line cells row N is line N+1 of the file (and row N+1 of a
    spreadsheet). Header problems are located at ``FILE header``.

Identity: a job's id is its ``id`` if given, else ``"j"`` + the first 16 hex digits of the
``spec_hash`` of its content (prompt, model, parameters, the images' sha256, video URI,
unrendered output template). Ids are therefore stable across loads, survive moving or
renaming an image, and change when an image's bytes change.

``repeat: N`` (N >= 1) makes N variants with ids ``ID-1`` .. ``ID-N``; the suffix is added
even for N = 1, so raising N later keeps the existing ids. If the job sets ``seed``, variant
i gets ``seed + i - 1`` so the variants differ. An output template without ``{id}`` gets the
same ``-i`` suffix so variants do not overwrite each other.

CSV: a header row, then one job per row. Column names are matched case-insensitively, in
the API's camelCase or in snake_case (``aspect_ratio``); ``referenceImages`` is a ``;``-separated
list; an empty cell means "not set"; UTF-8 with or without BOM, CRLF or LF, quoted cells may
span lines, but a quote left open or text after a closing quote is an error (read leniently,
either would silently swallow or rewrite rows). Unknown columns and YAML keys are errors (typo
protection), with a suggestion.

Prompts are stripped of surrounding whitespace and may hold no control character but line
breaks and tabs (NUL, ESC, ... are refused, so ``show`` never prints them raw). In YAML,
``16:9`` may be written unquoted: numbers are read the YAML 1.2 way (PyYAML's YAML 1.1 would
read it as the base-60 int 969).
Image paths are relative to the manifest's folder; each distinct file is read once, in
chunks, to sniff its type and hash it, and its bytes are never kept; Pillow then reads its
header (type and dimensions, no pixels), so a file of magic bytes only is refused.
"""

from __future__ import annotations

import csv
import difflib
import gc
import hashlib
import io
import json
import os
import re
import reprlib
import stat
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import yaml

from batchveo import models
from batchveo.errors import ManifestError, Problem
from batchveo.outputs import safe_segment
from batchveo.spec import ImageRef, JobSpec, content_hash

__all__ = ["MAX_IMAGE_BYTES", "MAX_PROMPT_CHARS", "load_manifests"]

MAX_PROMPT_CHARS = 4000
"""About 1,024 tokens, the prompt limit Google documents for Veo."""
MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Images travel base64-encoded inside the request, whose size is capped around 20 MB."""
MAX_MANIFEST_BYTES = 2**30
"""1 GiB: a million-row CSV is a few hundred MB. Beyond it a "manifest" is a mistake (a link to
a device, a log), and reading on would only eat memory."""
MAX_ID_CHARS = 128
MAX_REPEAT = 10_000
MAX_SEED = 2**32 - 1
MAX_NUMBER_DIGITS = 100
"""No field takes a number of more than 10 digits; longer ones are reported by their length and
never converted (Python refuses past 4,300 digits, and the conversion is quadratic below)."""

PARAM_KEYS = (
    "aspectRatio",
    "resolution",
    "durationSeconds",
    "personGeneration",
    "enhancePrompt",
    "negativePrompt",
    "seed",
    "sampleCount",
)
TOP_KEYS = ("defaults", "jobs")
DEFAULT_KEYS = (*PARAM_KEYS, "model", "output", "budget")
JOB_KEYS = (
    "prompt",
    "id",
    "image",
    "lastFrame",
    "referenceImages",
    "video",
    "model",
    "output",
    "repeat",
    *PARAM_KEYS,
)
SNAKE_CASE = {
    "aspect_ratio": "aspectRatio",
    "duration_seconds": "durationSeconds",
    "person_generation": "personGeneration",
    "enhance_prompt": "enhancePrompt",
    "negative_prompt": "negativePrompt",
    "sample_count": "sampleCount",
    "last_frame": "lastFrame",
    "reference_images": "referenceImages",
}
_CSV_COLUMNS = {k.lower(): k for k in JOB_KEYS} | SNAKE_CASE
_JOB_KEYS = frozenset(JOB_KEYS)
_EXTENSIONS = (".yaml", ".yml", ".csv")

# Magic bytes; Veo accepts the first three, the others only get a better message.
_IMAGE_KINDS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP"}
_CLAIMED = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


def _sniff(head: bytes) -> str | None:
    """The image type the bytes really are, whatever the file is called."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"avif", b"mif1"):
        return "HEIC/AVIF"
    return None


# --- YAML --------------------------------------------------------------------------------

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YamlLoader(_BaseLoader):  # type: ignore[misc]
    """The safe (C when available) loader, minus YAML 1.1 base-60 numbers like ``16:9``."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
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


MAX_YAML_EXPANDED_NODES = 100_000_000
"""How many values a YAML document may hold once its aliases are expanded. A million jobs that
each merge a shared defaults anchor come to some 20 million; the billion laughs (1 KB) to 435
million, and merge keys really copy what they merge. Counted before anything is built."""
_ANCHOR = re.compile(r"(?:^|[\s\[{,])&[^\s\[\]{},]", re.MULTILINE)
"""Something that may be a YAML anchor; without one a document has no aliases to expand."""
_BOMB = (
    f"its aliases expand it to over {MAX_YAML_EXPANDED_NODES:,} values; refused as an alias "
    "bomb (a manifest of a million jobs that share an anchor is far below that)"
)


_SCALAR, _MAPPING = yaml.ScalarNode, yaml.MappingNode


class _Endless(Exception):
    """A node that contains itself through an alias (``&a [*a]``)."""

    def __init__(self, node: yaml.Node):
        self.node = node


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many nodes the document holds once every alias is expanded, capped at ``limit + 1``.

    Each node's size is computed once (by identity, which is what an alias shares), so this is
    linear in the composed document even when its expansion is astronomical; scalars count 1
    and are never looked up (a 100k-job manifest with a shared anchor: 0.2 s). Raises
    ``_Endless`` for a node that contains itself: expanding it would never end.
    """
    sizes: dict[int, int] = {}  # id(collection node) -> expanded size
    on_path: set[int] = set()
    stack: list[Any] = [root]  # a node to open, or (node, kids, width) to close
    while stack:
        item = stack.pop()
        if item.__class__ is tuple:
            node, kids, width = item
            on_path.discard(id(node))
            total = 1 + width - len(kids) + sum([sizes[id(c)] for c in kids])
            sizes[id(node)] = min(total, limit + 1)
            continue
        key = id(item)
        if key in sizes or item.__class__ is _SCALAR:
            continue
        if key in on_path:
            raise _Endless(item)
        value = item.value
        flat = [n for pair in value for n in pair] if item.__class__ is _MAPPING else value
        kids = [c for c in flat if c.__class__ is not _SCALAR]
        pending = [c for c in kids if id(c) not in sizes]
        if not pending:  # the common case: scalars and nodes already counted
            total = 1 + len(flat) - len(kids) + sum([sizes[id(c)] for c in kids])
            sizes[key] = min(total, limit + 1)
            continue
        on_path.add(key)
        stack.append((item, kids, len(flat)))
        stack += pending
    return sizes.get(id(root), 1)


def _is_bomb(root: yaml.Node, text: str) -> bool:
    """Whether the aliases expand the document past ``MAX_YAML_EXPANDED_NODES``; documents
    without anything like an anchor (most) are not walked at all."""
    if "&" not in text or not _ANCHOR.search(text):
        return False
    return _expanded_size(root, MAX_YAML_EXPANDED_NODES) > MAX_YAML_EXPANDED_NODES


def _anchor_before(text: str, node: yaml.Node) -> str | None:
    """The anchor of ``node``, for messages (nodes do not keep it): where the node starts (the
    C parser) or just before (the Python one)."""
    mark = node.start_mark
    lines = text.splitlines(keepends=True)
    if at := re.match(r"&([^\s\[\]{},]+)", lines[mark.line][mark.column :]):
        return at[1]
    before = "".join(lines[max(0, mark.line - 2) : mark.line]) + lines[mark.line][: mark.column]
    found = re.findall(r"&([^\s\[\]{},]+)", before)
    return found[-1] if found else None


def _construct_int(loader: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> int:
    """PyYAML's int, except that a number too long to convert stays a ``_HugeInt``."""
    text = str(node.value).replace("_", "")
    sign = text[:1] in ("+", "-")
    digits = text[sign:]
    if digits[:2].lower() in ("0x", "0b", "0o"):
        digits = digits[2:]
    if len(digits) > MAX_NUMBER_DIGITS:
        return _HugeInt(len(digits), text.startswith("-"))
    return int(yaml.constructor.SafeConstructor.construct_yaml_int(loader, node))


_YamlLoader.add_constructor(_INT, _construct_int)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


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


def _duplicate_keys(node: yaml.Node) -> list[str]:
    """Keys written twice in one mapping (PyYAML silently keeps the last one); call it before
    constructing, which rewrites mappings that use ``<<`` merge keys."""
    if not isinstance(node, yaml.MappingNode) or len(node.value) < 2:
        return []
    keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
    if len(keys) == len(set(keys)) or "<<" in keys:
        return []
    seen: set[str] = set()
    return [k for k in keys if k in seen or seen.add(k)]  # type: ignore[func-returns-value]


# --- value coercion (shared by YAML values and CSV strings) ---------------------------------


class _Bad(Exception):
    """A value that does not parse; the message is what the user reads."""


MAX_SHOWN_CHARS = 80
"""The most a message shows of a value: enough to recognise it. Printing a whole value could
print a whole document, or, for a YAML alias bomb, billions of strings."""
_REPR = reprlib.Repr()
_REPR.fillvalue = "…"
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring = 3, 6, 4, 40


def _cut(text: str) -> str:
    """``text`` shortened to ``MAX_SHOWN_CHARS``, with an ellipsis when cut."""
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def _show(v: object) -> str:
    """A value as a message shows it: quoted if text, at most ``MAX_SHOWN_CHARS``, in work
    bounded whatever its size (lists and mappings go through ``reprlib``)."""
    if isinstance(v, str):
        return _cut(repr(v[: MAX_SHOWN_CHARS + 1]))
    if isinstance(v, list | dict | tuple | set):
        return _cut(_REPR.repr(v))
    return _cut(str(v))


class _HugeInt(int):
    """A whole number of more than ``MAX_NUMBER_DIGITS`` digits, never converted: it compares
    as out of every field's range and shows as its length ("a 5000-digit number")."""

    digits: int
    negative: bool

    def __new__(cls, digits: int, negative: bool) -> _HugeInt:
        self = super().__new__(cls, -(10**MAX_NUMBER_DIGITS) if negative else 10**MAX_NUMBER_DIGITS)
        self.digits, self.negative = digits, negative
        return self

    def __str__(self) -> str:
        return f"a {'negative ' if self.negative else ''}{self.digits}-digit number"

    __repr__ = __str__


def _to_int(key: str, v: object) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", v):
        digits = v.strip().lstrip("+-")
        if len(digits) > MAX_NUMBER_DIGITS:
            return _HugeInt(len(digits), v.strip().startswith("-"))
        return int(v)
    raise _Bad(f"{key} must be a whole number, not {_show(v)}")


def _choice(key: str, allowed: tuple[str, ...]) -> Callable[[object], str]:
    def coerce(v: object) -> str:
        if isinstance(v, str) and (s := v.strip().lower()) in allowed:
            return s
        raise _Bad(f"{key} must be one of {', '.join(allowed)}, not {_show(v)}")

    return coerce


def _duration(v: object) -> int:
    n = _to_int("durationSeconds", v)
    if n not in models.DURATIONS_S:
        raise _Bad(f"durationSeconds must be 4, 6 or 8, not {n}")
    return n


_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _bool(v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | str) and (b := _BOOLS.get(str(v).strip().lower())) is not None:
        return b
    raise _Bad(f"enhancePrompt must be true or false, not {_show(v)}")


def _seed(v: object) -> int:
    n = _to_int("seed", v)
    if not 0 <= n <= MAX_SEED:
        raise _Bad(f"seed must be between 0 and {MAX_SEED}, not {n}")
    return n


def _sample_count(v: object) -> int:
    if _to_int("sampleCount", v) != 1:
        raise _Bad(
            f"sampleCount must be 1, not {_show(v)}: the Gemini API makes one video per "
            "request (use repeat: N for several variants)"
        )
    return 1


_PROMPT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters (C0, DEL, C1) but tab, LF and CR: NUL, ESC or CSI in a prompt is never
meant, and ``show`` would print it raw to a terminal. One search per prompt."""


def _control_problem(what: str, text: str) -> str | None:
    if (found := _PROMPT_CONTROL.search(text)) is None:
        return None
    return (
        f"{what} has the control character U+{ord(found[0]):04X} at character "
        f"{found.start() + 1}; only line breaks and tabs may be in a prompt"
    )


def _text(v: object) -> str | None:
    if not isinstance(v, str):
        raise _Bad(f"negativePrompt must be text, not {_show(v)}")
    if problem := _control_problem("negativePrompt", text := v.strip()):
        raise _Bad(problem)
    return text or None


_COERCE: dict[str, Callable[[object], Any]] = {
    "aspectRatio": _choice("aspectRatio", models.ASPECT_RATIOS),
    "resolution": _choice("resolution", models.RESOLUTIONS),
    "durationSeconds": _duration,
    "personGeneration": _choice("personGeneration", models.PERSON_GENERATION),
    "enhancePrompt": _bool,
    "negativePrompt": _text,
    "seed": _seed,
    "sampleCount": _sample_count,
}


def _model(v: object) -> str:
    """A model name or alias from the (data-driven) model table."""
    if isinstance(v, str):
        if (name := v.strip()) in models.MODELS:
            return name
        for info in models.MODELS.values():
            if name in info.aliases:
                return info.name
    raise _Bad(f"unknown model {_show(v)}; known models: {', '.join(models.MODELS)}")


def _unknown_key(key: object, known: Iterable[str], what: str) -> str:
    """Typo protection: name the key and suggest the closest known one (errors only)."""
    known = list(known)
    k = str(key)
    by_lower = {x.lower(): x for x in known}
    guess = SNAKE_CASE.get(k) or by_lower.get(k.lower().replace("_", ""))
    if (guess is None or guess not in known) and len(k) <= MAX_SHOWN_CHARS:
        close = difflib.get_close_matches(k, known, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f" (did you mean {guess!r}?)" if guess else f" (known: {', '.join(known)})"
    return f"unknown {what} {_show(k)}{hint}"


_ABSOLUTE = re.compile(r"^(?:[/\\]|[A-Za-z]:)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _output_problem(out: str) -> str | None:
    """Why a rendered output name is not a relative path inside the output folder, if it is not."""
    parts = re.split(r"[/\\]", out)
    if _ABSOLUTE.match(out) or ".." in parts:
        return f"output {_show(out)} must be a relative path inside the output folder (no '..')"
    if parts[-1] in ("", ".") or _CONTROL.search(out):
        return f"output {_show(out)} is not a usable file name"
    return None


MAX_NAME_BYTES = 255
"""The longest file or folder name of ext4, XFS, btrfs, APFS and NTFS."""
DOWNLOAD_NAME_EXTRA_BYTES = len("-9999.mp4.0123abcd.part")
"""What a download adds to a video's stem: ``-N`` when the name is taken, ``.mp4``, and the
temporary ``.<8 hex>.part`` it is written under (see ``files.py``)."""
MAX_OUTPUT_PATH_BYTES = 1024
"""A video's path relative to ``--out``: a quarter of Linux's PATH_MAX (4096), which must also
hold ``--out`` itself. Real templates (``{batch}/{id}``) take a few dozen bytes."""


def output_parts(job_id: str, output_name: str | None) -> tuple[str, ...]:
    """A video's path under ``--out``, segment by segment (folders, then ``<stem>.mp4``), as
    ``outputs.video_paths`` names the file of a one-video job."""
    return OutputTree().parts(job_id, output_name)


def _length_problem(output_name: str, parts: tuple[str, ...], path: str) -> str | None:
    """Why the file system cannot take this video's ``path`` (its ``parts`` joined), if it
    cannot: a name or the whole path too long."""
    if path.isascii() and len(path) <= MAX_NAME_BYTES - DOWNLOAD_NAME_EXTRA_BYTES:
        return None  # the common case: shorter than any bound, whole
    shown = _show(output_name)
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
                shown = _show(output_name)
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
    specs: Sequence[JobSpec],
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


def _template(v: object) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f"output must be a name template like '{{batch}}/{{id}}', not {_show(v)}")
    rest = v.replace("{id}", "").replace("{batch}", "")
    if "{" in rest or "}" in rest:
        raise _Bad(f"output {_show(v)}: the only placeholders are {{id}} and {{batch}}")
    if problem := _output_problem(v.replace("{id}", "x").replace("{batch}", "x")):
        raise _Bad(problem)
    return v.strip()


def _check_id(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise _Bad(f"id must be text, not {_show(v)}")
    if isinstance(v, _HugeInt):
        raise _Bad(f"id is {v.digits + v.negative} characters; at most {MAX_ID_CHARS}")
    s = str(v).strip() if isinstance(v, str) else str(v)
    if not s:
        raise _Bad("id is empty")
    if len(s) > MAX_ID_CHARS:
        raise _Bad(f"id is {len(s)} characters; at most {MAX_ID_CHARS}")
    if s in (".", "..") or "/" in s or "\\" in s or _CONTROL.search(s):
        raise _Bad(f"id {s!r} must not be '.' or '..' nor contain '/', '\\' or control characters")
    return s


# --- the loader ----------------------------------------------------------------------------


@dataclass
class _Defaults:
    model: str = models.DEFAULT_MODEL
    params: dict[str, Any] = field(default_factory=lambda: dict(models.DEFAULT_PARAMS))
    output: str | None = None
    budget_usd: float | None = None


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_json_str = json.encoder.encode_basestring_ascii


def _auto_id(
    prompt: str,
    model: str,
    params_json: str,
    image: ImageRef | None,
    last: ImageRef | None,
    refs: tuple[ImageRef, ...],
    video: str | None,
    output: str | None,
) -> str:
    """``JobSpec.spec_hash()`` for these contents, without a JobSpec; the id is ``"j"`` + 16."""
    return content_hash(
        prompt,
        model,
        params_json,
        image.sha256 if image else None,
        last.sha256 if last else None,
        [r.sha256 for r in refs],
        video,
        output,
    )


class _Loader:
    def __init__(self, batch: str | None) -> None:
        self.batch = batch
        self.problems: list[Problem] = []
        self.specs: list[JobSpec] = []
        self.budgets: dict[str, float] = {}
        """Per-batch budgets in USD from the manifests' ``defaults: budget``."""
        self._ids: dict[str, JobSpec] = {}
        self._outputs: dict[str, str] = {}
        self._files: set[Path] = set()
        self._params_cache: dict[tuple[tuple[str, Any], ...], str] = {}
        self._resolved: dict[str, Path] = {}
        """Image path as written -> resolved path, for the manifest being read."""
        self._images: dict[Path, ImageRef | str] = {}

    def problem(self, where: str, job: str | None, message: str) -> None:
        self.problems.append(Problem(where, job, message))

    def load(self, path: Path | str) -> None:
        name, p = os.fspath(path), Path(path)
        ext = p.suffix.lower()
        if ext not in _EXTENSIONS:
            return self.problem(name, None, "not a manifest: use a .yaml, .yml or .csv file")
        data = _read_manifest(p)
        if isinstance(data, str):
            return self.problem(name, None, data)
        if p.resolve() in self._files:
            return self.problem(name, None, "the same manifest is given twice")
        self._files.add(p.resolve())
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            return self.problem(f"{name}:{line}", None, "not UTF-8 text; save it as UTF-8")
        del data
        if not text or text.isspace():
            return self.problem(name, None, "empty manifest: no jobs")
        batch = self.batch if self.batch is not None else p.stem
        self._resolved = {}
        base = p.absolute().parent
        if ext == ".csv":
            self._load_csv(name, text, batch, base)
        else:
            self._load_yaml(name, text, batch, base)

    def _load_yaml(self, name: str, text: str, batch: str, base: Path) -> None:
        loader = _YamlLoader(text)
        try:
            root = loader.get_single_node()
            if root is not None and _is_bomb(root, text):
                return self.problem(name, None, _BOMB)
            # Take what we need from the node tree (lines, keys written twice) and let it go
            # before building specs: for 100k jobs it is the largest thing in memory.
            top = _key_nodes(root)
            job_nodes = _job_nodes(root)
            job_lines = [_line(node) for node in job_nodes]
            dups = {i: d for i, node in enumerate(job_nodes) if (d := _duplicate_keys(node))}
            jobs_line = _line(top.get("jobs", root)) if root is not None else 1
            data = loader.construct_document(root) if root is not None else None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"{name}:{mark.line + 1}" if mark else name
            return self.problem(where, None, f"not valid YAML: {e.problem or e.context}")
        except yaml.YAMLError as e:
            return self.problem(name, None, f"not valid YAML: {e}")
        except _Endless as e:
            anchor = _anchor_before(text, e.node)
            named = f" (*{anchor} inside &{anchor})" if anchor else ""
            return self.problem(
                f"{name}:{_line(e.node)}",
                None,
                f"an alias refers to a value that contains it{named}; a manifest cannot be endless",
            )
        finally:
            loader.dispose()
        del job_nodes
        defaults = _Defaults()
        if isinstance(data, dict):
            lines = _key_lines(root)
            for key in [k for k in data if k not in TOP_KEYS]:
                where = f"{name}:{lines.get(key, 1)}"
                self.problem(where, None, _unknown_key(key, TOP_KEYS, "key"))
            if data.get("defaults") is not None:
                defaults = self._defaults(name, data["defaults"], top.get("defaults", root))
                if defaults.budget_usd is not None:
                    self.budgets[batch] = defaults.budget_usd
            jobs = data.get("jobs")
            if jobs is None:
                return self.problem(name, None, "no jobs: add a 'jobs:' list")
        elif isinstance(data, list) or data is None:
            jobs = data
        else:
            return self.problem(name, None, "expected a mapping with 'jobs:' or a list of jobs")
        del root, top
        if jobs is not None and not isinstance(jobs, list):
            return self.problem(f"{name}:{jobs_line}", None, "'jobs' must be a list")
        if not jobs:
            return self.problem(name, None, "empty manifest: no jobs")
        if len(job_lines) != len(jobs):  # only with exotic merge keys: locate the list instead
            job_lines = [jobs_line] * len(jobs)
        for i, (job, line) in enumerate(zip(jobs, job_lines, strict=True)):
            where = f"{name}:{line}"
            if not isinstance(job, dict):
                self.problem(where, None, "a job must be a mapping with at least 'prompt:'")
                continue
            bad = [f"{_show(k)} is written twice" for k in dups.get(i, ())]
            if job.keys() - _JOB_KEYS:
                bad += [_unknown_key(k, JOB_KEYS, "key") for k in job if k not in _JOB_KEYS]
            self._job(job, where, defaults, batch, base, bad)

    def _defaults(self, name: str, raw: object, node: yaml.Node) -> _Defaults:
        d = _Defaults()
        if not isinstance(raw, dict):
            self.problem(f"{name}:{_line(node)}", None, "'defaults' must be a mapping")
            return d
        lines = _key_lines(node)
        for key, v in raw.items():
            where = f"{name}:{lines.get(key, _line(node))}"
            if key not in DEFAULT_KEYS:
                self.problem(where, None, "defaults: " + _unknown_key(key, DEFAULT_KEYS, "key"))
                continue
            if v is None:
                continue
            try:
                if key == "model":
                    d.model = _model(v)
                elif key == "output":
                    d.output = _template(v)
                elif key == "budget":
                    if isinstance(v, bool | _HugeInt) or not isinstance(v, int | float) or v < 0:
                        raise _Bad(f"budget must be an amount in USD, not {_show(v)}")
                    d.budget_usd = float(v)
                elif (val := _COERCE[key](v)) is not None:
                    d.params[key] = val
            except _Bad as e:
                self.problem(where, None, f"defaults: {e}")
        return d

    def _load_csv(self, name: str, text: str, batch: str, base: Path) -> None:
        # strict: a quote left open would otherwise take in every later row as one cell
        # (they would never be jobs, and one prompt would be paid with all their text).
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header = next(reader, [])
        cols: list[str | None] = []
        unnamed = []  # spreadsheets export trailing empty columns: fine while they stay empty
        for i, cell in enumerate(header):
            key = _CSV_COLUMNS.get(cell.strip().lower())
            if not cell.strip():
                unnamed.append(i)
            elif key is None:
                self.problem(f"{name} header", None, _unknown_key(cell.strip(), JOB_KEYS, "column"))
            elif key in cols:
                self.problem(f"{name} header", None, f"column {_show(key)} appears twice")
                key = None
            cols.append(key)
        if "prompt" not in cols:
            return self.problem(f"{name} header", None, "no 'prompt' column")
        ncols, seen_rows, defaults = len(cols), False, _Defaults()
        n, end_line = 0, reader.line_num
        try:
            for n, row in enumerate(reader, 1):
                end_line = reader.line_num
                raw: dict[str, Any] = {}
                for key, cell in zip(cols, row, strict=False):
                    if key and (value := cell.strip()):
                        raw[key] = value
                if not raw:
                    continue
                seen_rows = True
                where = f"{name} row {n}"
                bad = []
                if len(row) > ncols and any(c.strip() for c in row[ncols:]):
                    bad.append(f"{len(row)} cells but the header names {ncols} columns")
                if unnamed and any(row[i].strip() for i in unnamed if i < len(row)):
                    bad.append("a value in a column whose header is empty")
                if refs := raw.get("referenceImages"):
                    raw["referenceImages"] = [s.strip() for s in refs.split(";") if s.strip()]
                self._job(raw, where, defaults, batch, base, bad)
        except csv.Error as e:
            why = _csv_error(str(e), end_line + 1, reader.line_num)
            return self.problem(f"{name} row {n + 1}", None, f"not valid CSV: {why}")
        if not seen_rows:
            self.problem(name, None, "empty manifest: no jobs")

    def _image(self, v: object, what: str, base: Path, bad: list[str]) -> ImageRef | None:
        """Check and hash an image, once per distinct file, reading it in chunks."""
        if not isinstance(v, str):
            bad.append(f"{what} must be a file path, not {_show(v)}")
            return None
        path = self._resolved.get(v)
        if path is None:
            try:
                path = self._resolved[v] = (base / Path(v).expanduser()).resolve()
            except (OSError, RuntimeError, ValueError) as e:  # NUL byte, unknown ~user, loop
                bad.append(f"{what} {_show(v)} is not a usable path ({e})")
                return None
        ref = self._images.get(path)
        if ref is None:
            ref = self._images[path] = _hash_image(path)
        if isinstance(ref, str):
            bad.append(f"{what} {_cut(v)} {ref}")
            return None
        return ref

    def _job(
        self,
        raw: Mapping[str, Any],
        where: str,
        d: _Defaults,
        batch: str,
        base: Path,
        bad: list[str],
    ) -> None:
        """Validate one job, then register its spec(s), or its problems."""
        job_id = None
        if raw.get("id") is not None:
            try:
                job_id = _check_id(raw["id"])
            except _Bad as e:
                bad.append(str(e))
        given, prompt = raw.get("prompt"), ""
        if given is None:
            bad.append("prompt is missing")
        elif not isinstance(given, str):
            bad.append(f"prompt must be text, not {_show(given)}")
        elif not (prompt := given.strip()):
            bad.append("prompt is empty")
        elif len(prompt) > MAX_PROMPT_CHARS:
            bad.append(
                f"prompt is {len(prompt)} characters; Veo takes about 1,024 tokens "
                f"(roughly {MAX_PROMPT_CHARS} characters) at most"
            )
        elif problem := _control_problem("prompt", prompt):
            bad.append(problem)
        model, params, output, repeat = d.model, dict(d.params), d.output, None
        for key, v in raw.items():
            if v is None or (key not in _COERCE and key not in ("model", "output", "repeat")):
                continue
            try:
                if key == "model":
                    model = _model(v)
                elif key == "output":
                    output = _template(v)
                elif key == "repeat":
                    n = _to_int("repeat", v)
                    if not 1 <= n <= MAX_REPEAT:
                        raise _Bad(f"repeat must be between 1 and {MAX_REPEAT}, not {n}")
                    repeat = n
                elif (val := _COERCE[key](v)) is None:
                    params.pop(key, None)
                else:
                    params[key] = val
            except _Bad as e:
                bad.append(str(e))

        has_image, has_last = (
            raw.get("image") not in (None, ""),
            raw.get("lastFrame") not in (None, ""),
        )
        refs_raw, video = raw.get("referenceImages"), raw.get("video")
        image = self._image(raw["image"], "image", base, bad) if has_image else None
        last = self._image(raw["lastFrame"], "lastFrame", base, bad) if has_last else None
        refs: list[ImageRef | None] = []
        if refs_raw is not None and not isinstance(refs_raw, list):
            bad.append("referenceImages must be a list of image paths")
        elif refs_raw and len(refs_raw) > models.MAX_REFERENCE_IMAGES:
            bad.append(
                f"at most {models.MAX_REFERENCE_IMAGES} referenceImages, got {len(refs_raw)}"
            )
        elif refs_raw:
            refs = [
                self._image(v, f"referenceImages[{i}]", base, bad)
                for i, v in enumerate(refs_raw, 1)
            ]
        has_refs = bool(refs_raw)
        if video is not None:
            u = urlsplit(video.strip()) if isinstance(video, str) else None
            if u is None or u.scheme.lower() not in ("http", "https") or not u.netloc:
                bad.append(
                    f"video must be the http(s) URI of a previous Veo video, not {_show(video)}"
                )
            else:
                video = video.strip()
        has_video = video is not None
        bad += _combination_problems(model, params, has_image, has_last, has_refs, has_video)
        if repeat and params.get("seed") is not None and params["seed"] + repeat - 1 > MAX_SEED:
            bad.append(f"seed + repeat - 1 must stay at most {MAX_SEED}")
        if job_id and repeat and len(f"{job_id}-{repeat}") > MAX_ID_CHARS:
            bad.append(f"id {job_id}-{repeat} would be over {MAX_ID_CHARS} characters")
        if bad:
            for message in bad:
                self.problem(where, job_id, message)
            return

        ref_images = tuple(r for r in refs if r) if refs else ()
        known_hash = None
        if job_id is None:
            digest = _auto_id(
                prompt, model, self._params_json(params), image, last, ref_images, video, output
            )
            job_id = "j" + digest[:16]
            if output is None:  # then the spec below hashes to exactly this
                known_hash = digest
        if repeat is None:
            variants = [
                JobSpec(
                    id=job_id,
                    batch=batch,
                    prompt=prompt,
                    model=model,
                    params=params,
                    image=image,
                    last_frame=last,
                    reference_images=ref_images,
                    video_uri=video,
                    output_name=output and _render(output, job_id, batch, None),
                    source=where,
                    known_hash=known_hash,
                )
            ]
        else:
            seed = params.get("seed")
            variants = [
                JobSpec(
                    id=f"{job_id}-{i}",
                    batch=batch,
                    prompt=prompt,
                    model=model,
                    params=dict(params) if seed is None else {**params, "seed": seed + i - 1},
                    image=image,
                    last_frame=last,
                    reference_images=ref_images,
                    video_uri=video,
                    output_name=output and _render(output, f"{job_id}-{i}", batch, i),
                    source=where,
                )
                for i in range(1, repeat + 1)
            ]
        for spec in variants:
            if self._clashes(spec, where):
                return
        for spec in variants:
            self._ids[spec.id] = spec
            if spec.output_name is not None:
                self._outputs[spec.output_name] = where
        self.specs += variants

    def _params_json(self, params: dict[str, Any]) -> str:
        """Canonical JSON of the parameters, cached: most jobs share the same few."""
        key = tuple(params.items())
        if (text := self._params_cache.get(key)) is None:
            text = self._params_cache[key] = _ENCODER.encode(params)
        return text

    def check_outputs(self) -> None:
        """Videos the file system cannot take: paths too long, a file where a folder must be.

        After every manifest is read (clashes cross files). Only jobs with ``output`` are looked
        at, jobs without it only when a top-level folder could clash with them, and the jobs are
        walked in order (to name the second of two) only when some path is both a file and a
        folder: for 100k jobs under ``{batch}/{id}`` this costs about 0.1 s.
        """
        tree, files, parents = OutputTree(), set(), set()
        for spec in self.specs:
            if (output_name := spec.output_name) is None:
                continue
            parts = tree.parts(spec.id, output_name)
            path = "/".join(parts)
            if problem := _length_problem(output_name, parts, path):
                self.problem(spec.source, spec.id, problem)
            files.add(path)
            if len(parts) > 1:
                parents.add(parts[:-1])
        if not parents:  # without a folder, no video can stand where one must be
            return
        folders = {"/".join(p[:i]) for p in parents for i in range(1, len(p) + 1)}
        if any("/" not in f and f.endswith(".mp4") for f in folders):
            files.update(tree.parts(s.id, None)[0] for s in self.specs if s.output_name is None)
        if not files.isdisjoint(folders):
            self.problems += output_clashes((), self.specs, tree=tree)

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
            if problem := _output_problem(out):
                self.problem(where, spec.id, problem)
                return True
            if (other := self._outputs.get(out)) is not None:
                msg = (
                    f"output {_show(out)} is also used by {other}: "
                    "one video would replace the other"
                )
                self.problem(where, spec.id, msg)
                return True
        return False


def _csv_error(error: str, first_line: int, line: int) -> str:
    """What a csv module error means for a row starting on ``first_line``, read up to ``line``.

    Every one of them is a quote in the wrong place: a cell whose quote never closes (at the
    end of the file, or at the module's cell size limit), or text after a closing quote.
    """
    if error.startswith("unexpected end of data"):
        return (
            f"a quote in this row (line {first_line}) is never closed, "
            "so it would swallow every later row"
        )
    if error.startswith("field larger than field limit"):
        return (
            f"a cell of this row (from line {first_line}) is over {csv.field_size_limit():,} "
            "characters: is a quote left unclosed?"
        )
    if "expected after" in error:
        if first_line == line:
            return (
                f"text follows the closing quote of a cell on line {line} "
                '(a quote inside a quoted cell is written twice: "")'
            )
        return (
            f"a quoted cell from line {first_line} ends on line {line} with text right after "
            "its closing quote (is a quote left unclosed?)"
        )
    return error


def _render(template: str, job_id: str, batch: str, variant: int | None) -> str:
    out = template.replace("{id}", job_id).replace("{batch}", batch)
    return out if variant is None or "{id}" in template else f"{out}-{variant}"


def _combination_problems(
    model: str,
    params: Mapping[str, Any],
    has_image: bool,
    has_last: bool,
    has_refs: bool,
    has_video: bool,
) -> list[str]:
    """The API's cross-field rules (see the API contract), checked before paying."""
    res, dur = params["resolution"], params["durationSeconds"]
    info = models.MODELS.get(model)
    plain = not (has_image or has_last or has_refs or has_video or "personGeneration" in params)
    if plain and res == "720p" and (info is None or res in info.resolutions):
        return []  # the common text-to-video job: nothing can clash
    bad = []
    if has_image and has_video:
        bad.append("image and video cannot be combined: a video extension takes no image")
    if has_last and not has_image:
        bad.append("lastFrame needs image (the first frame)")
    if info is not None:
        for used, ok, what in (
            (has_last, info.supports_last_frame, "lastFrame"),
            (has_refs, info.supports_reference_images, "referenceImages"),
            (has_video, info.supports_extension, "video extension"),
        ):
            if used and not ok:
                bad.append(f"model {model} does not support {what}")
        if res not in info.resolutions:
            bad.append(f"model {model} does not support {res} (only {', '.join(info.resolutions)})")
    needs_8 = [f"resolution {res}"] if res in ("1080p", "4k") else []
    needs_8 += ["referenceImages"] * has_refs + ["a video extension"] * has_video
    if needs_8 and dur != 8:
        bad.append(f"durationSeconds must be 8 for {' and '.join(needs_8)}, not {dur}")
    if has_video and res != "720p":
        bad.append(f"a video extension needs resolution 720p, not {res}")
    if (pg := params.get("personGeneration")) is not None:
        if has_video:
            mode, allowed = "a video extension", "allow_all"
        elif has_image or has_last or has_refs:
            mode, allowed = "image-to-video", "allow_adult"
        else:
            mode, allowed = "text-to-video", "allow_all"
        if pg != allowed:
            bad.append(f"personGeneration {pg} is not allowed for {mode}: use {allowed}")
    return bad


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
"""Non-blocking: ``open()`` of a FIFO would otherwise wait for a writer forever."""
_READ_CHUNK_BYTES = 1 << 20


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _read_manifest(path: Path) -> bytes | str:
    """The bytes of a manifest, or why it cannot be one (completing "FILE: ...").

    Only a regular file (links followed) is read, and at most ``MAX_MANIFEST_BYTES``: a FIFO
    would hang ``load``, a link to ``/dev/zero`` would eat memory, and files in ``/proc``
    say they are empty and are not; the bound is on what is read, not on what stat says.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a folder, not a manifest file"
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    too_big = (
        f"is over {MAX_MANIFEST_BYTES:,} bytes, the most a manifest may be "
        "(split it into several files)"
    )
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"is {_file_kind(st.st_mode)}, not a manifest file"
        if st.st_size > MAX_MANIFEST_BYTES:
            return too_big
        chunks, total = [], 0
        want = st.st_size + 1  # one read for the whole file, one to see its end
        while total <= MAX_MANIFEST_BYTES:
            chunk = os.read(fd, max(want - total, _READ_CHUNK_BYTES))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_MANIFEST_BYTES:
            return too_big
        return b"".join(chunks)  # one chunk: the same bytes object, no copy
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    finally:
        os.close(fd)


def _hash_image(path: Path) -> ImageRef | str:
    """An ImageRef, or why the file is not a usable image (completing "image x.png ...").

    The file is opened once (without blocking, so a FIFO cannot hang the load), hashed in
    chunks, and its header read by Pillow (type and size only, no pixel is decoded).
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return f"not found (looked for {path})"
    except IsADirectoryError:
        return "is not a file"
    except OSError as e:
        return f"cannot be read: {e.strerror}"
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        return f"cannot be read: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return "is not a file"
    too_big = (
        f"is {st.st_size / 2**20:.1f} MB; images must be at most {MAX_IMAGE_BYTES / 2**20:g} MB"
    )
    if st.st_size > MAX_IMAGE_BYTES:
        os.close(fd)
        return too_big
    with os.fdopen(fd, "rb") as f:
        try:
            digest = hashlib.sha256()
            head = f.read(_READ_CHUNK_BYTES)
            digest.update(head)
            total = len(head)
            while total <= MAX_IMAGE_BYTES and (chunk := f.read(_READ_CHUNK_BYTES)):
                digest.update(chunk)
                total += len(chunk)
            if total > MAX_IMAGE_BYTES:
                return too_big
            if not head:
                return "is empty"
            kind = _sniff(head)
            if kind is None:
                return "is not a PNG, JPEG or WebP image"
            if kind not in _IMAGE_KINDS:
                return f"is {kind} data; Veo takes PNG, JPEG or WebP"
            claimed = _CLAIMED.get(path.suffix.lower())
            if claimed is not None and claimed != kind:
                return f"is {_IMAGE_KINDS[kind]} data, not {_IMAGE_KINDS[claimed]}"
            f.seek(0)
            if problem := _header_problem(f, kind):
                return problem
        except OSError as e:
            return f"cannot be read: {e.strerror}"
    return ImageRef(path=str(path), sha256=digest.hexdigest(), mime_type=kind)


MAX_IMAGE_SIDE_PX = 32_768
"""Wider than any camera or panorama Veo would take; a header that claims more is broken."""
_PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def _header_problem(f: BinaryIO, kind: str) -> str | None:
    """Why the image's header does not make it a real ``kind`` image, if it does not.

    Pillow's ``Image.open`` reads the header only (dimensions included) and decodes no pixel,
    so a load of 100k rows sharing a few images stays fast; each file is read once anyway.
    """
    from PIL import Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401

    name = _IMAGE_KINDS[kind]
    broken = f"is not a readable {name} image (its header is missing, cut short or broken)"
    try:
        with warnings.catch_warnings():  # large but real photos: no warning on stderr
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f, formats=[_PILLOW_FORMATS[kind]]) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        return f"is not a readable {name} image (over {limit:,} pixels: a decompression bomb?)"
    except Exception:  # Pillow's parsers raise many kinds of errors on a broken header
        return broken
    if not (1 <= width <= MAX_IMAGE_SIDE_PX and 1 <= height <= MAX_IMAGE_SIDE_PX):
        return f"is {width}×{height} pixels; at most {MAX_IMAGE_SIDE_PX} on a side"
    return None


@dataclass(frozen=True)
class Manifests:
    specs: list[JobSpec]
    budgets: dict[str, float]
    """Batch name -> budget in USD, for the batches whose manifest sets one."""


def load_manifests(paths: Sequence[Path | str], *, batch: str | None = None) -> list[JobSpec]:
    """Every job of every manifest, in order, or ``ManifestError`` listing every problem.

    ``batch`` names the batch of every job; by default each file's name without extension.
    """
    return read_manifests(paths, batch=batch).specs


def read_manifests(paths: Sequence[Path | str], *, batch: str | None = None) -> Manifests:
    """Like ``load_manifests``, with the batches' budgets too."""
    loader = _Loader(batch)
    # Building 100k specs makes the cyclic GC rescan an ever larger heap, which doubles the
    # load time (and more for YAML node trees); none of these objects form cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for path in paths:
            loader.load(path)
    finally:
        if gc_was_enabled:
            gc.enable()
    loader.check_outputs()
    if loader.problems:
        raise ManifestError(loader.problems)
    return Manifests(loader.specs, loader.budgets)
