"""The client's and the simulator's import boundaries, read from their source.

The simulator stands in for the service, so it may share nothing with the client or the
runner but the model table and the MP4 box reader (a client bug copied into the simulator
would pass every test).
The client knows nothing of the run. And aiohttp's internals are touched in one module only,
``api/probe.py``, the one whose tests say which aiohttp versions it works with.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "batchveo"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as dotted names (``from a import b`` gives ``a``)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).glob("*.py"))


@pytest.mark.parametrize("path", modules("sim"), ids=lambda p: p.name)
def test_the_simulator_imports_only_the_model_table(path: Path) -> None:
    ours = {m for m in imports_of(path) if m == "batchveo" or m.startswith("batchveo.")}
    outside = {m for m in ours if not m.startswith("batchveo.sim")}
    # batchveo.mp4 reads and sets an MP4's length from its boxes: the simulator's videos
    # must really last what they should (issue 15), and it holds nothing of the client.
    assert outside <= {"batchveo.models", "batchveo.errors", "batchveo.mp4"}, outside


@pytest.mark.parametrize("path", modules("api"), ids=lambda p: p.name)
def test_the_client_knows_nothing_of_the_run(path: Path) -> None:
    forbidden = ("run", "store", "sim", "cli", "observe", "report", "manifest")
    for module in imports_of(path):
        parts = module.split(".")
        assert not (parts[0] == "batchveo" and len(parts) > 1 and parts[1] in forbidden), module


@pytest.mark.parametrize("path", modules("api"), ids=lambda p: p.name)
def test_only_the_probe_touches_aiohttp_internals(path: Path) -> None:
    text = path.read_text()
    internal = {m for m in imports_of(path) if m.startswith("aiohttp.")}
    subclasses = "(aiohttp.ClientRequest)" in text or "request_class=" in text
    if path.name == "probe.py":
        assert internal and subclasses  # what it exists for
    else:
        assert not internal and not subclasses, path.name


@pytest.mark.parametrize("name", ["wire.py", "errormap.py", "texts.py", "urls.py", "results.py"])
def test_the_wire_functions_need_no_session(name: str) -> None:
    """What turns bodies and answers into values is testable without a socket."""
    assert "ClientSession" not in (PACKAGE / "api" / name).read_text()
