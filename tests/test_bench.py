"""The benchmark script at tiny sizes, so that it keeps working; no timing is asserted."""

import json
import math

import pytest

from tests.helpers import load_benchmark

pytestmark = pytest.mark.slow  # each runs a benchmark script (several searches, processes of their own)


@pytest.fixture(scope="session")
def bench():
    module = load_benchmark("bench")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)  # Ray's workers cannot import a script by its name
    return module


@pytest.mark.usefixtures("ray_session")
def test_benchmark_runs_every_method_and_they_agree(bench, capsys):
    methods = ",".join(bench.METHODS)
    # P1 is P2's loop with other fits (P4 below runs its spec): every method once, on P2, shows they agree
    assert bench.main(["--quick", "--only", "P2,P3,P4,MEM", "--methods", methods, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["rows"]
    mine = [r for r in rows if r["workload"] == "P2"]
    assert {r["method"] for r in mine} == set(bench.METHODS)
    assert len({round(r["best"], 9) for r in mine}) == 1  # the same configurations, the same best
    assert all(math.isfinite(r["ratio_to_ideal"]) and r["fits"] == mine[0]["fits"] for r in mine)
    p3 = {r["method"]: r for r in rows if r["workload"] == "P3"}
    assert p3["asha"]["fits"] < p3["full"]["fits"] and p3["racing"]["fits"] < p3["full"]["fits"]
    p4 = [r for r in rows if r["workload"] == "P4"]
    assert [r["fits"] for r in p4] == sorted(r["fits"] for r in p4) and "ms/fit" in p4[0]["note"]
    mem = {r["method"]: r for r in rows if r["workload"] == "MEM"}
    assert set(mem) == {"joblib", "metaray"} and mem["joblib"]["best"] == pytest.approx(mem["metaray"]["best"])
    assert all(r["peak_mb"] > 0 and "x joblib's" in r["note"] for r in mem.values())
    p3 = [r for r in rows if r["workload"] == "P3" and r["method"] != "full"]
    assert all("corrected paired t, p = " in r["note"] for r in p3)


def test_benchmark_throughput_counts_everything_that_reached_mlflow(bench, capsys, ray_session):
    """THROUGHPUT at tiny sizes: every child run, step and value arrives, and the marginal row has its rates."""
    assert bench.main(["--quick", "--only", "THROUGHPUT,DRIVER", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    runs = [r for r in rows if r["workload"] == "THROUGHPUT" and r["method"] != "marginal"]
    assert len(runs) == 2 and all("INCOMPLETE" not in r["note"] and "MLflow got" in r["note"] for r in runs)
    marginal = next(r for r in rows if r["method"] == "marginal")
    assert math.isfinite(marginal["fits_per_s"]) and "of MLflow's client alone" in marginal["note"]
    driver = next(r for r in rows if r["workload"] == "DRIVER")
    assert driver["fits"] == 500 * 20 and driver["fits_per_s"] > 0


def test_the_warm_start_benchmark_runs_leave_one_dataset_out(ray_session, tmp_path, capsys):
    warm = load_benchmark("warm_start")
    assert warm.main(["--quick", "--json", str(tmp_path / "w.json")]) == 0
    data = json.loads((tmp_path / "w.json").read_text())
    rows = data["rows"]
    assert [r["dataset"] for r in rows] == list(warm.QUICK)
    for r in rows:
        assert r["dataset"] not in r["sources"] and r["sources"]  # its own search left out, others taken
        assert 1 <= r["warm_needed"] <= 7 and 1 <= r["cold_needed"] <= 7
        assert r["ratio"] == pytest.approx(r["warm_needed"] / r["cold_needed"])
    assert "median warm/cold configurations needed" in capsys.readouterr().out


def test_the_final_model_benchmark_scores_refit_bag_and_ensemble_from_one_search(ray_session, tmp_path, capsys):
    final = load_benchmark("final")
    assert final.main(["--quick", "--json", str(tmp_path / "f.json")]) == 0
    data = json.loads((tmp_path / "f.json").read_text())
    (run,) = data["runs"]
    assert set(run["test"]) == {"refit", "bag", "ensemble"} and all(0 < v <= 1 for v in run["test"].values())
    assert run["fits"]["refit"] == 1 and run["fits"]["bag"] == data["k"]
    weights = [m["weight"] for m in run["members"]]
    assert run["fits"]["ensemble"] == len(weights) and sum(weights) == pytest.approx(1)
    assert run["gain"] == pytest.approx(run["test"]["ensemble"] - run["test"]["refit"])
    assert "ensemble >= refit on" in capsys.readouterr().out


def test_the_front_benchmark_measures_each_searchers_hypervolume_at_equal_fits(ray_session, tmp_path, capsys):
    front = load_benchmark("front")
    assert front.main(["--quick", "--json", str(tmp_path / "h.json")]) == 0
    rows = {r["searcher"]: r for r in json.loads((tmp_path / "h.json").read_text())}
    assert set(rows) == {"random", "optuna", "moasha"}
    budget = rows["random"]["fits"]
    assert rows["optuna"]["fits"] == budget and 0 < rows["moasha"]["fits"] <= budget  # equal fits, or less
    assert rows["random"]["ratio_all"] == 1.0 and all(r["hv_all"] > 0 and r["front"] >= 1 for r in rows.values())
    assert "optuna / random, mean over 1 seed(s)" in capsys.readouterr().out


def test_the_cluster_simulator_drives_the_real_driver_up_to_1024_cores(capsys):
    scale = load_benchmark("scale")
    assert scale.main(["--quick", "--json", "--cores", "16,128", "--searchers", "random,optuna",
                       "--schedulers", "none,asha"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {(r["searcher"], r["scheduler"], r["cores"]) for r in rows} == {
        (n, s, c) for n in ("random", "optuna") for s in ("none", "asha") for c in (16, 128)}
    for r in rows:
        assert 0 < r["utilisation_total"] <= r["utilisation_work"] <= 1
        assert r["configurations"] == max(40, 4 * r["cores"])
        assert r["fits"] == r["configurations"] * scale.K if r["scheduler"] == "none" else r["fits"] < r[
            "configurations"] * scale.K  # ASHA stops some after their first rung


def test_a_random_search_keeps_1024_simulated_cores_busy_and_asha_ends_it_sooner():
    """While configurations remain, a random search keeps 1,024 simulated cores busy (2 % of fits ten times as long
    hold up the delivery of those after them); with ASHA, which spends fewer fits, it ends sooner than without (ASHA
    judges ahead of the slow fits: judged strictly in order at each rung, its search took 60 times as long). Racing,
    whose decisions wait for every configuration before to end, fits ahead of them: it ends about when the search
    without a scheduler does (its configurations waiting idle, it took 38 times as long). The driver's own time is
    not charged here, so that this does not depend on the machine; the benchmark charges it."""
    scale = load_benchmark("scale")
    none, asha, racing = (scale.simulate("random", s, 1024, 4096, "default", charge=False)
                          for s in ("none", "asha", "racing"))
    assert none.utilisation >= 0.95 and asha.utilisation >= 0.95, (none, asha)
    assert asha.fits < none.fits and asha.makespan_s < none.makespan_s, (none, asha)
    assert racing.makespan_s < 1.5 * none.makespan_s and none.copies > 0, (none, racing)


def test_suggestions_made_beside_the_driver_change_when_fits_start_not_what_the_search_decides(monkeypatch):
    """``simulate(..., suggesters=N)``, the design of suggestions made by N processes beside the driver: the same
    decisions and best as suggestions made in the driver (each is made when the in-flight rule allows it, from the
    same results), the driver's own time without them (each suggestion takes 20 ms here, far more than the driver's
    own work), and a configuration's fits held until its suggestion is ready (with the driver's time not charged, at
    once: the very timeline of the driver's own suggestions)."""
    import time

    scale = load_benchmark("scale")
    build = scale.build_driver

    def slow(*args, **kwargs):  # a searcher whose every suggestion takes 20 ms
        driver = build(*args, **kwargs)
        suggest = driver.searcher.suggest
        driver.searcher.suggest = lambda index: (time.sleep(0.02), suggest(index))[1]
        return driver

    monkeypatch.setattr(scale, "build_driver", slow)
    runs = {}
    for suggesters in (0, 3):
        kept: list = []
        row = scale.simulate("optuna", "racing", 16, 48, "8", keep=kept, suggesters=suggesters)
        exact = scale.simulate("optuna", "racing", 16, 48, "8", charge=False, suggesters=suggesters)
        runs[suggesters] = (row, scale.outcome(kept[0]), exact)
    (inline, decided, exact), (beside, decided_beside, exact_beside) = runs[0], runs[3]
    assert decided_beside == decided and beside.suggesters == 3 and inline.suggesters == 0
    assert beside.driver_s < 0.5 * beside.suggest_s and inline.driver_s >= inline.suggest_s >= 48 * 0.02
    assert (exact_beside.makespan_s, exact_beside.fits, exact_beside.utilisation_total) == (
        exact.makespan_s, exact.fits, exact.utilisation_total)


def test_the_cluster_simulator_decides_as_a_real_ray_search_with_the_same_seed(ray_session):
    """The simulator's searches against the same searches on Ray (metaray's FitRunner, tasks finishing in whatever
    order): the same decisions, so the same best configuration."""
    scale = load_benchmark("scale")
    rows = scale.check(configurations=40, searchers=("random", "optuna"), schedulers=("asha",))
    assert len(rows) == 2 and all(r["same_decisions"] and r["best_simulated"] == r["best_on_ray"] for r in rows), rows
