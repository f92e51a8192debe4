"""Every knob of the simulator, and how a flag or a JSON value becomes one.

``SimConfig`` is built from ``batchveo simulate``'s flags (strings such as
``--generation-s 1,5``), from ``POST /__sim/config`` (JSON) or by the tests (real types),
and changed at runtime. Each field is coerced by its kind (``_COERCERS``) and checked in
``__post_init__``, so a bad value is one ``ValueError`` naming the field.

What each knob fakes is told where it is served: ``server`` (faults, quotas, downloads,
polls), ``quota`` (rate and day limits), ``markers`` (outcomes a prompt forces),
``vertex`` (the Vertex AI knobs: tokens, keys trusted, where videos are written, project
numbers, permission, the 429's delay, empty answers), ``review`` (the reviews' quota),
``files`` (the Files API: the largest upload, the GETs a file stays ``PROCESSING``, a
foreign upload URL).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchveo.models import RETENTION_S
from batchveo.sim.generation import GenerationTime, parse_generation
from batchveo.sim.generation import to_json as generation_json

STYLES: Mapping[str, tuple[str, ...]] = {
    "retry_after_style": ("header", "retryinfo", "message", "none"),
    "poll_methods": ("get", "post", "both"),
    "name_style": ("google", "short"),
    "response_style": ("nested", "flat"),
    "vertex_retry_after_style": ("retryinfo", "message", "none"),
}
"""The fields that choose one of a few wire shapes, and their choices."""
FAULT_STATUSES = (429, 500, 502, 503, 504)
"""What an injected fault may answer (``fail_first_polls_status``)."""

_RANGES = ("latency_s",)
_PROBABILITIES = (
    "rate_429",
    "rate_5xx",
    "rate_reset",
    "rate_content_policy",
    "rate_operation_error",
    "rate_filtered",
    "rate_truncated_download",
    "rate_empty",
)
_FLOATS = (
    "retry_after_s",
    "rate_window_s",
    "retention_s",
    "day_s",
    "early_404_s",
    "token_lifetime_s",
)
_OPT_INTS = (
    "rpm_limit",
    "rpd_limit",
    "max_concurrent_ops",
    "balance_submits",
    "seed",
    "review_rpm_limit",
)
_INTS = ("fail_first_polls", "fail_first_polls_status", "upload_max_bytes", "file_processing_polls")
_BOOLS = (
    "count_polls_in_rpm",
    "redirect_downloads",
    "project_number_names",
    "vertex_permission_denied",
)
_OPT_STRS = ("files_host", "precondition_failure", "storage_upload_base", "upload_host")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass
class SimConfig:
    """Every knob of the simulator; see the modules named in this module's docstring."""

    api_key: str = "sim-key"
    generation_s: GenerationTime = (11.0, 60.0)
    """``(MIN, MAX)`` seconds, or a ``LogNormalTime`` (``generation``)."""
    latency_s: tuple[float, float] = (0.0, 0.0)
    rate_429: float = 0.0
    retry_after_style: str = "header"
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0
    rate_reset: float = 0.0
    rate_content_policy: float = 0.0
    rate_operation_error: float = 0.0
    rate_filtered: float = 0.0
    rate_truncated_download: float = 0.0
    rpm_limit: int | None = None
    rate_window_s: float = 60.0
    rpd_limit: int | None = None
    day_s: float = 86_400.0
    early_404_s: float = 0.0
    count_polls_in_rpm: bool = False
    max_concurrent_ops: int | None = None
    balance_submits: int | None = None
    poll_methods: str = "both"
    fail_first_polls: int = 0
    fail_first_polls_status: int = 503
    retention_s: float = float(RETENTION_S)
    files_host: str | None = None
    redirect_downloads: bool = False
    name_style: str = "google"
    response_style: str = "nested"
    retired_models: tuple[str, ...] = ()
    precondition_failure: str | None = None
    seed: int | None = None
    # -- Vertex AI (``vertex``): how each is served is told there.
    token_lifetime_s: float = 3600.0
    vertex_keys: tuple[str, ...] = ()
    storage_upload_base: str | None = None
    project_number_names: bool = False
    vertex_permission_denied: bool = False
    vertex_retry_after_style: str = "retryinfo"
    rate_empty: float = 0.0
    # -- reviews (``review``): ``generateContent``'s own quota, per format.
    review_rpm_limit: int | None = None
    # -- the Files API (``files``): uploads of videos too large to review inline.
    upload_max_bytes: int = 256 * 1024 * 1024
    """The largest upload kept (its own figure, under the service's 2 GB: the bytes are
    held in memory; a 148 s take is about 130 MB)."""
    file_processing_polls: int = 1
    """GETs of an uploaded file that still say ``PROCESSING`` (then ``ACTIVE``)."""
    upload_host: str | None = None
    """The host the upload URL names (default: the one asked): another one fakes a server
    handing out a foreign upload URL."""
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        try:
            self.generation_s = parse_generation(self.generation_s)
        except (TypeError, ValueError, IndexError) as e:
            raise ValueError(f"generation_s: {e}") from None
        for name, allowed in STYLES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        for name in _RANGES:
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be MIN,MAX with 0 <= MIN <= MAX")
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if self.rate_window_s <= 0 or self.retry_after_s < 0 or self.retention_s < 0:
            raise ValueError("rate_window_s must be > 0, retry_after_s and retention_s >= 0")
        if self.day_s <= 0 or self.early_404_s < 0:
            raise ValueError("day_s must be > 0 and early_404_s >= 0")
        if self.upload_max_bytes < 1 or self.file_processing_polls < 0:
            raise ValueError("upload_max_bytes must be >= 1 and file_processing_polls >= 0")
        if self.token_lifetime_s <= 0:
            raise ValueError("token_lifetime_s must be > 0")
        if self.fail_first_polls < 0 or self.fail_first_polls_status not in FAULT_STATUSES:
            raise ValueError(
                "fail_first_polls must be >= 0 and fail_first_polls_status one of "
                + ", ".join(map(str, FAULT_STATUSES))
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SimConfig:
        """Build from CLI flags or JSON: ``--generation-s 1,5`` style strings or real types.

        Keys may use dashes; ``None`` values mean "flag not given" and keep the default.
        """
        return cls().with_changes({k: v for k, v in values.items() if v is not None})

    def with_changes(self, values: Mapping[str, Any]) -> SimConfig:
        """A copy with some fields changed; ``None`` here really sets None (e.g. no rpm limit)."""
        changes = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            changes[name] = coerce(name, value)
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "clock"}
        out["generation_s"] = generation_json(self.generation_s)
        data: dict[str, Any] = json.loads(json.dumps(out))
        return data


