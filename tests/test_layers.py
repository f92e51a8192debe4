"""The import boundaries of the package, pinned so that a convenience import cannot creep in.

- The simulator imports nothing of the runner, the store or the client: it fakes the
  service, and a client that works against it must work against the real one.
- The client (``api``) never imports the store or the run: it turns requests into values
  or exceptions, nothing more.
- The store never imports the run, the client, the CLI or the observers.
- Only ``cli/`` prints or exits.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "batchveo"


def _modules(sub: str) -> list[Path]:
    root = PACKAGE / sub
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


def _imports(path: Path) -> set[str]:
    """Every ``batchveo.*`` module a file imports, at any depth (lazy imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("batchveo"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "batchveo":
                out.update(f"batchveo.{a.name}" for a in node.names)
            elif node.module.startswith("batchveo."):
                out.add(node.module)
    return out


FORBIDDEN = {
    "sim": ("batchveo.run", "batchveo.store", "batchveo.api", "batchveo.cli", "batchveo.observe"),
    "api": ("batchveo.run", "batchveo.store", "batchveo.cli", "batchveo.observe"),
    "store": ("batchveo.run", "batchveo.api", "batchveo.cli", "batchveo.observe"),
    "manifest": ("batchveo.run", "batchveo.api", "batchveo.cli", "batchveo.observe"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_it_must_not(package: str) -> None:
    bad = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if name.startswith(FORBIDDEN[package])
    }
    assert not bad, sorted(bad)


def _prints_or_exits(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = (
            f.id
            if isinstance(f, ast.Name)
            else f"{getattr(f.value, 'id', '?')}.{f.attr}"
            if isinstance(f, ast.Attribute)
            else ""
        )
        if name in ("print", "exit", "quit", "sys.exit", "os._exit", "click.echo", "click.secho"):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    return found


def test_only_the_cli_prints_or_exits() -> None:
    outside = [
        p
        for p in PACKAGE.rglob("*.py")
        if "cli" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"
    ]
    found = [hit for path in outside for hit in _prints_or_exits(path)]
    assert not found, found


def test_the_command_line_starts_without_the_pipeline() -> None:
    """Every command pays for what ``import batchveo.cli`` imports (``status`` at a million
    jobs has half a second in all): the manifests, the store, the clients and aiohttp are
    imported by the commands that use them, when they run."""
    code = (
        "import sys, batchveo.cli; print(' '.join(m for m in ('batchveo.manifest',"
        " 'batchveo.store', 'batchveo.run.runner', 'batchveo.api', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
