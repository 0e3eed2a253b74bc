"""The package's shape: no import cycle between its modules, no private attribute of Ray anywhere, and a Python API
that prints nothing unless asked."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "metaray"


def imports() -> dict[str, set[str]]:
    """Module -> the metaray modules it imports (at the top or inside a function: both make a cycle)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("metaray")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("metaray"):
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m != name}
    modules = set(graph)
    return {m: {d for d in deps if d in modules and not m.startswith(d + ".")} for m, deps in graph.items()}


def test_no_module_imports_one_that_imports_it_back():
    graph = imports()
    assert {"metaray.driver", "metaray.run", "metaray.tracking", "metaray.folder"} <= set(graph)

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(d == goal or (d not in seen and not seen.add(d) and reaches(d, goal, seen)) for d in graph[start])

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, cycles


def test_the_driver_and_tracking_know_their_place():
    graph = imports()
    assert not {d for d in graph["metaray.driver"] if d not in ("metaray.errors", "metaray.fits")}  # no Ray, no files
    assert "metaray.run" not in graph["metaray.tracking"]  # tracking receives what it logs


def test_no_private_attribute_or_module_of_ray_anywhere():
    private = re.compile(r"\bray(\.\w+)*\._\w+|\._(brackets|rungs|trial_info|live_trial_mapping)\b")
    found = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
             for folder in ("metaray", "clusters", "experiments") for path in (ROOT / folder).rglob("*.py")
             for i, line in enumerate(path.read_text().splitlines(), 1) if private.search(line)]
    assert not found, found
    assert private.search("from ray._raylet import Config") and private.search("self._s._brackets[0]")


@pytest.mark.usefixtures("ray_session")
def test_the_python_api_searches_resumes_and_compares_without_printing(tmp_path, capsys, monkeypatch, caplog):
    import metaray

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = {"name": "api", "data": {"dataset": "iris"}, "subsets": {"k": 2}, "storage": str(tmp_path / "runs"),
            "search": {"num_samples": 3, "space": {"C": {"loguniform": [0.1, 10.0]}}, "grace_period": 1}}
    result = metaray.search(spec)
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # nothing printed: progress is asked for with a callback
    assert "search.grace_period: deprecated" in caplog.text  # notices go to the metaray logger
    table = result.results
    assert sorted(table["trial"]) == ["t0000", "t0001", "t0002"] and (table["status"] == "completed").all()
    assert table["objective"].tolist() == sorted(table["objective"], reverse=True)  # best first
    assert table["objective"].nunique() > 1  # so that the order above says something
    assert result.best["objective"] == result.results["objective"].max() and result.mlflow_run_id
    assert (result.run_dir / "results.csv").is_file()
    lines = []
    again = metaray.resume(result.run_dir, progress=lines.append)
    assert again.fits_run == 0 and again.fits_replayed == 6 and any(line.startswith("[  3/3]") for line in lines)
    table = metaray.compare(["api"])
    assert len(table) == 3 and set(table["trial"]) == set(result.results["trial"])
