import numpy as np
import pandas as pd
import pytest

from metaray.data import DATASETS, Dataset, load_dataset, resolve_task
from metaray.errors import SpecError
from metaray.spec import load_spec

BUNDLED = {"iris": "classification", "wine": "classification", "breast_cancer": "classification",
           "digits": "classification", "diabetes": "regression", "linnerud": "regression"}


@pytest.mark.parametrize("name, task", sorted(BUNDLED.items()))
def test_every_bundled_dataset_loads_with_its_task(name, task):
    ds = load_dataset(load_spec({"name": "t", "data": {"dataset": name}}))
    assert ds.task == task and ds.n_rows > 0 and isinstance(ds.X, np.ndarray)
    assert (ds.classes is not None) == (task == "classification")


def test_synthetic_sizes_come_from_the_spec_and_the_seed():
    spec = load_spec({"name": "t", "seed": 3, "data": {"dataset": "make_classification",
                                                       "params": {"n_samples": 300, "n_features": 7}}})
    a, b = load_dataset(spec), load_dataset(spec)
    assert a.X.shape == (300, 7) and a.task == "classification"
    np.testing.assert_array_equal(a.X, b.X)
    reg = load_dataset(load_spec({"name": "t", "data": {"dataset": "make_regression", "params": {"n_samples": 50}}}))
    assert reg.task == "regression" and reg.n_rows == 50


def test_synthetic_unknown_parameter_is_refused():
    spec = load_spec({"name": "t", "data": {"dataset": "make_classification", "params": {"n_rows": 10}}})
    with pytest.raises(SpecError, match=r"data.params.n_rows: not a parameter of make_classification.*n_samples"):
        load_dataset(spec)


def mixed_frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n),
        "income": rng.normal(50, 5, n),
        "city": rng.choice(["paris", "lyon", "nice"], n),
        "label": rng.choice(["yes", "no"], n),
    })
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "city"] = None
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_with_categorical_and_missing_values(tmp_path, suffix):
    frame = mixed_frame()
    path = tmp_path / f"rows{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    ds = load_dataset(load_spec({"name": "t", "data": {"path": str(path), "target": "label"}}))
    assert ds.task == "classification" and ds.categorical == ["city"]
    assert isinstance(ds.X, pd.DataFrame) and ds.needs_imputation
    prep = ds.preprocessor(scale=True)
    out = prep.fit_transform(ds.X.iloc[:30])
    assert np.isfinite(out).all() and out.shape[1] == 2 + 3  # two numeric columns, three one-hot cities


def test_numeric_table_becomes_an_array_and_regression_is_inferred(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=40), "y": rng.normal(size=40)}).to_csv(tmp_path / "r.csv", index=False)
    ds = load_dataset(load_spec({"name": "t", "data": {"path": str(tmp_path / "r.csv"), "target": "y"}}))
    assert isinstance(ds.X, np.ndarray) and ds.task == "regression"


def test_file_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b,y\n")
    (tmp_path / "ok.csv").write_text("a,y\n1,2\n3,4\n")
    (tmp_path / "inf.csv").write_text("a,y\n1,0\ninf,1\n2,0\n3,1\n")

    def load(path, target="y"):
        return load_dataset(load_spec({"name": "t", "data": {"path": str(tmp_path / path), "target": target}}))

    with pytest.raises(SpecError, match=r"^data.path: the file is empty; got: '.*empty.csv'"):
        load("empty.csv")
    with pytest.raises(SpecError, match=r"^data.path: the file has a header but no rows"):
        load("header.csv")
    with pytest.raises(SpecError, match=r"^data.target: no such column in ok.csv; allowed: 'a', 'y'; got: 'label'"):
        load("ok.csv", target="label")
    with pytest.raises(SpecError, match=r"^data.path: no such file"):
        load("nope.csv")
    with pytest.raises(SpecError, match=r"^data.path: unsupported file type; allowed: '.csv'"):
        load("rows.xlsx")
    with pytest.raises(SpecError, match=r"^data.features: features contain inf"):
        load("inf.csv")


def test_array_validation():
    with pytest.raises(SpecError, match="no rows"):
        Dataset.from_arrays(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(SpecError, match=r"different numbers of rows; got: \{'features': 4, 'target': 3\}"):
        Dataset.from_arrays(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(SpecError, match="inf"):
        Dataset.from_arrays([[1.0], [np.inf], [0.0], [2.0]], [0, 1, 0, 1])
    with pytest.raises(SpecError, match="target has missing or infinite"):
        Dataset.from_arrays([[1.0], [2.0]], [0.5, np.nan])
    with pytest.raises(SpecError, match="at least two classes"):
        Dataset.from_arrays([[1.0], [2.0]], [1, 1])
    ds = Dataset.from_arrays([[1.0], [np.nan], [0.0], [2.0]], [0, 1, 0, 1])
    assert ds.needs_imputation


def test_task_inference_and_continuous_target_for_a_classifier():
    assert resolve_task(np.array(["a", "b"])) == "classification"
    assert resolve_task(np.array([0, 1, 2, 1])) == "classification"
    assert resolve_task(np.arange(100)) == "regression"  # too many distinct integers for labels
    assert resolve_task(np.arange(100), "classification") == "classification"
    assert resolve_task(np.array([0.5, 1.2])) == "regression"
    with pytest.raises(SpecError, match=r"^data.task: task 'classification' needs discrete class labels.*got: "):
        resolve_task(np.array([0.5, 1.2, 3.3]), "classification")
    with pytest.raises(SpecError, match="numeric target"):
        resolve_task(np.array(["a", "b"]), "regression")


def test_classification_spec_on_a_regression_dataset_is_refused():
    with pytest.raises(SpecError, match="data.task: task 'classification' needs discrete class labels"):
        load_dataset(load_spec({"name": "t", "data": {"dataset": "diabetes", "task": "classification"}}))


def test_registry_lists_known_names():
    assert set(BUNDLED) <= set(DATASETS.names())
