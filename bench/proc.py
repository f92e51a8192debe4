"""Child processes for the benchmarks: exact per-process rusage, and a simulator server.

Every measured command runs as its own child (``sys.executable -m batchveo ...``), so its
figures are its own and nothing of the benchmark's process leaks in:

* wall time: ``time.perf_counter()`` just before ``Popen`` to the moment the child exits,
  so interpreter start-up and imports are included (that is what a user waits for);
* CPU and peak memory: the child's own ``rusage`` returned by ``os.wait4`` when it is
  reaped (``ru_utime + ru_stime``, and ``ru_maxrss`` which Linux reports in KiB). The
  child is first waited for with ``waitid(WNOWAIT)``, which does not reap it, so a pending
  stop signal can never be sent to a recycled pid, and ``Popen.poll()`` is never called
  (it would reap the child and lose its rusage).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
API_KEY = "bench"


@dataclass(frozen=True)
class ChildResult:
    """One finished child process and its own resource use."""

    argv: list[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float
    stdout: str
    stderr: str
    signalled: str | None = None
    """The stop signal the benchmark sent (``SIGTERM`` after a set time), if any."""
    started_at: float = 0.0
    """``time.time()`` when it was spawned: to place file times within the run."""

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def summary(self) -> dict[str, Any]:
        return {
            "returncode": self.returncode,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "user_s": round(self.user_s, 3),
            "sys_s": round(self.sys_s, 3),
            "max_rss_mb": round(self.max_rss_mb, 1),
            "signalled": self.signalled,
        }


def batchveo_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "batchveo", *(str(a) for a in args)]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BATCHVEO_DB", None)  # every command gets its --db explicitly
    env["PYTHONUNBUFFERED"] = "1"
    # An installed batchveo runs from its bytecode: a session that forbids writing it
    # (PYTHONDONTWRITEBYTECODE) would have every child compile every module it imports,
    # 0.1-0.3 s of start-up no user pays (``compile_code`` writes it once per checkout).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


def compile_code(python: str, root: Path) -> None:
    """Write the bytecode of the checkout at ``root`` (as installing it would), so that no
    timed child compiles source; not timed."""
    subprocess.run(
        [python, "-m", "compileall", "-q", str(root / "batchveo")],
        env=_env(None), stdout=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def run_child(
    argv: list[str],
    *,
    log_stem: Path,
    env: dict[str, str] | None = None,
    stop_after_s: float | None = None,
    timeout_s: float = 900.0,
    cwd: Path = ROOT,
) -> ChildResult:
    """Run ``argv`` to its end; SIGTERM it after ``stop_after_s``, SIGKILL after ``timeout_s``.

    stdout and stderr go to ``<log_stem>.stdout`` / ``.stderr`` (kept for inspection).
    ``cwd``: where it runs (another checkout, for an A/B run of the same measure).
    """
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    out_path = log_stem.with_name(log_stem.name + ".stdout")
    err_path = log_stem.with_name(log_stem.name + ".stderr")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started_at, start = time.time(), time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=_env(env), cwd=cwd)
        signals = [(timeout_s, signal.SIGKILL)]
        if stop_after_s is not None:
            signals.append((stop_after_s, signal.SIGTERM))
        code, wall_s, usage, sent = _reap(proc, start, signals)
    return ChildResult(
        argv=argv,
        returncode=code,
        wall_s=wall_s,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
        signalled=sent[0] if sent else None,
        started_at=started_at,
    )


def _reap(
    proc: subprocess.Popen[bytes], start: float, signals: list[tuple[float, signal.Signals]]
) -> tuple[int, float, resource.struct_rusage, list[str]]:
    """Wait for ``proc`` (sending each signal at its time), reap it; its own rusage.

    ``waitid(WNOWAIT)`` sees the exit without reaping, so until the flag below is set the
    pid cannot have been recycled and a timer may still signal it safely.
    """
    lock = threading.Lock()
    exited = False
    sent: list[str] = []

    def send(sig: signal.Signals) -> None:
        with lock:
            if not exited:
                os.kill(proc.pid, sig)
                sent.append(sig.name)

    timers = [threading.Timer(after_s, send, (sig,)) for after_s, sig in signals]
    for t in timers:
        t.daemon = True
        t.start()
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        wall_s = time.perf_counter() - start
        with lock:
            exited = True
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        for t in timers:
            t.cancel()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4: tell Popen, so it never waits again
    return code, wall_s, usage, sent


class SimProcess:
    """``batchveo simulate --port 0 ...`` as a child; its URL, its stats, its own rusage."""

    _LISTENING = re.compile(r"listening on (http://\S+)")

    def __init__(self, log_stem: Path, *flags: str):
        self.argv = batchveo_argv("simulate", "--port", "0", "--api-key", API_KEY, *flags)
        self.log_path = log_stem.with_name(log_stem.name + ".stderr")
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self.result: ChildResult | None = None

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 20.0) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as err:
            self._proc = subprocess.Popen(
                self.argv, stdout=subprocess.DEVNULL, stderr=err, env=_env(None), cwd=ROOT
            )
        self._start = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = self._LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.url = match.group(1)
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"simulator did not start; see {self.log_path}")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/__sim/stats", timeout=30) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def cpu_s(self) -> float | None:
        """CPU seconds the simulator has used so far (Linux ``/proc``), None elsewhere."""
        if self._proc is None:
            return None
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def stop(self) -> ChildResult | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return self.result
        os.kill(proc.pid, signal.SIGINT)  # `simulate` exits cleanly on KeyboardInterrupt
        code, wall_s, usage, _ = _reap(proc, self._start, [(10.0, signal.SIGKILL)])
        self.result = ChildResult(
            argv=self.argv,
            returncode=code,
            wall_s=wall_s,
            user_s=usage.ru_utime,
            sys_s=usage.ru_stime,
            max_rss_mb=usage.ru_maxrss / 1024,
            stdout="",
            stderr=self.log_path.read_text(errors="replace"),
        )
        return self.result


def poll_requests(stats: dict[str, Any]) -> int:
    """Every poll the simulator answered, whatever the status."""
    return sum(stats.get("requests", {}).get("poll", {}).values())


def accepted_submits(stats: dict[str, Any]) -> int:
    return int(stats.get("requests", {}).get("submit", {}).get("200", 0))


def machine_info() -> dict[str, Any]:
    """Enough context to compare two runs of the benchmark."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        info["cpu_model"] = model.group(1).strip() if model else None
        meminfo = Path("/proc/meminfo").read_text()
        total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
        info["memory_mb"] = int(total.group(1)) // 1024 if total else None
    except OSError:
        pass
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "batchveo"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        info["git"] = rev.stdout.strip() + (" (batchveo/ modified)" if dirty.stdout else "")
    except (OSError, subprocess.SubprocessError):
        info["git"] = None
    return info
