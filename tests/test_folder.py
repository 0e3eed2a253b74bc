"""The run folder: its spec, its journal (a kill's cut line, an earlier release's rows), and what it refuses."""

from __future__ import annotations

import json

import pytest

from metaray.errors import SpecError
from metaray.fits import FitResult, Unit
from metaray.folder import Journal, RunFolder
from metaray.spec import load_spec

SPEC = {"name": "folder", "data": {"dataset": "iris"}, "search": {"num_samples": 2}}


def test_a_journal_reads_back_what_it_wrote_and_the_rows_of_an_earlier_release(tmp_path):
    journal = Journal(tmp_path / "fits.jsonl")
    journal.write("abc", FitResult(Unit(3, 1, 4), scores={"accuracy": 0.9}, fit_seconds=0.5))
    journal.close()
    old = {"trial": 5, "key": "def", "unit": 7, "trial_id": "t0005/1", "subset": 2, "scores": {"accuracy": 0.8},
           "fit_seconds": 0.1, "score_seconds": 0.0, "n_train": 10, "n_eval": 5, "error": None, "node": "n",
           "warnings": []}
    with open(tmp_path / "fits.jsonl", "a") as fh:
        fh.write(json.dumps(old) + "\n")
    again = Journal(tmp_path / "fits.jsonl")
    assert again.lookup(Unit(3, 1, 4), "abc").scores == {"accuracy": 0.9}
    assert again.lookup(Unit(3, 1, 4), "other") is None  # another configuration under the same number
    assert again.lookup(Unit(5, 1, 2), "def").fit_seconds == 0.1
    again.close()


def test_a_folder_of_another_spec_is_refused_and_two_new_folders_never_collide(tmp_path):
    spec = load_spec({**SPEC, "storage": str(tmp_path)})
    first, second = RunFolder.create(spec.storage, spec.name), RunFolder.create(spec.storage, spec.name)
    first.prepare(spec)
    second.prepare(spec)  # the same second: another folder, not the same one
    assert first.path != second.path and (first / "spec.yaml").is_file() and (second / "spec.yaml").is_file()
    RunFolder(first.path).prepare(spec)  # the same spec again: a resume
    other = load_spec({**SPEC, "storage": str(tmp_path), "seed": 7})
    with pytest.raises(SpecError, match=r"^storage: the run folder holds the run of another spec"):
        RunFolder(first.path).prepare(other)


def test_a_flat_override_wins_over_the_nested_option_it_replaces():
    nested = load_spec({**SPEC, "search": {"scheduler": {"name": "asha", "grace_period": 1}}})
    assert load_spec(nested, ["search.grace_period=2"]).search.scheduler.grace_period == 2


def test_the_folder_of_a_release_without_the_newer_keys_resumes(tmp_path):
    import yaml

    spec = load_spec({**SPEC, "storage": str(tmp_path)})
    folder = RunFolder.create(spec.storage, spec.name)
    folder.prepare(spec)
    raw = yaml.safe_load((folder / "spec.yaml").read_text())
    for key in ("rope", "confidence", "tie_test"):  # written by a release before the tied-set statistics
        del raw["objective"][key]
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    RunFolder(folder.path).prepare(RunFolder(folder.path).spec())  # the keys at their defaults: the same spec
    raw["objective"]["rope"] = 0.5  # a value that differs is another spec
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SpecError, match="another spec"):
        RunFolder(folder.path).prepare(spec)
