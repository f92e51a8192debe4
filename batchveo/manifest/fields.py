"""One field's value, as written in YAML or a CSV cell, checked and made canonical.

Every coercer takes what the reader gives (a YAML value or a CSV string) and returns the
value the API takes, or raises ``Bad`` with the sentence the user reads. Prompts are
stripped of surrounding whitespace and may hold no control character but line breaks and
tabs (NUL, ESC, ... are refused, so ``show`` never prints them raw).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from batchveo import models
from batchveo.manifest.output_paths import NAME_CONTROL, output_problem
from batchveo.manifest.show import show

MAX_PROMPT_CHARS = 4000
"""About 1,024 tokens, the prompt limit Google documents for Veo."""
MAX_ID_CHARS = 128
MAX_REPEAT = 10_000
MAX_SEED = 2**32 - 1
MAX_NUMBER_DIGITS = 100
"""No field takes a number of more than 10 digits; longer ones are reported by their length and
never converted (Python refuses past 4,300 digits, and the conversion is quadratic below)."""


class Bad(Exception):
    """A value that does not parse; the message is what the user reads."""


class HugeInt(int):
    """A whole number of more than ``MAX_NUMBER_DIGITS`` digits, never converted: it compares
    as out of every field's range and shows as its length ("a 5000-digit number")."""

    digits: int
    negative: bool

    def __new__(cls, digits: int, negative: bool) -> HugeInt:
        self = super().__new__(cls, -(10**MAX_NUMBER_DIGITS) if negative else 10**MAX_NUMBER_DIGITS)
        self.digits, self.negative = digits, negative
        return self

    def __str__(self) -> str:
        return f"a {'negative ' if self.negative else ''}{self.digits}-digit number"

    __repr__ = __str__


def to_int(key: str, v: object) -> int:
    """A whole number, from YAML or a CSV cell; one too long to convert stays a ``HugeInt``."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", v):
        digits = v.strip().lstrip("+-")
        if len(digits) > MAX_NUMBER_DIGITS:
            return HugeInt(len(digits), v.strip().startswith("-"))
        return int(v)
    raise Bad(f"{key} must be a whole number, not {show(v)}")


def _choice(key: str, allowed: tuple[str, ...]) -> Callable[[object], str]:
    def coerce(v: object) -> str:
        if isinstance(v, str) and (s := v.strip().lower()) in allowed:
            return s
        raise Bad(f"{key} must be one of {', '.join(allowed)}, not {show(v)}")

    return coerce


def _duration(v: object) -> int:
    n = to_int("durationSeconds", v)
    if n not in models.DURATIONS_S:
        raise Bad(f"durationSeconds must be 4, 6 or 8, not {n}")
    return n


_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _bool(key: str) -> Callable[[object], bool]:
    def coerce(v: object) -> bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, int | str) and (b := _BOOLS.get(str(v).strip().lower())) is not None:
            return b
        raise Bad(f"{key} must be true or false, not {show(v)}")

    return coerce


def _seed(v: object) -> int:
    n = to_int("seed", v)
    if not 0 <= n <= MAX_SEED:
        raise Bad(f"seed must be between 0 and {MAX_SEED}, not {n}")
    return n


MAX_SAMPLE_COUNT = max(p.max_sample_count for p in models.PROVIDER_MODELS.values())
"""The most videos any provider makes per request (Vertex: 4); each provider's own limit is
a rule of the job's route (``job.route_problems``)."""


def _sample_count(v: object) -> int:
    n = to_int("sampleCount", v)
    if not 1 <= n <= MAX_SAMPLE_COUNT:
        raise Bad(f"sampleCount must be between 1 and {MAX_SAMPLE_COUNT}, not {n}")
    return n


_PROMPT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters (C0, DEL, C1) but tab, LF and CR: NUL, ESC or CSI in a prompt is never
meant, and ``show`` would print it raw to a terminal. One search per prompt."""


_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Control characters, line breaks and tabs too: a batch name is shown on one line."""


