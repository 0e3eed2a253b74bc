"""What a search does when things go wrong that are not the input's fault: every configuration fails, a fit never ends,
the refit of the best configuration fails, the journal was cut by a kill, the search is resumed from another folder.
Searches run through the `metaray` command in this process, on the session's Ray."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time

import mlflow
import pandas as pd
import psutil
import pytest
import yaml

import tests.helpers
from metaray.cli import main

pytestmark = pytest.mark.usefixtures("ray_session")

IRIS = {"name": "faults", "seed": 0, "data": {"dataset": "iris"}, "subsets": {"k": 2}}
DIVERGING = {"name": "mlp", "params": {"epochs": 2, "hidden_layer_sizes": [4], "optimizer": "sgd"}}


@pytest.fixture(autouse=True)
def _helpers_by_value():
    """The misbehaving learners live in tests/helpers.py, which Ray's workers cannot import by name."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(tests.helpers)
    yield
    cloudpickle.unregister_pickle_by_value(tests.helpers)


def write(tmp_path, **sections) -> str:
    spec = {**IRIS, "storage": str(tmp_path / "runs"), **sections}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def run_dir(tmp_path):
    return next((tmp_path / "runs").glob("*/*"))


def parent_run(folder):
    state = json.loads((folder / "state.json").read_text())
    return mlflow.MlflowClient(state["mlflow_uri"]).get_run(state["parent_run_id"])


@pytest.mark.slow
def test_a_search_in_which_every_configuration_failed_exits_1(tmp_path, capsys):
    path = write(tmp_path, learner=DIVERGING, search={"searcher": "grid", "space": {"lr": {"grid": [1e9, 1e12]}}})
    assert main(["run", path]) == 1  # not 0 (nothing was found), not 2 (the input was valid)
    out, err = capsys.readouterr()
    last = err.strip().splitlines()[-1]
    assert last.startswith("metaray: no configuration completed: every configuration failed (2 of 2); "
                           "most common error (2x): FitError: TorchMLPClassifier: training loss became"), last
    assert "Traceback" not in err and "no configuration completed" in out
    folder = run_dir(tmp_path)
    assert (folder / "results.csv").is_file() and not (folder / "best.json").exists()
    assert json.loads((folder / "state.json").read_text())["status"] == "failed"
    parent = parent_run(folder)
    assert parent.info.status == "FAILED" and "every configuration failed" in parent.data.tags["metaray.error"]
    assert "No configuration completed." in (folder / "report.html").read_text()  # a report even so, without figures


@pytest.mark.slow
def test_a_search_with_some_failures_exits_0_and_says_how_many(tmp_path, capsys):
    path = write(tmp_path, learner=DIVERGING, search={"searcher": "grid", "space": {"lr": {"grid": [0.01, 1e12]}}})
    assert main(["run", path]) == 0
    out, err = capsys.readouterr()
    assert "1 of 2 configurations failed; most common error (1x): FitError:" in err
    assert "best configuration" in out and (run_dir(tmp_path) / "best.json").is_file()
    assert parent_run(run_dir(tmp_path)).info.status == "FINISHED"