# --------------------------------------------------------------------------- coercion


def coerce(name: str, value: Any) -> Any:
    """Turn one flag/JSON value into the field's type, or raise ValueError naming the field."""
    convert = _COERCERS.get(name)
    if convert is None:
        raise ValueError(f"unknown simulator setting: {name}")
    try:
        return convert(value)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"invalid value for {name}: {value!r}") from None


def _range(value: Any) -> tuple[float, float]:
    """``"1,5"``, ``[1, 5]`` or one number (MIN = MAX)."""
    parts = value.split(",") if isinstance(value, str) else value
    if isinstance(parts, int | float):
        parts = [parts]
    if len(parts) not in (1, 2):
        raise ValueError
    return (float(parts[0]), float(parts[-1]))


def _optional_int(value: Any) -> int | None:
    """A count >= 0, or None for "no limit" (``""`` and ``"none"`` from a flag)."""
    if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
        return None
    if isinstance(value, bool) or int(value) < 0:
        raise ValueError
    return int(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    return int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() not in (*_TRUE, *_FALSE):
            raise ValueError
        return value.lower() in _TRUE
    return bool(value)


def _names(value: Any) -> tuple[str, ...]:
    """``"a,b"`` or a list: model ids, key file paths."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(m).strip() for m in items if str(m).strip())


def _optional_str(value: Any) -> str | None:
    return (str(value) or None) if value is not None else None


def _clock(value: Any) -> Callable[[], float]:
    if not callable(value):
        raise ValueError
    clock: Callable[[], float] = value
    return clock


_COERCERS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_RANGES, _range),
    "generation_s": parse_generation,
    **dict.fromkeys((*_PROBABILITIES, *_FLOATS), float),
    **dict.fromkeys(_OPT_INTS, _optional_int),
    **dict.fromkeys(_INTS, _int),
    **dict.fromkeys(_BOOLS, _bool),
    **dict.fromkeys(_OPT_STRS, _optional_str),
    **dict.fromkeys((*STYLES, "api_key"), str),
    "retired_models": _names,
    "vertex_keys": _names,
    "clock": _clock,
}
"""How each field is read from a flag or JSON; a field missing here cannot be set."""
