"""The adaptive searchers (Optuna's TPE, HyperOpt) are reproducible and resumable: what they have seen before each
suggestion depends on the spec alone, not on which fit finished first nor on how many CPUs the cluster has, so a
search killed anywhere and resumed gives the table of an uninterrupted one, fitting no (configuration, subset) twice.

28 configurations: beyond TPE's 10 random start-up trials and HyperOpt's 9, so the suggestions learn from results
and a search that fed its searcher in another order would suggest other configurations."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from metaray.run import resume as resume_search
from metaray.run import search as run_search
from metaray.runners import FitRunner

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

ADAPTIVE = {"name": "adaptive", "seed": 2, "data": {"dataset": "wine", "scale": True},
            "learner": {"name": "logistic_regression"}, "subsets": {"k": 4, "fraction": 0.5},
            "search": {"num_samples": 28,
                       "space": {"C": {"loguniform": [1e-4, 100.0]}, "class_weight": {"choice": [None, "balanced"]}}}}
COMBINATIONS = [("optuna", "asha"), ("optuna", "racing"), ("hyperopt", "asha"), ("hyperopt", "racing")]


SCHEDULERS = {"asha": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
              "racing": {"name": "racing", "min_subsets": 2}}


def spec_for(searcher: str, scheduler: str) -> dict:
    return {**ADAPTIVE, "search": {**ADAPTIVE["search"], "searcher": searcher, "scheduler": SCHEDULERS[scheduler]}}


def journal(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "fits.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Each combination searched once, uninterrupted."""
    base = tmp_path_factory.mktemp("uninterrupted")
    return {combo: run_search(spec_for(*combo), run_dir=base / "-".join(combo), track=False) for combo in COMBINATIONS}