@pytest.mark.slow
def test_a_fit_that_never_ends_fails_its_configuration_and_its_task_is_killed(tmp_path, capsys):
    pid_file = tmp_path / "hung.pid"
    path = write(tmp_path, learner={"name": "tests.helpers.HangingClassifier", "params": {"pid_file": str(pid_file)}},
                 ray={"fit_timeout_s": 10}, search={"searcher": "grid", "space": {"hang_s": {"grid": [0, 3600]}}})
    assert main(["run", path]) == 0
    table = pd.read_csv(run_dir(tmp_path) / "results.csv")
    status = dict(zip(table["param.hang_s"], table["status"], strict=True))
    assert status == {0: "completed", 3600: "failed"}
    error = table.loc[table["status"] == "failed", "error"].iloc[0]
    assert "did not finish within ray.fit_timeout_s=10 s; its task was cancelled" in error
    pids = [int(line) for line in pid_file.read_text().split()]
    assert len(pids) == 2  # both subsets of the hanging configuration started
    deadline = time.monotonic() + 20
    while alive := [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, f"the workers {alive} running the hung fits are still alive"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("hang_s", [0, 3600], ids=["raises", "hangs"])
def test_a_failing_refit_keeps_the_results_and_exits_1(hang_s, tmp_path, capsys):
    # iris: a pool of 120 rows, subsets of 60; the refit on all 120 fails (or never ends)
    path = write(tmp_path, learner={"name": "tests.helpers.FailsOnTheWholePool",
                                    "params": {"max_rows": 100, "hang_s": hang_s}},
                 subsets={"k": 2, "fraction": 0.5, "protocol": "holdout"}, ray={"fit_timeout_s": 10},
                 search={"searcher": "grid", "space": {"max_rows": {"grid": [90, 100]}}})
    assert main(["run", path]) == 1
    out, err = capsys.readouterr()
    # a fit's clock starts at its dispatch, a cold worker's start-up included: 10 s holds on a loaded machine
    reason = "did not finish within 20 s" if hang_s else "MemoryError: 120 rows do not fit in memory"
    assert "metaray: the refit of the best configuration failed (" in err and reason in err, err
    folder = run_dir(tmp_path)
    table = pd.read_csv(folder / "results.csv")
    assert len(table) == 2 and (table["status"] == "completed").all()
    best = json.loads((folder / "best.json").read_text())
    assert reason in best["refit_error"] and best["holdout"] == {}
    assert parent_run(folder).info.status == "FAILED"


@pytest.mark.slow
def test_a_journal_line_cut_by_a_kill_is_cut_back_and_said(tmp_path, capsys):
    path = write(tmp_path, learner={"name": "logistic_regression"},
                 search={"num_samples": 3, "space": {"C": {"loguniform": [0.1, 10.0]}}})
    assert main(["run", path]) == 0
    folder = run_dir(tmp_path)
    table = pd.read_csv(folder / "results.csv")
    lines = (folder / "fits.jsonl").read_text().splitlines(keepends=True)
    (folder / "fits.jsonl").write_text("".join(lines[:3]) + lines[3][:40])  # a kill in the middle of a write
    capsys.readouterr()
    assert main(["resume", str(folder)]) == 0
    _, err = capsys.readouterr()
    assert "journal: cut back a truncated last line (40 bytes)" in err
    rows = [json.loads(line) for line in (folder / "fits.jsonl").read_text().splitlines()]  # every line whole
    assert len(rows) == 6 and len({(r["trial"], r["stage"], r["subset"]) for r in rows}) == 6
    pd.testing.assert_frame_equal(pd.read_csv(folder / "results.csv"), table)


def test_a_corrupt_journal_line_is_refused_not_skipped(tmp_path, capsys):
    path = write(tmp_path, learner={"name": "logistic_regression"}, search={"num_samples": 2})
    assert main(["run", path]) == 0
    folder = run_dir(tmp_path)
    lines = (folder / "fits.jsonl").read_text().splitlines(keepends=True)
    (folder / "fits.jsonl").write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    capsys.readouterr()
    assert main(["resume", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1].startswith("metaray: error: resume: line 2 of the journal is not a fit record")
    assert out == ""


@pytest.mark.slow
def test_resume_logs_to_the_store_the_search_started_with_from_any_folder(tmp_path, monkeypatch, capsys):
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    elsewhere.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the default store: sqlite:///mlflow.db in the working folder
    monkeypatch.chdir(first)
    path = write(tmp_path, learner={"name": "logistic_regression"},
                 search={"num_samples": 3, "space": {"C": {"loguniform": [0.1, 10.0]}}})
    assert main(["run", path]) == 0
    folder = run_dir(tmp_path)
    state = json.loads((folder / "state.json").read_text())
    assert state["mlflow_uri"] == f"sqlite:///{first / 'mlflow.db'}"
    # as if killed after two configurations: a cut journal, the parent run still marked running
    shutil.copy(folder / "fits.jsonl", tmp_path / "whole.jsonl")
    (folder / "fits.jsonl").write_text("".join((tmp_path / "whole.jsonl").read_text().splitlines(keepends=True)[:4]))
    client = mlflow.MlflowClient(state["mlflow_uri"])
    # the tracking process, shared by this suite's searches, created the store where this search ran
    assert str(first / "mlruns") in client.get_run(state["parent_run_id"]).info.artifact_uri
    client.set_terminated(state["parent_run_id"], "KILLED")
    monkeypatch.chdir(elsewhere)
    assert main(["resume", str(folder)]) == 0
    assert not (elsewhere / "mlflow.db").exists()
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 3  # reopened, not duplicated


@pytest.mark.slow
def test_ctrl_c_marks_the_parent_run_killed_and_resume_finishes_it(tmp_path, capsys, monkeypatch):
    import metaray.cli

    said = []

    def interrupted(line):
        said.append(line)
        if len(said) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(metaray.cli, "_to_stderr", interrupted)
    path = write(tmp_path, learner={"name": "logistic_regression"},
                 search={"num_samples": 4, "space": {"C": {"loguniform": [0.1, 10.0]}}})
    assert main(["run", path]) == 130
    folder = run_dir(tmp_path)
    assert parent_run(folder).info.status == "KILLED" and not (folder / "best.json").exists()
    monkeypatch.undo()
    assert main(["resume", str(folder)]) == 0
    assert parent_run(folder).info.status == "FINISHED"


@pytest.mark.slow
def test_fits_lost_with_their_worker_are_fitted_again_on_resume(tmp_path, capsys):
    """A fit whose worker died (beyond ray.max_retries) fails its configuration in this run, but it is the
    cluster's failure, not the configuration's: the journal does not keep it, and resume fits it again."""
    crash = tmp_path / "crash"
    crash.write_text("")
    path = write(tmp_path, learner={"name": "tests.helpers.CrashingClassifier", "params": {"crash_file": str(crash)}},
                 ray={"max_retries": 0, "fits_per_task": 1}, search={"num_samples": 1})
    assert main(["run", path]) == 1
    folder = run_dir(tmp_path)
    assert "WorkerCrashedError" in pd.read_csv(folder / "results.csv")["error"].iloc[0]
    assert (folder / "fits.jsonl").read_text() == ""
    crash.unlink()  # the cluster is healthy again
    assert main(["resume", str(folder)]) == 0
    assert (pd.read_csv(folder / "results.csv")["status"] == "completed").all()


def _noop_search_command(tmp_path, name: str, configurations: int):
    """`metaray run` of a fast search (no-op fits, K = 20, MLflow in tmp_path) in its own process group, its progress
    on a pipe: tracking lags behind such a search. Returns the process, the MLflow database and the environment."""
    import subprocess
    import sys

    spec = {"name": name, "seed": 0, "storage": str(tmp_path / "runs"), "data": {"dataset": "iris"},
            "learner": {"name": "sklearn.dummy.DummyClassifier"}, "subsets": {"k": 20},
            "search": {"num_samples": configurations,
                       "space": {"strategy": {"choice": ["prior", "stratified", "uniform"]}}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "mlflow.db"
    env = tests.helpers.marked_env({**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    proc = subprocess.Popen([sys.executable, "-m", "metaray", "run", str(path)], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)
    return proc, db, env


def _as_from_a_terminal() -> None:
    """In the command's process before it starts: Ctrl-C's signals at their defaults, as a terminal's shell starts
    a command, whatever this test process inherited (a test runner's worker may ignore SIGINT, and an ignored
    signal stays ignored across exec)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _until_ended(proc, configurations: int) -> int:
    """Read progress lines until that many configurations have ended."""
    ended = 0
    for line in proc.stderr:
        ended += line.startswith("[")
        if ended == configurations:
            break
    return ended


def _parent_status(con) -> list[tuple]:
    return con.execute("select status from runs where run_uuid not in "
                       "(select run_uuid from tags where key = 'mlflow.parentRunId')").fetchall()


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_loses_no_configuration_in_mlflow(tmp_path):
    """Tracking runs in a process of its own that lags behind a fast search; Ctrl-C (SIGINT to the whole process
    group, as a terminal sends it) stops the search, and every configuration that ended before reaches MLflow with
    all its steps before the command exits; the parent run is KILLED and no tracking process is left."""
    import signal
    import sqlite3

    proc, db, env = _noop_search_command(tmp_path, "ctrlc", 2000)
    ended = _until_ended(proc, 60)
    tracking = tests.helpers.marked_processes(env, "metaray.tracking")  # the command's own, while it runs
    assert len(tracking) == 1, tracking
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stderr.read()
    lines = rest.splitlines()
    assert proc.wait(timeout=300) == 130, (len(lines), "\n".join(lines[:5]), "\n".join(lines[-5:]))
    ended += sum(line.startswith("[") for line in lines)
    assert 60 <= ended < 2000 and "metaray: interrupted" in rest
    con = sqlite3.connect(db)
    parent, status = con.execute("select run_uuid, status from runs where run_uuid not in "
                                 "(select run_uuid from tags where key = 'mlflow.parentRunId')").fetchone()
    children = con.execute("select count(*) from tags where key = 'mlflow.parentRunId' and value = ?",
                           (parent,)).fetchone()[0]
    steps = con.execute("select count(*) from metrics where key = 'accuracy' and run_uuid in (select run_uuid from "
                        "tags where key = 'mlflow.parentRunId' and value = ?)", (parent,)).fetchone()[0]
    con.close()
    assert (status, children, steps) == ("KILLED", ended, 20 * ended)
    assert not tracking[0].is_running() or tracking[0].status() == psutil.STATUS_ZOMBIE
    assert not tests.helpers.marked_processes(env, "metaray.tracking")


@pytest.mark.slow
def test_a_killed_driver_leaves_its_parent_run_killed_and_resume_logs_every_configuration_once(tmp_path):
    """SIGKILL of the driver alone: the tracking process logs what it was sent, marks the parent run KILLED and ends;
    `metaray resume` then logs the configurations it never got, each once, and finishes the parent run."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import threading

    proc, db, env = _noop_search_command(tmp_path, "killed", 120)
    said: list[str] = []  # every line the command wrote, read as it writes them: a killed command's last ones too
    reader = threading.Thread(target=lambda: said.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.time() + 300
    while sum(line.startswith("[") for line in said) < 40 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert len(tests.helpers.marked_processes(env, "metaray.tracking")) == 1  # the command's own, while it runs
    os.kill(proc.pid, signal.SIGKILL)  # the driver alone, not its process group
    proc.wait()

    def tracking_processes():  # orphaned now, so found by the mark the command's environment gave it
        return tests.helpers.marked_processes(env, "metaray.tracking")

    deadline = time.time() + 120
    while tracking_processes() and time.time() < deadline:
        time.sleep(0.5)
    try:
        assert not tracking_processes()
        con = sqlite3.connect(db)
        status = _parent_status(con)
        logged = con.execute("select count(*) from tags where key = 'mlflow.parentRunId'").fetchone()[0]
        con.close()
        ended = sum(line.startswith("[") for line in said)  # every progress line the driver wrote before the kill
        # a configuration is sent to MLflow, then said: the kill may fall between the two for the last one
        assert status == [("KILLED",)] and 40 <= ended < 120 and 0 < logged <= ended + 1, (logged, ended)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the Ray it started
    run_dir = next((tmp_path / "runs" / "killed").iterdir())
    done = subprocess.run([sys.executable, "-m", "metaray", "resume", str(run_dir)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    con = sqlite3.connect(db)
    status = _parent_status(con)
    trials = [t for (t,) in con.execute("select value from tags where key = 'metaray.trial'")]
    con.close()
    assert status == [("FINISHED",)] and sorted(trials) == [f"t{i:04d}" for i in range(120)]
