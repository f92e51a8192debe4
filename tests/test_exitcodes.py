"""The exit codes are a contract: the README's table says exactly what the enum defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

from batchveo.exitcodes import ExitCode

README = Path(__file__).parent.parent / "README.md"


def test_the_readme_table_lists_every_exit_code_and_no_other() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = [int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)]
    assert codes == sorted(int(c) for c in ExitCode)


def test_an_exit_code_is_a_plain_number_in_json() -> None:
    assert json.dumps({"exit_code": ExitCode.STOPPED}) == '{"exit_code": 75}'
