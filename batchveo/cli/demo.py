"""``make demo`` (``python -m batchveo.cli.demo``): a real batch, end to end, on the
built-in simulator; ``make demo-vertex`` (``... demo --vertex``): the same batch through
the Vertex AI route.

Starts ``batchveo simulate`` on a free port, runs ``batchveo run ... --review``
against it exactly as a user would (same CLI, same database, real HTTP), prints the
status table, writes the report and its contact sheet, and stops the simulator. The
simulator is set to throw some 429s and 5xx errors so the retries are seen working;
every job still ends done.

Every video is reviewed by the simulator's ``generateContent``, which answers from
markers in the prompt. The example manifest has none (it is also the one to point at the
real service), so the demo loads a copy of it, ``demo.yaml``, in which two prompts end in
a marker (``DEMO_REVIEWS``): one take is flagged (score 4, a defect at 00:05), one passes
with a defect noted (score 7, the threshold); the others pass. Nothing else differs.

The Vertex demo has the simulator write a throwaway service-account key whose
``token_uri`` is the simulator's own token endpoint, and points
``GOOGLE_APPLICATION_CREDENTIALS`` at it: google-auth's real flow (a signed JWT
assertion traded for a bearer token) is what the run uses. The videos are written to
the simulator's Cloud Storage bucket (``--storage-uri``) and downloaded from it,
verified by their ``md5Hash``. Vertex AI retired the preview model ids the example
names, so this demo loads a copy of the example with each id replaced by its GA
successor (the very replacement a load of the original names); nothing else differs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from batchveo.models import PROVIDER_MODELS

DEMO_KEY = "demo-key"
MANIFEST = Path("jobs.example.yaml")
DEMO_MANIFEST = Path("demo.yaml")
"""The example with ``DEMO_REVIEWS``' markers (beside it: its images' paths hold)."""
DEMO_REVIEWS = {"paper-boat": "[sim:review=4]", "city-rain": "[sim:review=7]"}
"""Job id -> the simulator's review marker its prompt gets in the demo."""
REVIEW_FLAGS = ("--review", "--review-rpm", "120")
"""Every video reviewed (the default settings: threshold 7), two reviews a second."""
DB = Path("demo.db")
OUT = Path("videos")
VERTEX_DIR = Path("demo-vertex")
"""The Vertex demo's own database, key, manifest copy and videos (so both demos can be
run one after the other without either seeing the other's jobs)."""
VERTEX_PROJECT = "batchveo-demo"
VERTEX_BUCKET = "gs://batchveo-demo-videos/night/"


def _start_simulator(*extra: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable, "-m", "batchveo", "simulate", "--port", "0", "--api-key", DEMO_KEY,
        "--generation-s", "1,4", "--rate-5xx", "0.1", "--rate-429", "0.1",
        "--retry-after-style", "retryinfo", "--seed", "3", *extra,
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


def demo_manifest(text: str) -> str:
    """The example manifest with each ``DEMO_REVIEWS`` prompt ending in its marker."""
    for job_id, marker in DEMO_REVIEWS.items():
        line = re.compile(rf"(- id: {re.escape(job_id)}\n\s+prompt: [^\n]*)")
        text, n = line.subn(rf"\g<1> {marker}", text)  # a marker has no backslash
        if n != 1:
            raise ValueError(f"{MANIFEST}: no prompt line for job {job_id}")
    return f"# Written by make demo: {MANIFEST} with the simulator's review markers.\n{text}"


def run_args(manifest: Path, out: Path, *route: str) -> list[str]:
    """The demo's ``batchveo run`` arguments."""
    return [
        "run", str(manifest), "--out", str(out), "--rpm", "300", "--max-inflight", "8",
        "--first-poll", "2s", "--poll-interval", "2s", *REVIEW_FLAGS, *route,
    ]  # fmt: skip


def vertex_manifest(text: str) -> str:
    """The example manifest with each retired preview id replaced by its GA successor."""
    for old, new in PROVIDER_MODELS["vertex"].retired.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    return text


def _run_batch(manifest: Path, out: Path, env: dict[str, str], *route: str) -> int:
    code = _batchveo(*run_args(manifest, out, *route), env=env)
    if code == 2:
        print("demo: if an older demo's database is in the way: make clean", file=sys.stderr)
    _batchveo("status", env=env)
    report, sheet = out / "report.html", out / "sheet.jpg"
    if _batchveo("report", "--out", str(report), "--sheet", str(sheet), env=env) == 0:
        print(f"demo: report written to {report} (contact sheet: {sheet})")
    return code


def main(argv: list[str]) -> int:
    vertex = "--vertex" in argv
    if not MANIFEST.exists():
        print(f"demo: run me from the repository root ({MANIFEST} not found)", file=sys.stderr)
        return 2
    if vertex:
        VERTEX_DIR.mkdir(exist_ok=True)
        key = VERTEX_DIR / "service-account.json"
        manifest = VERTEX_DIR / "jobs.example.yaml"
        manifest.write_text(vertex_manifest(demo_manifest(MANIFEST.read_text())))
        # The copy sits one folder down: its images are the repository's.
        for image in re.findall(r"image: (examples/\S+)", manifest.read_text()):
            manifest.write_text(manifest.read_text().replace(image, f"../{image}"))
        db, out = VERTEX_DIR / "demo.db", VERTEX_DIR / "videos"
        sim_flags: tuple[str, ...] = (
            "--write-vertex-key",
            str(key),
            "--vertex-key-project",
            VERTEX_PROJECT,
        )
    else:
        DEMO_MANIFEST.write_text(demo_manifest(MANIFEST.read_text()))
        manifest, db, out, sim_flags = DEMO_MANIFEST, DB, OUT, ()
    sim, url = _start_simulator(*sim_flags)
    print(f"demo: simulator at {url}", file=sys.stderr)
    env = dict(os.environ, BATCHVEO_DB=str(db), BATCHVEO_BASE_URL=url)
    try:
        if vertex:
            env.update(GOOGLE_APPLICATION_CREDENTIALS=str(key), BATCHVEO_STORAGE_BASE_URL=url)
            env.pop("BATCHVEO_API_KEY", None)  # Vertex takes no key: the token is the credential
            route = ("--provider", "vertex", "--location", "us-central1")
            code = _run_batch(manifest, out, env, *route, "--storage-uri", VERTEX_BUCKET)
        else:
            env.update(BATCHVEO_API_KEY=DEMO_KEY)
            code = _run_batch(manifest, out, env)
    finally:
        sim.terminate()
        sim.wait(10)
    videos = sorted(out.rglob("*.mp4"))
    print(f"demo: {len(videos)} video(s) in {out}/ (database {db})")
    return 0 if code in (0, 1) else code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