def batch_name_problem(name: str, *, from_flag: bool) -> str | None:
    """Why ``name`` (``--batch`` if ``from_flag``, else the manifest's file name) cannot
    name a batch, if it cannot: it is shown in ``status``, the report and the exports, on
    one line."""
    where = "--batch" if from_flag else "the batch name (the file's name)"
    fix = "" if from_flag else " (rename the file or pass --batch NAME)"
    if not name.strip():
        return f"{where} is empty{fix}"
    if (found := _NAME_CONTROL.search(name)) is not None:
        return (
            f"{where} has the control character U+{ord(found[0]):04X} at character"
            f" {found.start() + 1}{fix}"
        )
    return None


def _control_problem(what: str, text: str) -> str | None:
    if (found := _PROMPT_CONTROL.search(text)) is None:
        return None
    return (
        f"{what} has the control character U+{ord(found[0]):04X} at character "
        f"{found.start() + 1}; only line breaks and tabs may be in a prompt"
    )


def _text(v: object) -> str | None:
    if not isinstance(v, str):
        raise Bad(f"negativePrompt must be text, not {show(v)}")
    if problem := _control_problem("negativePrompt", text := v.strip()):
        raise Bad(problem)
    return text or None


COERCE: dict[str, Callable[[object], Any]] = {
    "aspectRatio": _choice("aspectRatio", models.ASPECT_RATIOS),
    "resolution": _choice("resolution", models.RESOLUTIONS),
    "durationSeconds": _duration,
    "personGeneration": _choice("personGeneration", models.PERSON_GENERATION),
    "enhancePrompt": _bool("enhancePrompt"),
    "negativePrompt": _text,
    "seed": _seed,
    "sampleCount": _sample_count,
    "generateAudio": _bool("generateAudio"),
}
"""API parameter -> its coercer; ``None`` from one (an empty negativePrompt) unsets it."""


def prompt(given: object) -> str:
    """The prompt, stripped; what the API would refuse (or a terminal print raw) is ``Bad``."""
    if given is None:
        raise Bad("prompt is missing")
    if not isinstance(given, str):
        raise Bad(f"prompt must be text, not {show(given)}")
    if not (text := given.strip()):
        raise Bad("prompt is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise Bad(
            f"prompt is {len(text)} characters; Veo takes about 1,024 tokens "
            f"(roughly {MAX_PROMPT_CHARS} characters) at most"
        )
    if problem := _control_problem("prompt", text):
        raise Bad(problem)
    return text


def model(v: object) -> str:
    """A model name or alias from the (data-driven) model table."""
    if isinstance(v, str):
        if (name := v.strip()) in models.MODELS:
            return name
        for info in models.MODELS.values():
            if name in info.aliases:
                return info.name
    raise Bad(f"unknown model {show(v)}; known models: {', '.join(models.MODELS)}")


def template(v: object) -> str:
    """An ``output`` template: a relative path with ``{id}`` and ``{batch}`` placeholders."""
    if not isinstance(v, str) or not v.strip():
        raise Bad(f"output must be a name template like '{{batch}}/{{id}}', not {show(v)}")
    rest = v.replace("{id}", "").replace("{batch}", "")
    if "{" in rest or "}" in rest:
        raise Bad(f"output {show(v)}: the only placeholders are {{id}} and {{batch}}")
    if problem := output_problem(v.replace("{id}", "x").replace("{batch}", "x")):
        raise Bad(problem)
    return v.strip()


def repeat(v: object) -> int:
    """How many variants of the job (``repeat: N``)."""
    n = to_int("repeat", v)
    if not 1 <= n <= MAX_REPEAT:
        raise Bad(f"repeat must be between 1 and {MAX_REPEAT}, not {n}")
    return n


def budget_usd(v: object) -> float:
    """The batch's budget (``defaults: budget``), in USD."""
    if isinstance(v, bool | HugeInt) or not isinstance(v, int | float) or v < 0:
        raise Bad(f"budget must be an amount in USD, not {show(v)}")
    return float(v)


