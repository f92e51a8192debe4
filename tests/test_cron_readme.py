"""The README's crontab line, run as cron would run it: twice, the first cut by --max-runtime.

Only the 14 minutes are shortened; everything else is the line as printed.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from tests.pipeline_helpers import KEY, fast_sim, is_sim_video, sha256_file

README = Path(__file__).parent.parent / "README.md"


def crontab_command() -> str:
    text = README.read_text()
    block = text.split("<!-- tested-crontab", 1)[1].split("```crontab\n", 1)[1].split("```")[0]
    line = block.strip()
    fields = line.split(None, 5)
    assert len(fields) == 6 and re.fullmatch(r"[*/0-9,-]+", fields[0]), line
    return fields[5]


async def run_like_cron(home: Path, command: str, url: str) -> int:
    env = {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "GPTPROTO_API_KEY": KEY,
        # The simulator stands in for the real service, at simulator speed.
        "BATCHVEO_BASE_URL": url,
        "BATCHVEO_RPM": "0",
        "BATCHVEO_FIRST_POLL": "0.02s",
        "BATCHVEO_POLL_INTERVAL": "0.02s",
    }
    proc = await asyncio.create_subprocess_shell(command, env=env, stdin=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), 60)


async def test_the_readme_crontab_line_works_across_two_runs(tmp_path: Path) -> None:
    command = crontab_command().replace("--max-runtime 14m", "--max-runtime 1s")
    assert "--max-runtime 1s" in command
    work = tmp_path / "veo"
    (work / "manifests").mkdir(parents=True)
    (work / "manifests" / "monday.yaml").write_text(
        "jobs:\n" + "".join(f"  - id: clip{i}\n    prompt: cron clip {i}\n" for i in range(3))
    )
    async with fast_sim(generation_s="2,2") as sim:
        assert await run_like_cron(tmp_path, command, sim.url) == 75
        log = (work / "cron.log").read_text()
        assert "max runtime reached with work left, run again to continue" in log
        assert not list(work.rglob("*.mp4"))  # cut off while generating: nothing yet

        sim.finish_all()
        sim.configure(generation_s=(0.0, 0.0))
        (work / "manifests" / "tuesday.yaml").write_text("jobs:\n  - id: late\n    prompt: x\n")
        assert await run_like_cron(tmp_path, command, sim.url) == 0
        stats = sim.stats()

    assert sorted(p.name for p in (work / "videos").glob("*.mp4")) == [
        "clip0.mp4", "clip1.mp4", "clip2.mp4", "late.mp4",
    ]  # fmt: skip
    videos = list((work / "videos").glob("*.mp4"))
    assert all(is_sim_video(p) for p in videos)
    assert len({sha256_file(p) for p in videos}) == len(videos) == 4
    assert stats["requests"]["submit"] == {"200": 4}  # nothing sent twice across the runs
    events = [json.loads(line) for line in (work / "batchveo.log").read_text().splitlines()]
    assert sum(e["event"] == "run_finished" for e in events) == 2
    assert "\x1b" not in (work / "cron.log").read_text()
