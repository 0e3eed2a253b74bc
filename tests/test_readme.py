"""The README and docs/ hold to the code: every test they name exists (the promises table of docs/testing.md above
all), every relative link resolves, every page is reachable from the README, the README stays short, its commands
are the CLI's, and the experiment files they show load with the defaults they claim."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import yaml

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 250


def _prose(path: Path) -> str:
    """A page without its fenced code blocks (a ``#`` there is a comment, not a heading; a link there is code)."""
    return re.sub(r"^```.*?^```[^\n]*$", "", path.read_text(), flags=re.S | re.M)


def _code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def _promises() -> list[str]:
    """The rows of the promises table (the one whose header is ``| promise | tests |``), wherever it lives."""
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("| promise | tests |"):
                rows = []
                for row in lines[i + 2:]:  # after the header and its |---| line
                    if not row.startswith("|"):
                        break
                    rows.append(row)
                found.append(rows)
    assert len(found) == 1, f"{len(found)} promises tables in README.md and docs/"
    return found[0]


def _defined(module: str) -> set[str]:
    path = ROOT / "tests" / f"{module}.py"
    assert path.is_file(), f"the docs name tests of {module}, which does not exist"
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}


def test_every_test_the_docs_name_exists():
    table = re.findall(r"`(test_\w+)::(test_\w+)`", "\n".join(_promises()))
    assert len(table) > 40
    named = {(page.name, m, t) for page in PAGES for m, t in re.findall(r"`(test_\w+)::(test_\w+)`", page.read_text())}
    defined: dict[str, set[str]] = {}
    missing = []
    for page, module, test in sorted(named):
        if module not in defined:
            defined[module] = _defined(module)
        if test not in defined[module]:
            missing.append(f"{page} names {module}::{test}, which does not exist")
    assert not missing, "\n".join(missing)


def test_every_row_names_a_test():
    rows = _promises()
    assert rows and all("`test_" in row for row in rows), [row for row in rows if "`test_" not in row]


def test_the_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; the rest belongs in docs/"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, ``_``, ``-`` and spaces
    kept), spaces to hyphens.

    >>> slug("Does the meta-objective predict generalisation?"), slug("The `search:` keys")
    ('does-the-meta-objective-predict-generalisation', 'the-search-keys')
    """
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on a page; a repeated heading gets ``-1``, ``-2`` ... as on GitHub."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _prose(page), flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        yield base if n == 0 else f"{base}-{n}"


def links(page: Path) -> list[tuple[Path, str]]:
    """The relative links of a page: (target file, anchor or "")."""
    out = []
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", _prose(page)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        out.append(((page.parent / path).resolve() if path else page, anchor))
    return out


def test_every_relative_link_resolves_to_a_file_and_a_heading():
    assert DOCS, "no docs/*.md"
    broken = []
    for page in PAGES:
        for target, anchor in links(page):
            where = f"{page.relative_to(ROOT)}: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}"
            if not target.is_file() or not target.is_relative_to(ROOT):
                broken.append(f"{where} does not exist")
            elif anchor and anchor not in set(anchors(target)):
                broken.append(f"{where}#{anchor}: no such heading")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {target for target, _ in links(README)}
    assert not [page.name for page in DOCS if page.resolve() not in linked]


def test_every_file_the_docs_name_exists():
    """Paths in the text (``experiments/x.yaml``, ``metaray/report.py``, ``tests/test_x.py``, ``clusters/...``)."""
    named = {(page.name, p.rstrip(".,:;")) for page in PAGES for p in re.findall(
        r"(?<![\w/.])((?:experiments|clusters|metaray|tests|docs|\.ci)/[\w./-]*[\w/])", page.read_text())}
    missing = [f"{page} names {path}" for page, path in sorted(named)
               if "<" not in path and not (ROOT / path).exists()]
    assert not missing, "\n".join(missing)


def _subcommands() -> dict[str, set[str]]:
    from metaray.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: {s for a in p._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
            for name, p in sub.choices.items()}


def test_the_readme_commands_are_the_clis():
    """Every command and option of the README's command list exists, and every option of every command is in it."""
    prose = README.read_text()
    block = prose[prose.index("```", prose.index("## Commands")):]
    block = block[3: block.index("```", 3)]
    documented: dict[str, set[str]] = {}
    command = None
    for line in block.splitlines():
        if line.startswith("metaray "):
            command = line.split()[1]
        elif not line.strip().startswith("["):
            continue  # a description line
        documented.setdefault(command, set()).update(re.findall(r"--[\w-]+", line))
    actual = _subcommands()
    assert set(documented) == set(actual)
    for name, options in actual.items():
        assert documented[name] == options, (name, documented[name] ^ options)


def test_the_readme_experiment_file_loads():
    from metaray.spec import load_spec

    (block,) = _code_blocks(README, "yaml")
    spec = load_spec(yaml.safe_load(block))
    assert spec.data.path and spec.search.space


def test_the_reference_names_every_key_with_its_default():
    """docs/experiment-file.md's block of all keys: every key of the spec is in it, and it loads to the defaults
    (except the two that depend on the task, which it says)."""
    from metaray.spec import ExperimentSpec, load_spec

    block = _code_blocks(ROOT / "docs" / "experiment-file.md", "yaml")[0]
    raw = yaml.safe_load(block)
    written = load_spec(raw).model_dump()
    default = load_spec({"name": raw["name"], "data": {"dataset": raw["data"]["dataset"]}}).model_dump()
    for section, field in ExperimentSpec.model_fields.items():
        if field.exclude:
            continue
        assert section in raw, f"the reference lacks {section}"
        keys = getattr(field.annotation, "model_fields", None)
        if keys and section != "search":  # search's keys: docs/searching.md
            uncommented = set(raw[section]) | set(re.findall(rf"^  # ({'|'.join(keys)}):", block, flags=re.M))
            assert set(keys) <= uncommented, f"the reference lacks {section}.{set(keys) - uncommented}"
            for key in keys:
                if (section, key) not in (("learner", "name"), ("objective", "metric")):
                    assert written[section][key] == default[section][key], f"{section}.{key}"
        elif section != "search":
            assert written[section] == default[section], section