_TAKE_ID = re.compile(r".~[0-9]+$")
"""How a retake's id ends (``store.takes``): no manifest's id may, so none is ever a take's."""


def job_id(v: object) -> str:
    """An id given in the manifest: one file name (it names the video by default)."""
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise Bad(f"id must be text, not {show(v)}")
    if isinstance(v, HugeInt):
        raise Bad(f"id is {v.digits + v.negative} characters; at most {MAX_ID_CHARS}")
    s = str(v).strip() if isinstance(v, str) else str(v)
    if not s:
        raise Bad("id is empty")
    if len(s) > MAX_ID_CHARS:
        raise Bad(f"id is {len(s)} characters; at most {MAX_ID_CHARS}")
    if s in (".", "..") or "/" in s or "\\" in s or NAME_CONTROL.search(s):
        raise Bad(f"id {s!r} must not be '.' or '..' nor contain '/', '\\' or control characters")
    if _TAKE_ID.search(s):
        raise Bad(f"id {s!r} must not end in '~' and a number: that names a retake (ID~2)")
    return s


# --- the route: where a manifest's jobs go (``defaults:`` only) ----------------------------

MANIFEST_PROVIDERS = ("gptproto", "gemini", "vertex")
"""The providers a manifest may name (``custom`` is a command's ``--base-url``, not a place)."""
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}")
"""A Google Cloud project id (6-30 lowercase letters, digits, hyphens; a letter first) or
number: it is a segment of every Vertex URL, so nothing else is let through."""
_LOCATION = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
"""A Google Cloud region (``us-central1``, ``europe-west4``) or ``global``: part of the
Vertex host name, so nothing else is let through."""
MAX_LOCATION_CHARS = 63
"""One DNS label: the region is the first part of ``REGION-aiplatform.googleapis.com``."""
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
"""A Cloud Storage bucket name (3-222 characters of lowercase letters, digits, ``.-_``)."""
_OBJECT_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def provider(v: object) -> str:
    """A provider a manifest may name."""
    if isinstance(v, str) and (name := v.strip().lower()) in MANIFEST_PROVIDERS:
        return name
    raise Bad(f"provider must be one of {', '.join(MANIFEST_PROVIDERS)}, not {show(v)}")


def project(v: object) -> str:
    """A Google Cloud project id or number (YAML may give the number as an int)."""
    text = str(v) if isinstance(v, int) and not isinstance(v, bool | HugeInt) else v
    if isinstance(text, str) and _PROJECT.fullmatch(text := text.strip()):
        return text
    raise Bad(
        "project must be a Google Cloud project id (6 to 30 lowercase letters, digits and "
        f"hyphens, starting with a letter) or project number, not {show(v)}"
    )


def location(v: object) -> str:
    """A Google Cloud region, or ``global``."""
    if (
        isinstance(v, str)
        and len(text := v.strip().lower()) <= MAX_LOCATION_CHARS
        and _LOCATION.fullmatch(text)
    ):
        return text
    raise Bad(f"location must be a Google Cloud region like us-central1 (or global), not {show(v)}")


def split_gcs(v: str) -> tuple[str, str] | None:
    """``(bucket, object)`` of a ``gs://`` URI with a valid bucket name; None if it is not one."""
    if not v.startswith("gs://"):
        return None
    bucket, _, name = v[len("gs://") :].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _OBJECT_CONTROL.search(name):
        return None
    return bucket, name


def storage_uri(v: object) -> str:
    """``gs://BUCKET/PREFIX/``, where Vertex writes the videos; made to end with ``/`` (a
    folder: Vertex appends its own names to it)."""
    parts = split_gcs(v.strip()) if isinstance(v, str) else None
    if parts is None:
        raise Bad(
            "storageUri must be a Cloud Storage folder like gs://BUCKET/PREFIX/ "
            f"(a valid bucket name), not {show(v)}"
        )
    bucket, prefix = parts
    return (
        f"gs://{bucket}/{prefix}"
        if prefix.endswith("/") or not prefix
        else (f"gs://{bucket}/{prefix}/")
    )
