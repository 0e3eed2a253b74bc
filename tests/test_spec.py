import pytest

from metaray.errors import SpecError
from metaray.spec import ExperimentSpec, load_spec, parse_override
from tests.conftest import EXPERIMENTS

BASE = {"name": "t", "data": {"dataset": "iris"}}


def spec_with(**sections):
    raw = {**BASE}
    for key, value in sections.items():
        raw[key] = value
    return raw


def test_defaults_are_explicit():
    spec = load_spec(BASE)
    assert isinstance(spec, ExperimentSpec)
    assert spec.subsets.sampler == "subsample" and spec.subsets.k == 5 and spec.subsets.fraction == 0.8
    assert spec.subsets.protocol == "out_of_subset" and spec.objective.aggregate == "mean"
    assert load_spec(spec_with(subsets={"sampler": "bootstrap"})).subsets.fraction == 1.0
    assert load_spec(spec_with(subsets={"sampler": "kfold", "k": 4})).subsets.fraction == 0.75


def test_overrides_keep_types_and_create_sections():
    spec = load_spec(BASE, ["subsets.k=7", "learner.params.C=0.5", "objective.extra_metrics=[f1_macro]"])
    assert spec.subsets.k == 7
    assert spec.learner.params == {"C": 0.5}
    assert spec.objective.extra_metrics == ["f1_macro"]
    assert parse_override("data.dataset=wine") == ("data.dataset", "wine")


@pytest.mark.parametrize(
    "raw, key, fragments",
    [
        (spec_with(colour="red"), "colour", ["unknown key", "allowed:", "'data'", "got: 'colour'"]),
        (spec_with(subsets={"smapler": "x"}), "subsets.smapler", ["unknown key", "'sampler'", "got: 'smapler'"]),
        (spec_with(subsets={"k": 0}), "subsets.k", ["at least 1", "got: 0"]),
        (spec_with(subsets={"fraction": 1.5}), "subsets.fraction", ["(0, 1]", "got: 1.5"]),
        (spec_with(subsets={"fraction": 0}), "subsets.fraction", ["(0, 1]", "got: 0"]),
        (spec_with(subsets={"sampler": "jackknife"}), "subsets.sampler",
         ["'bootstrap'", "'kfold'", "got: 'jackknife'"]),
        (spec_with(subsets={"protocol": "oob"}), "subsets.protocol", ["'out_of_subset'", "got: 'oob'"]),
        (spec_with(objective={"aggregate": "average"}), "objective.aggregate", ["'cvar'", "'mean'", "got: 'average'"]),
        (spec_with(objective={"metric": "acc"}), "objective.metric", ["'accuracy'", "got: 'acc'"]),
        ({"name": "t", "data": {"dataset": "boston"}}, "data.dataset", ["'diabetes'", "'iris'", "got: 'boston'"]),
        ({"name": "t", "data": {}}, "data", ["exactly one of"]),
        ({"name": "t", "data": {"path": "x.csv"}}, "data.target", ["target column"]),
        ({"data": {"dataset": "iris"}}, "name", ["missing"]),
        (spec_with(subsets={"k": "many"}), "subsets.k", ["integer", "got: 'many'"]),
        (spec_with(ray={"address": "auto", "num_cpus": 2}), "ray.num_cpus", ["local Ray only", "got: 2"]),
        (spec_with(ray={"fit_timeout_s": 0}), "ray.fit_timeout_s", ["allowed: > 0", "got: 0"]),
        (spec_with(data={"dataset": "iris", "na_values": "?"}), "data.na_values", ["list", "got: '?'"]),
    ],
)
def test_bad_specs_name_key_allowed_and_value(raw, key, fragments):
    with pytest.raises(SpecError) as err:
        load_spec(raw)
    message = str(err.value)
    assert message.startswith(f"{key}:"), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_yaml_file_errors(tmp_path):
    with pytest.raises(SpecError, match="no such experiment file"):
        load_spec(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="is empty"):
        load_spec(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(listy)


def test_bad_override_syntax():
    with pytest.raises(SpecError, match="KEY=VALUE"):
        load_spec(BASE, ["subsets.k"])
    with pytest.raises(SpecError, match="is a value, not a section"):
        load_spec(BASE, ["name.first=x"])


def test_paths_resolve_from_the_spec_file(tmp_path, write_yaml):
    path = write_yaml({"name": "t", "data": {"path": "rows.csv", "target": "y"}})
    spec = load_spec(path)
    assert spec.resolve_path(spec.data.path) == tmp_path / "rows.csv"


def test_scheduler_options_are_nested_and_the_flat_keys_still_work_with_a_notice():
    nested = load_spec(spec_with(search={"scheduler": {"name": "asha", "grace_period": 2, "reduction_factor": 2.5}}))
    assert (nested.search.scheduler.grace_period, nested.search.scheduler.reduction_factor) == (2, 2.5)
    assert nested.notes == [] and nested.to_dict()["search"]["scheduler"] == {
        "name": "asha", "grace_period": 2.0, "reduction_factor": 2.5, "fidelity": "subsets"}
    flat = load_spec(spec_with(search={"scheduler": "asha", "grace_period": 2, "reduction_factor": 2.5,
                                       "min_subsets": 4}))
    assert flat.search.scheduler == nested.search.scheduler
    assert flat.notes == [
        "search.grace_period: deprecated; write it under search.scheduler, e.g. search.scheduler: "
        "{name: asha, grace_period: 2}",
        "search.reduction_factor: deprecated; write it under search.scheduler, e.g. search.scheduler: "
        "{name: asha, reduction_factor: 2.5}",
        "search.min_subsets: deprecated, and ignored: not an option of the 'asha' scheduler"]
    assert load_spec(flat.to_dict()).notes == []  # a run folder's spec.yaml is written nested
    with pytest.raises(SpecError, match=r"^search.scheduler.min_subsets: not an option of the 'asha' scheduler; "
                                        r"allowed: 'fidelity', 'grace_period', 'reduction_factor'; got: 'min_subsets'"):
        load_spec(spec_with(search={"scheduler": {"name": "asha", "min_subsets": 3}}))


def test_the_default_protocol_is_out_of_subset_and_the_experiments_keep_holdout():
    assert load_spec({"name": "d", "data": {"dataset": "iris"}}).subsets.protocol == "out_of_subset"
    for path in EXPERIMENTS.glob("*.yaml"):
        assert load_spec(path).subsets.protocol == "holdout", path
