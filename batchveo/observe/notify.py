"""Telling someone about a run: a webhook POST and/or a shell command.

A notification is the last thing an unattended run does, and the least
important: it must never turn a finished batch into a crash, nor hang the
process that cron is waiting for. So every channel has a timeout, every
failure comes back as one sentence for the run's output, and nothing raises
except cancellation (which must reach whoever cancelled).

Webhook URLs often carry a secret in their path (Slack, Discord...): failure
messages name only the scheme and host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

from batchveo import __version__
from batchveo.observe.text import one_line
from batchveo.redact import KEY_VARIABLES

USER_AGENT = f"batchveo/{__version__}"
_BODY_PREVIEW = 300
_KILL_WAIT_S = 2.0


async def notify(
    summary: Mapping[str, Any],
    *,
    url: str | None = None,
    command: str | None = None,
    timeout_s: float = 10.0,
) -> list[str]:
    """Send ``summary`` as JSON to ``url`` and/or on ``command``'s stdin, both at once.

    Returns human-readable failure messages (empty when everything went
    through); never raises.
    """
    try:
        body = json.dumps(summary, ensure_ascii=False, default=str)
    except Exception as e:
        return [f"notification not sent: the summary is not JSON ({e})"]
    sends = []
    if url:
        sends.append(post_json(url, body, timeout_s))
    if command:
        sends.append(run_command(command, body, timeout_s))
    results = await asyncio.gather(*sends)
    return [r for r in results if r]


# -- webhook ------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``https://hooks.example.com/...``: enough to recognise, nothing secret."""
    try:
        u = URL(url)
    except Exception:
        return "(unparseable URL)"
    if not u.scheme or not u.host:
        return "(unparseable URL)"
    port = f":{u.explicit_port}" if u.explicit_port is not None else ""
    rest = "/..." if (u.path not in ("", "/") or u.query_string or u.fragment) else ""
    return f"{u.scheme}://{u.host}{port}{rest}"


async def post_json(url: str, body: str, timeout_s: float) -> str | None:
    """POST ``body``; None on a 2xx answer, else why not."""
    where = redact_url(url)
    if not where.startswith(("http://", "https://")):
        return f"webhook {where}: not an http(s) URL"
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        headers = {"User-Agent": USER_AGENT}
        async with (
            aiohttp.ClientSession(timeout=timeout, headers=headers) as session,
            session.post(
                url,
                data=body.encode("utf-8"),
                headers={"Content-Type": "application/json"},
            ) as resp,
        ):
            if 200 <= resp.status < 300:
                return None
            preview = (await resp.content.read(_BODY_PREVIEW)).decode("utf-8", "replace")
            reason = f"HTTP {resp.status} {resp.reason or ''}".strip()
            text = one_line(preview, 200)
            return f"webhook {where}: {reason}" + (f": {text}" if text else "")
    except TimeoutError:
        return f"webhook {where}: no answer within {timeout_s:g}s"
    except aiohttp.InvalidURL:
        return f"webhook {where}: not a usable http(s) URL"
    except Exception as e:  # connection refused, DNS, TLS, invalid URL...
        text = one_line(str(e).replace(url, where), 200) or type(e).__name__
        return f"webhook {where}: {text}"


# -- shell command ------------------------------------------------------------------------


def _env_without_keys() -> dict[str, str]:
    """The command is the user's, but the API key has no business there."""
    return {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}


async def run_command(command: str, body: str, timeout_s: float) -> str | None:
    """Run ``command`` in the shell with ``body`` on stdin; None if it exits 0.

    The command runs in its own process group so that a timeout kills what it
    started too (``sh -c 'curl ...'`` leaves no orphan). Its output is kept
    only to explain a failure. The command text itself is never repeated in a
    message: it may hold a token.
    """
    try:
        proc = await asyncio.create_subprocess_shell(
            command,
            env=_env_without_keys(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except Exception as e:
        return f"notify command could not start: {one_line(str(e), 200)}"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(body.encode("utf-8")), timeout_s)
    except TimeoutError:
        await _kill(proc)
        return f"notify command did not finish within {timeout_s:g}s (killed)"
    except asyncio.CancelledError:
        _signal_group(proc)
        raise
    except Exception as e:
        await _kill(proc)
        return f"notify command failed: {one_line(str(e), 200) or type(e).__name__}"
    return _exit_message(proc.returncode, out)


def _exit_message(returncode: int | None, out: bytes | None) -> str | None:
    if returncode == 0:
        return None
    if returncode is not None and returncode < 0:
        what = f"was killed by signal {-returncode}"
    else:
        what = f"exited with status {returncode}"
    tail = one_line((out or b"")[-_BODY_PREVIEW:].decode("utf-8", "replace"), 200)
    return f"notify command {what}" + (f": {tail}" if tail else "")


def _signal_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - not POSIX
            proc.kill()


async def _kill(proc: asyncio.subprocess.Process) -> None:
    _signal_group(proc)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), _KILL_WAIT_S)


# -- expiry warnings -----------------------------------------------------------------------


class ExpiryWatch:
    """Remembers which at-risk videos were already announced, so each is told once.

    The runner checks the at-risk list on every tick; without this, a video
    about to expire would send a notification every few seconds until it is
    downloaded. Memory is per process: a new run may warn again, once.
    """

    def __init__(self, threshold_s: float = 6 * 3600):
        self.threshold_s = threshold_s
        self._told: set[str] = set()

    def due(self, at_risk_jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Jobs (``{"id", "batch", "hours_left"}``) newly within the threshold."""
        fresh: list[dict[str, Any]] = []
        for job in at_risk_jobs:
            job_id = str(job.get("id"))
            hours_left = job.get("hours_left")
            if hours_left is None or job_id in self._told:
                continue
            if float(hours_left) * 3600 <= self.threshold_s:
                self._told.add(job_id)
                fresh.append(dict(job))
        return fresh
