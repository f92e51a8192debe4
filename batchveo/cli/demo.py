"""``make demo`` (``python -m batchveo.cli.demo``): a real batch, end to end, on the
built-in simulator.

Starts ``batchveo simulate`` on a free port, runs ``batchveo run
jobs.example.yaml`` against it exactly as a user would (same CLI, same
database, real HTTP), prints the status table, and stops the simulator. The
simulator is set to throw some 429s and 5xx errors so the retries are seen
working; every job still ends done.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DEMO_KEY = "demo-key"
MANIFEST = Path("jobs.example.yaml")
DB = Path("demo.db")
OUT = Path("videos")


def _start_simulator() -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable, "-m", "batchveo", "simulate", "--port", "0", "--api-key", DEMO_KEY,
        "--generation-s", "1,4", "--rate-5xx", "0.1", "--rate-429", "0.1",
        "--retry-after-style", "retryinfo", "--seed", "3",
    ]  # fmt: skip
    sim = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert sim.stderr is not None
    for line in sim.stderr:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return sim, m.group(1)
    sim.kill()
    raise SystemExit("demo: the simulator did not start")


def _batchveo(*args: str, env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "batchveo", *args], env=env)


def main() -> int:
    if not MANIFEST.exists():
        print(f"demo: run me from the repository root ({MANIFEST} not found)", file=sys.stderr)
        return 2
    sim, url = _start_simulator()
    print(f"demo: simulator at {url}", file=sys.stderr)
    env = dict(os.environ, BATCHVEO_API_KEY=DEMO_KEY, BATCHVEO_BASE_URL=url, BATCHVEO_DB=str(DB))
    try:
        code = _batchveo(
            "run", str(MANIFEST), "--out", str(OUT), "--rpm", "300", "--max-inflight", "8",
            "--first-poll", "2s", "--poll-interval", "2s", env=env,
        )  # fmt: skip
        _batchveo("status", env=env)
        report = OUT / "report.html"
        if _batchveo("report", "--out", str(report), env=env) == 0:
            print(f"demo: report written to {report}")
    finally:
        sim.terminate()
        sim.wait(10)
    videos = sorted(OUT.rglob("*.mp4"))
    print(f"demo: {len(videos)} video(s) in {OUT}/ (database {DB})")
    return 0 if code in (0, 1) else code


if __name__ == "__main__":
    raise SystemExit(main())
