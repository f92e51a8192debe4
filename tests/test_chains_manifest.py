"""Scene chains in manifests: what a chain loads as, and each bad chain's one line."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchveo.cli import main
from batchveo.errors import ManifestError
from batchveo.manifest import read_manifests
from batchveo.models import GEMINI_EXTENSION, PROVIDER_MODELS, VERTEX_EXTENSION
from batchveo.routes import Route
from batchveo.spec import JobSpec


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_a_chain_is_its_root_and_one_hop_per_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        """
        defaults: {aspectRatio: "9:16", negativePrompt: rain}
        jobs:
          - id: walk
            prompt: a walk begins
            seed: 7
            chain:
              - the walk goes on
              - {prompt: the walk ends, seed: 9, output: "ends/{id}"}
        """,
    )
    root, two, three = read_manifests([path]).specs
    assert (root.id, root.extends, root.chain_root, root.hop) == ("walk", None, "walk", 1)
    assert (two.id, two.extends, two.hop, two.output_s) == ("walk-2", "walk", 2, 15)
    assert (three.id, three.extends, three.hop, three.output_s) == ("walk-3", "walk-2", 3, 22)
    assert two.params == {
        "aspectRatio": "9:16",
        "resolution": "720p",
        "durationSeconds": 8,  # what the Gemini format takes of an extension
        "negativePrompt": "rain",
    }
    assert three.params["seed"] == 9 and three.output_name == "ends/walk-3"
    assert two.model == root.model and two.source == root.source
    # A hop costs a whole video of its length.
    assert three.cost_usd == pytest.approx(0.40 * 22)


def test_a_hops_identity_holds_its_parent_and_other_jobs_keep_theirs() -> None:
    plain = JobSpec(id="x", batch="b", prompt="p", model="m", params={"a": 1})
    hop_a = JobSpec(id="x", batch="b", prompt="p", model="m", params={"a": 1}, extends="a")
    hop_b = JobSpec(id="x", batch="b", prompt="p", model="m", params={"a": 1}, extends="b")
    assert len({plain.spec_hash(), hop_a.spec_hash(), hop_b.spec_hash()}) == 3
    assert "extends" not in plain.content_key() and hop_a.content_key()["extends"] == "a"


def test_extends_names_a_job_of_the_load_across_files(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", "jobs:\n  - {id: root, prompt: it starts}\n")
    second = write(
        tmp_path / "b.yaml",
        "jobs:\n  - {id: next, extends: root, prompt: it goes on}\n"
        "  - {extends: next, prompt: it goes on and on}\n",
    )
    _, nxt, auto = read_manifests([first, second]).specs
    assert (nxt.extends, nxt.chain_root, nxt.hop, nxt.batch) == ("root", "root", 2, "b")
    assert auto.id.startswith("j") and auto.extends == "next" and auto.hop == 3


def test_the_limits_are_data_one_per_route() -> None:
    assert PROVIDER_MODELS["gemini"].extension is GEMINI_EXTENSION
    assert PROVIDER_MODELS["vertex"].extension is VERTEX_EXTENSION
    assert (GEMINI_EXTENSION.max_extensions, GEMINI_EXTENSION.max_output_s) == (20, 148)
    assert (VERTEX_EXTENSION.max_input_s, VERTEX_EXTENSION.max_output_s) == (30, 37)


def _chain(n: int, root: str = "  - id: a\n    prompt: p\n") -> str:
    return root + "    chain: [" + ", ".join(f"hop {i}" for i in range(2, n + 2)) + "]\n"


VERTEX = "defaults: {provider: vertex, project: my-proj-1, storageUri: gs://bkt/night/}\njobs:\n"
BAD = [
    ("unknown parent", "jobs:\n  - {id: b, extends: nobody, prompt: p}\n",
     "c.yaml:2, job b: extends 'nobody', which is neither in the database nor a job with an id"
     " loaded before it"),
    ("cycle", "jobs:\n  - {id: b, extends: b, prompt: p}\n",
     "c.yaml:2, job b: extends itself: a chain cannot be a cycle (b)"),
    ("a forward reference cannot loop",
     "jobs:\n  - {id: b, extends: c, prompt: p}\n  - {id: c, extends: b, prompt: q}\n",
     "c.yaml:2, job b: extends 'c', which is neither in the database nor a job with an id"
     " loaded before it"),
    ("a hop sets its model", "jobs:\n  - {id: a, prompt: p}\n"
     "  - {id: b, extends: a, prompt: q, resolution: 720p}\n",
     "c.yaml:3, job b: a hop may set only prompt, negativePrompt, seed, output, not resolution"),
    ("a chain entry sets a duration", "jobs:\n  - id: a\n    prompt: p\n"
     "    chain: [{prompt: q, durationSeconds: 8}]\n",
     "c.yaml:2, job a-2: a hop may set only prompt, negativePrompt, seed, output, not"
     " durationSeconds"),
    ("a chain entry that is neither", "jobs:\n  - id: a\n    prompt: p\n    chain: [[1, 2]]\n",
     "c.yaml:2, job a: hop a-2: a chain entry must be a prompt or a mapping"),
    ("1080p on the Gemini format", "jobs:\n  - id: a\n    prompt: p\n    resolution: 1080p\n"
     "    chain: [q]\n",
     "c.yaml:2, job a-2: extends a at 1080p: provider gptproto extends only 720p videos"),
    ("21 extensions", "jobs:\n" + _chain(21),
     "c.yaml:2, job a-22: the chain breaks at hop a-22: at most 20 extensions on provider"
     " gptproto, this is extension 21"),
    ("a short root still breaks the total", "jobs:\n" + _chain(21, "  - id: a\n    prompt: p\n"
     "    durationSeconds: 4\n"),
     "c.yaml:2, job a-22: the chain breaks at hop a-22: at most 20 extensions"),
    ("vertex output over 37 s", VERTEX + _chain(5),
     "c.yaml:3, job a-6: the chain breaks at hop a-6: it would extend a 36 s video,"
     " provider vertex extends 1-30 s"),
    ("lite cannot extend", "jobs:\n  - id: a\n    prompt: p\n"
     "    model: veo-3.1-lite-generate-preview\n    chain: [q]\n",
     "c.yaml:2, job a-2: extends a: model veo-3.1-lite-generate-preview does not support"
     " video extension"),
    ("chain and repeat", "jobs:\n  - id: a\n    prompt: p\n    repeat: 2\n    chain: [q]\n",
     "c.yaml:2, job a: chain and repeat cannot be combined"),
    ("not a list", "jobs:\n  - id: a\n    prompt: p\n    chain: q\n",
     "c.yaml:2, job a: chain must be a list of prompts"),
]  # fmt: skip


@pytest.mark.parametrize("text,line", [pytest.param(t, m, id=i) for i, t, m in BAD])
def test_each_bad_chain_is_one_line(tmp_path: Path, text: str, line: str) -> None:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ManifestError) as e:
        read_manifests([path])
    problem, *others = e.value.problems
    assert str(problem).replace(str(path), "c.yaml").startswith(line), str(problem)
    assert len({p.job for p in e.value.problems}) == 1 + len(others)  # one line a job


def _two_files(tmp_path: Path, defaults: str) -> list[Path]:
    a = write(tmp_path / "a.yaml", "jobs:\n  - {id: root, prompt: p}\n")
    hop = "jobs:\n  - {extends: root, prompt: q}\n"
    b = write(tmp_path / "b.yaml", f"defaults: {{{defaults}}}\n{hop}")
    return [a, b]


@pytest.mark.parametrize(
    "defaults,says",
    [
        ("provider: gemini", "extends root, which goes to provider gptproto, not gemini"),
        ("model: veo-3.1-fast-generate-preview", "this file's model veo-3.1-fast-generate-preview"
         " is another family"),
        ('aspectRatio: "9:16"', "this file's aspectRatio is 9:16"),
    ],
)  # fmt: skip
def test_a_parent_of_another_provider_family_or_shape_is_refused(
    tmp_path: Path, defaults: str, says: str
) -> None:
    with pytest.raises(ManifestError) as e:
        read_manifests(_two_files(tmp_path, defaults))
    [problem] = e.value.problems
    assert says in problem.message and problem.where.endswith("b.yaml:3")


def test_a_vertex_chain_without_a_storage_uri_is_refused_at_load(tmp_path: Path) -> None:
    path = write(tmp_path / "v.yaml", "defaults: {provider: vertex}\njobs:\n" + _chain(1))
    with pytest.raises(ManifestError) as e:
        read_manifests([path], route=Route(project="my-proj-1"))
    [problem] = e.value.problems
    assert problem.job == "a-2" and "needs a storage uri (--storage-uri" in problem.message
    ok = read_manifests(
        [path], route=Route(project="my-proj-1", storage_uri="gs://my-bucket/night/")
    )
    assert [s.id for s in ok.specs] == ["a", "a-2"]


def test_load_of_a_bad_chain_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "jobs:\n  - {id: fine, prompt: p}\n" + _chain(21))
    db = tmp_path / "jobs.db"
    result = CliRunner().invoke(main, ["load", str(path), "--db", str(db)])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.endswith("c.yaml:3, job a-22: the chain breaks at hop a-22: at most 20"
                         " extensions on provider gptproto, this is extension 21")  # fmt: skip
    assert not db.exists()
    # Into a database that exists: nothing of the load is in it.
    ok = write(tmp_path / "ok.yaml", "jobs:\n  - {id: other, prompt: p}\n")
    assert CliRunner().invoke(main, ["load", str(ok), "--db", str(db)]).exit_code == 0
    assert CliRunner().invoke(main, ["load", str(path), "--db", str(db)]).exit_code == 2
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM jobs")] == ["other"]


def test_the_streaming_load_stores_hops_waiting(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "jobs:\n" + _chain(2))
    db = tmp_path / "jobs.db"
    assert CliRunner().invoke(main, ["load", str(path), "--db", str(db)]).exit_code == 0
    with sqlite3.connect(db) as conn:
        got = list(conn.execute("SELECT id, state, extends, chain_root, hop FROM jobs"))
    assert got == [
        ("a", "pending", None, "a", 1),
        ("a-2", "waiting", "a", "a", 2),
        ("a-3", "waiting", "a-2", "a", 3),
    ]
    again = CliRunner().invoke(main, ["load", str(path), "--db", str(db)])
    assert again.exit_code == 0 and "0 new, 3 already loaded" in again.output


def test_plan_counts_each_hop_as_a_whole_video_of_its_length(tmp_path: Path) -> None:
    from batchveo.run.plan import make_plan

    path = write(tmp_path / "c.yaml", "jobs:\n" + _chain(2))  # 8 s, 15 s, 22 s
    plan = make_plan(read_manifests([path]).specs, tmp_path / "none.db")
    assert plan.to_submit == 3 and plan.video_s == 8 + 15 + 22
    assert plan.cost_usd == pytest.approx(0.40 * (8 + 15 + 22))
    held = make_plan(read_manifests([path]).specs, tmp_path / "none.db", budget_usd=10.0)
    assert (held.to_submit, held.over_budget) == (2, 1)  # 3.20 + 6.00, then 8.80 is over 10


def test_a_vertex_hop_keeps_its_roots_audio_choice_and_price(tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.yaml",
        "defaults: {provider: vertex, project: my-proj-1, storageUri: gs://my-bucket/n/}\n"
        "jobs:\n  - id: r\n    prompt: p\n    generateAudio: false\n    chain: [q]\n",
    )
    _, hop = read_manifests([path]).specs
    assert hop.params["generateAudio"] is False and hop.model == "veo-3.1-generate-001"
    assert hop.cost_usd == pytest.approx(0.20 * 15)  # video only, 15 s


def test_a_parents_video_is_live_until_the_retention_less_a_margin() -> None:
    from batchveo.chains import SEND_MARGIN_S, parent_expired
    from batchveo.models import RETENTION_S
    from batchveo.routes import Wire

    made = 1_000.0
    last = made + RETENTION_S - SEND_MARGIN_S
    assert not parent_expired(made, last - 1, Wire.GEMINI)
    assert parent_expired(made, last, Wire.GEMINI)
    assert not parent_expired(made, made + 10 * RETENTION_S, Wire.VERTEX)  # the user's bucket


def test_a_csv_jobs_named_in_one_file_are_extended_from_a_yaml_of_the_same_load(
    tmp_path: Path,
) -> None:
    shots = write(tmp_path / "shots.csv", "id,prompt\nopening,a lighthouse at dusk\n")
    more = write(tmp_path / "more.yaml", "jobs:\n  - {id: then, extends: opening, prompt: rain}\n")
    db = tmp_path / "jobs.db"
    result = CliRunner().invoke(main, ["load", str(shots), str(more), "--db", str(db)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as conn:
        got = list(conn.execute("SELECT id, state, extends, hop FROM jobs ORDER BY rowid"))
    assert got == [("opening", "pending", None, None), ("then", "waiting", "opening", 2)]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.csv", "id,prompt,extends\nx,p,\n", True),
        ("a.csv", "ID,Prompt,Extends\nx,p,\n", True),
        ("a.csv", "id,prompt\nx,the road extends: far\n", False),  # a prompt, not a column
        ("a.yaml", "jobs:\n  - {id: x, prompt: p}\n", False),
        ("a.yaml", "jobs:\n  - id: x\n    extends: y\n    prompt: p\n", True),
        ("a.yaml", 'jobs:\n  - {"extends": y, prompt: p}\n', True),
        ("a.yaml", "jobs:\n  - {id: x, prompt: 'the road extends: far'}\n", True),  # erring
        ("a.yaml", "jobs:\n  - {id: x, prompt: the road extends far}\n", False),
    ],
)
def test_whether_a_load_can_hold_a_hop_is_read_from_its_files(
    tmp_path: Path, name: str, text: str, expected: bool
) -> None:
    from batchveo.manifest.chaining import may_extend

    path = write(tmp_path / name, text)
    assert may_extend([path]) is expected
    assert may_extend([tmp_path / "missing.yaml", path]) is expected


def test_a_hop_that_may_extend_is_seen_past_the_first_block(tmp_path: Path) -> None:
    from batchveo.manifest.chaining import may_extend

    jobs = "".join(f"  - {{id: j{i}, prompt: shot {i} of the harbour}}\n" for i in range(40_000))
    path = write(tmp_path / "big.yaml", "jobs:\n" + jobs + "  - {extends: j0, prompt: more}\n")
    assert path.stat().st_size > 1 << 20
    assert may_extend([path])
    spec = read_manifests([path]).specs[-1]
    assert spec.extends == "j0" and spec.hop == 2
