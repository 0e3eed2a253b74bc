"""Every experiment YAML loads, validates and runs on a reduced budget."""

import pytest

from metaray.objective import evaluate, prepare
from metaray.spec import load_spec
from tests.conftest import EXPERIMENTS

SPECS = sorted(EXPERIMENTS.glob("*.yaml"))


def test_there_are_experiments():
    assert SPECS


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_experiment_loads_and_prepares(path):
    prepared = prepare(load_spec(path))
    assert prepared.plan.k == load_spec(path).subsets.k


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_experiment_runs_small(path):
    ev = evaluate(path, ["subsets.k=2"])
    assert len(ev.subsets) == 2