@pytest.mark.parametrize("combo", COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def test_killed_at_three_points_and_resumed_gives_the_uninterrupted_table(combo, references, tmp_path):
    reference = references[combo]
    assert len(reference.results) == 28 and (reference.results["status"] == "stopped").any()
    whole = (reference.run_dir / "fits.jsonl").read_bytes()
    for share in (0.15, 0.5, 0.85):
        folder = tmp_path / f"killed-at-{share}"
        folder.mkdir()
        shutil.copy(reference.run_dir / "spec.yaml", folder / "spec.yaml")  # as the killed process wrote it
        cut = whole.rfind(b"\n", 0, int(len(whole) * share)) + 1
        (folder / "fits.jsonl").write_bytes(whole[:cut] + b'{"trial": 3, "ke')  # killed in the middle of a write
        kept = len(whole[:cut].splitlines())
        said = []
        resumed = resume_search(folder, track=False, progress=said.append)
        assert any(line.startswith("journal: cut back a truncated last line") for line in said)
        pd.testing.assert_frame_equal(resumed.results, reference.results)
        seen = [(r["trial"], r["stage"], r["subset"]) for r in journal(folder)]
        assert len(seen) == len(set(seen)), f"a (configuration, subset) was fitted twice after a kill at {share}"
        assert 0 < resumed.fits_replayed <= kept and resumed.fits_run > 0


#: TPE on a space of 4 configurations, 16 suggestions: most are ones suggested before
DISCRETE = {"name": "discrete", "seed": 3, "data": {"dataset": "wine", "scale": True},
            "learner": {"name": "random_forest", "params": {"n_estimators": 5}}, "subsets": {"k": 3},
            "search": {"searcher": "optuna", "num_samples": 16,
                       "space": {"max_depth": {"choice": [2, 4]}, "criterion": {"choice": ["gini", "entropy"]}}}}


def test_a_configuration_suggested_again_is_not_fitted_again_and_resumes_to_the_same_table(tmp_path):
    """A configuration the searcher suggests again takes its fits from the first with the same hyperparameters (a fit
    depends on the configuration, the subset and the seed only), so it scores as that one did, and the fits are not
    spent twice; a search killed half-way and resumed gives the same table."""
    from metaray.plan import ADAPTIVE_IN_FLIGHT

    first = run_search(DISCRETE, run_dir=tmp_path / "first", track=False)
    table = first.results.sort_values("trial").reset_index(drop=True)
    params, scores = ["param.max_depth", "param.criterion"], ["score_0", "score_1", "score_2"]
    twin = table.groupby(params, sort=False)["trial"].transform("first").str[1:].astype(int)
    for _, group in table.groupby(params):
        assert len(group[scores].drop_duplicates()) == 1, group  # the same scores as the first of its kind
    # configuration i opens once i - 8 has ended: a twin at or before that had its fits back, so they were taken
    sure = int(((twin <= table.index - ADAPTIVE_IN_FLIGHT) & (twin < table.index)).sum())
    assert sure >= 1 and first.fits_reused >= 3 * sure
    assert first.fits_run + first.fits_reused == 16 * 3 == len(journal(first.run_dir))  # each journaled as its own
    assert f"{first.fits_reused} taken from identical configurations" in first.summary()
    folder = tmp_path / "killed"
    folder.mkdir()
    shutil.copy(first.run_dir / "spec.yaml", folder / "spec.yaml")
    whole = (first.run_dir / "fits.jsonl").read_bytes()
    (folder / "fits.jsonl").write_bytes(whole[:whole.rfind(b"\n", 0, len(whole) // 2) + 1])
    pd.testing.assert_frame_equal(resume_search(folder, track=False).results, first.results)


@pytest.mark.parametrize("combo", [("optuna", "asha"), ("hyperopt", "racing")], ids=["optuna-asha", "hyperopt-racing"])
def test_the_order_in_which_fits_finish_does_not_matter(combo, references, tmp_path, monkeypatch):
    """Results are handed to the driver in a shuffled order, some held back for a while: the same table."""
    original, rng, held = FitRunner.wait, np.random.default_rng(7), []

    def shuffled(self):
        held.extend(original(self))
        rng.shuffle(held)
        take = len(held) if self.pending == 0 else int(rng.integers(0, len(held) + 1))
        out = held[:take]
        del held[:take]
        return out

    monkeypatch.setattr(FitRunner, "wait", shuffled)
    result = run_search(spec_for(*combo), run_dir=tmp_path / "shuffled", track=False)
    pd.testing.assert_frame_equal(result.results, references[combo].results)


#: digits and random forests under Optuna with ASHA: fits long enough for a kill to land mid-search
KILLED = {**spec_for("optuna", "asha"), "data": {"dataset": "digits"}, "ray": {"num_cpus": 4},
          "learner": {"name": "random_forest", "params": {"n_estimators": 10}},
          "search": {**spec_for("optuna", "asha")["search"], "num_samples": 24,
                     "space": {"max_depth": {"randint": [2, 12]}, "max_features": {"uniform": [0.05, 0.5]}}}}


@pytest.fixture(scope="module")
def killed_on_4_cpus(ray_session, tmp_path_factory, new_store):
    """A real `metaray run` of KILLED on a Ray of its own with 4 CPUs, killed with SIGKILL mid-search (its Ray with
    it), then `metaray resume` (on 4 CPUs again: the run folder's spec says so); and the same search uninterrupted on
    the suite's Ray of 2 CPUs. Returns the journal before the kill, the resume's output, the run folder, the clean
    table."""
    tmp = tmp_path_factory.mktemp("killed")
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump({**KILLED, "storage": str(tmp / "runs")}, sort_keys=False))
    env = {**os.environ, "MLFLOW_TRACKING_URI": new_store(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "metaray", "run", str(path)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, folder = time.monotonic() + 240, None
    while time.monotonic() < deadline:
        folder = next((tmp / "runs").glob("*/*"), None)
        if folder and (folder / "fits.jsonl").exists() and len(journal(folder)) >= 30:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = journal(folder)
    state = json.loads((folder / "state.json").read_text())["status"]
    done = subprocess.run([sys.executable, "-m", "metaray", "resume", str(folder)], env=env, capture_output=True,
                          text=True, timeout=300)
    clean = run_search({**KILLED, "ray": {}}, run_dir=tmp / "clean", track=False)
    return {"before": before, "state": state, "done": done, "folder": folder,
            "clean": pd.read_csv(clean.run_dir / "results.csv")}


@pytest.mark.slow
def test_the_same_table_on_4_cpus_as_on_2(killed_on_4_cpus):
    """The suite's Ray has 2 CPUs; the killed search and its resume ran on a Ray of 4, with 4 fits at once instead of
    2: the searcher still saw the same results before each suggestion, so the table is the 2-CPU one."""
    done = killed_on_4_cpus["done"]
    assert done.returncode == 0, done.stderr[-2000:]
    assert yaml.safe_load((killed_on_4_cpus["folder"] / "spec.yaml").read_text())["ray"]["num_cpus"] == 4
    pd.testing.assert_frame_equal(pd.read_csv(killed_on_4_cpus["folder"] / "results.csv"), killed_on_4_cpus["clean"])


@pytest.mark.slow
def test_sigkilled_optuna_search_resumes_without_refitting(killed_on_4_cpus):
    """A real `metaray run` killed with SIGKILL mid-search (its Ray with it), then `metaray resume`: the uninterrupted
    table, every (configuration, subset) fitted once, no configuration that had finished fitted again."""
    before, done, folder = killed_on_4_cpus["before"], killed_on_4_cpus["done"], killed_on_4_cpus["folder"]
    assert 30 <= len(before) < 24 * 4 and killed_on_4_cpus["state"] == "running"
    finished = {t for t in {r["trial"] for r in before} if sum(r["trial"] == t for r in before) == 4}  # K = 4
    assert finished
    assert done.returncode == 0, done.stderr[-2000:]
    replayed = int(re.search(r"(\d+) replayed from the journal", done.stdout).group(1))
    # every journaled fit the resumed search asked for (a fit run ahead of a decision that stopped its
    # configuration is not asked for again), and at least those of the configurations that had finished
    assert 4 * len(finished) <= replayed <= len(before)
    after = journal(folder)[len(before):]
    assert after and not {r["trial"] for r in after} & finished  # configurations that had finished: not fitted again
    seen = [(r["trial"], r["stage"], r["subset"]) for r in journal(folder)]
    assert len(seen) == len(set(seen))  # and no fit ran twice
    pd.testing.assert_frame_equal(pd.read_csv(folder / "results.csv"), killed_on_4_cpus["clean"])
