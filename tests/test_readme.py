"""The README's table of promises names the tests that hold them: each named test must exist, so the table cannot
point at a test that was renamed or deleted."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT


def _promises() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## What the tests hold")
    return text[start : text.index("\n## ", start + 1)]


def test_every_test_the_readme_names_exists():
    named = re.findall(r"`(test_\w+)::(test_\w+)`", _promises())
    assert len(named) > 40
    defined: dict[str, set[str]] = {}
    for module, test in named:
        if module not in defined:
            tree = ast.parse((ROOT / "tests" / f"{module}.py").read_text())
            defined[module] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert test in defined[module], f"README names {module}::{test}, which does not exist"


def test_every_row_names_a_test():
    rows = [line for line in _promises().splitlines() if line.startswith("| ") and not line.startswith("| promise")]
    assert rows and all("`test_" in row for row in rows), [row for row in rows if "`test_" not in row]
