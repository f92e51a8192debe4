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


def _bool(v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | str) and (b := _BOOLS.get(str(v).strip().lower())) is not None:
        return b
    raise Bad(f"enhancePrompt must be true or false, not {show(v)}")


def _seed(v: object) -> int:
    n = to_int("seed", v)
    if not 0 <= n <= MAX_SEED:
        raise Bad(f"seed must be between 0 and {MAX_SEED}, not {n}")
    return n


def _sample_count(v: object) -> int:
    if to_int("sampleCount", v) != 1:
        raise Bad(
            f"sampleCount must be 1, not {show(v)}: the Gemini API makes one video per "
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
        raise Bad(f"negativePrompt must be text, not {show(v)}")
    if problem := _control_problem("negativePrompt", text := v.strip()):
        raise Bad(problem)
    return text or None


COERCE: dict[str, Callable[[object], Any]] = {
    "aspectRatio": _choice("aspectRatio", models.ASPECT_RATIOS),
    "resolution": _choice("resolution", models.RESOLUTIONS),
    "durationSeconds": _duration,
    "personGeneration": _choice("personGeneration", models.PERSON_GENERATION),
    "enhancePrompt": _bool,
    "negativePrompt": _text,
    "seed": _seed,
    "sampleCount": _sample_count,
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
    return s
