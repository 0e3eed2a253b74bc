import numpy as np
import pandas as pd
import pytest

import metaray.data
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
    # two numeric columns; three one-hot cities and a column for a missing city
    assert np.isfinite(out).all() and out.shape[1] == 2 + 3 + 1


@pytest.mark.parametrize("sep, suffix", [(";", ".csv"), ("|", ".csv"), ("\t", ".csv"), (",", ".tsv")],
                         ids=["semicolons", "bars", "tabs in a .csv", "commas in a .tsv"])
def test_a_table_separated_by_another_mark_is_read_by_it(tmp_path, sep, suffix):
    """A .csv separated by ';' (as much of Europe writes them), '|' or tabs, or a .tsv by commas: the same table."""
    frame = mixed_frame()
    frame["note"] = np.where(np.arange(len(frame)) % 3, "red wine", "blue")
    path = tmp_path / f"rows{suffix}"
    frame.to_csv(path, index=False, sep=sep)
    ds = load_dataset(load_spec({"name": "t", "data": {"path": str(path), "target": "label"}}))
    assert list(ds.X.columns) == ["age", "income", "city", "note"] and len(ds.X) == 60
    if sep == ";":  # with semicolons, numbers written with a decimal comma are numbers, column by column
        mixed = frame.rename(columns={"income": "income, k€"})
        mixed["age"] = [f"{v}".replace(".", ",") if v == v else "" for v in frame["age"]]  # 38,5; income: 50.2
        mixed.to_csv(path, index=False, sep=sep)
        ds = load_dataset(load_spec({"name": "t", "data": {"path": str(path), "target": "label"}}))
        assert list(ds.X.columns) == ["age", "income, k€", "city", "note"] and ds.categorical == ["city", "note"]
        np.testing.assert_allclose(ds.X["age"].astype(float), frame["age"], rtol=1e-12)
        np.testing.assert_allclose(ds.X["income, k€"].astype(float), frame["income"], rtol=1e-12)
    one = tmp_path / "one.csv"  # a table of one column stays one column
    pd.DataFrame({"label": ["a", "b"] * 10}).to_csv(one, index=False)
    assert list(pd.read_csv(one).columns) == list(metaray.data._read(one, "data.path").columns) == ["label"]


def test_numbers_written_with_thousands_groups_are_numbers(tmp_path):
    """A spreadsheet's export writes 1,035 for 1035: such a target is a regression's, not 300 classes; "3,4" is no
    number, and its column stays text."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    price = (20000 + 3000 * x).round(2)
    frame = pd.DataFrame({"x": x, "pair": np.where(x > 0, "3,4", "1,000"), "price": [f"{p:,.2f}" for p in price]})
    frame.loc[5, "price"] = None
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    ds = load_dataset(load_spec({"name": "t", "data": {"path": str(path), "target": "price"}}))
    assert ds.task == "regression" and len(ds.y) == 199
    np.testing.assert_allclose(ds.y, np.delete(price, 5))
    assert ds.categorical == ["pair"]
    raw = pd.read_csv(path).drop(columns=["price"])  # the user's own read of the export: "1,035" as text
    raw["x"] = [f"{v * 1e4:,.2f}" for v in frame["x"]]  # "-13,031.57"
    assert raw["x"].str.contains(",").any()
    np.testing.assert_allclose(ds.cleaner.transform(raw)["x"].astype(float), frame["x"] * 1e4, atol=0.006)


def test_a_target_of_mostly_single_row_classes_is_refused_in_one_line(tmp_path):
    """An ID column, or numbers written in a way that is no number, named as the target: not classes to learn."""
    path = tmp_path / "ids.csv"
    x = np.random.default_rng(0).normal(size=40)
    pd.DataFrame({"x": x, "code": [f"k{i}" for i in range(39)] + ["k0"]}).to_csv(path, index=False)
    with pytest.raises(SpecError, match=r"^data.target: 39 classes in 40 rows, 38 of them with one row.*plain ones "
                                        r".*data.task: regression; got: \['k0', 'k1', 'k2', '...'\]$"):
        load_dataset(load_spec({"name": "t", "data": {"path": str(path), "target": "code"}}))
    with pytest.raises(SpecError, match=r"^data.target: 40 classes in 40 rows.*; for numbers, data.task: regression;"):
        pd.DataFrame({"x": x, "code": np.arange(40) * 7}).to_csv(path, index=False)  # numbers, told: classes
        load_dataset(load_spec({"name": "t", "data": {"path": str(path), "target": "code", "task": "classification"}}))
    pd.DataFrame({"x": x, "code": [f"k{i % 20}" for i in range(40)]}).to_csv(path, index=False)
    assert len(load_dataset(load_spec({"name": "t", "data": {"path": str(path), "target": "code"}})).classes) == 20


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
    (tmp_path / "twice.csv").write_text("a,y,a\n1,0,0\n2,1,1\n")  # pandas would read the second as a.1
    with pytest.raises(SpecError, match=r"^data.path: the header names a column twice; .*got: \['a'\]"):
        load("twice.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(SpecError, match=r"^data.path: a folder, not a file; got: '.*folder.csv'"):
        load("folder.csv")
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
    with pytest.raises(SpecError, match=r"^data.target: the target has infinite values.*got: '1 rows'"):
        Dataset.from_arrays([[1.0], [2.0], [3.0]], [0.5, np.inf, 0.7])
    with pytest.raises(SpecError, match=r"^data.target: every row's target 'target' is missing"):
        Dataset.from_arrays([[1.0], [2.0]], [np.nan, None])
    kept = Dataset.from_arrays([[1.0], [2.0], [3.0], [4.0]], [0.5, np.nan, 0.7, 0.9])
    assert kept.dropped_rows == 1 and kept.X[:, 0].tolist() == [1.0, 3.0, 4.0] and kept.task == "regression"
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


def load_csv(tmp_path, text: str, **data):
    (tmp_path / "rows.csv").write_text(text)
    return load_dataset(load_spec({"name": "t", "data": {"path": str(tmp_path / "rows.csv"), "target": "y", **data}}))


def test_na_tokens_and_empty_fields_are_missing_and_a_question_mark_only_when_asked(tmp_path):
    text = "age,city,y\n31,paris,a\nNA,,b\n,lyon,a\n?,?,b\n40,nice,a\n"
    ds = load_csv(tmp_path, text)
    assert ds.categorical == ["age", "city"]  # '?' is text unless data.na_values says it is missing
    assert ds.X["city"].isna().tolist() == [False, True, False, False, False]
    asked = load_csv(tmp_path, text, na_values=["?"])
    assert asked.categorical == ["city"] and np.isnan(asked.X["age"].to_numpy()).tolist() == [
        False, True, True, True, False]
    assert asked.X["city"].isna().tolist() == [False, True, False, True, False]


def test_na_values_apply_to_parquet_too(tmp_path):
    pd.DataFrame({"x": [1.0, -999.0, 3.0, 4.0], "y": ["a", "b", "a", "b"]}).to_parquet(tmp_path / "rows.parquet")
    ds = load_dataset(load_spec({"name": "t", "data": {"path": str(tmp_path / "rows.parquet"), "target": "y",
                                                       "na_values": [-999]}}))
    assert np.isnan(ds.X[:, 0]).tolist() == [False, True, False, False]


def test_rows_without_a_target_are_dropped_and_counted(tmp_path):
    ds = load_csv(tmp_path, "x,y\n1,a\n2,\n3,b\n4,NA\n5,a\n6,b\n")
    assert ds.dropped_rows == 2 and ds.n_rows == 4 and ds.X[:, 0].tolist() == [1, 3, 5, 6]
    assert ds.notes == ["data: dropped 2 rows whose target 'y' is missing"]
    with pytest.raises(SpecError, match=r"^data.target: every row's target 'y' is missing"):
        load_csv(tmp_path, "x,y\n1,\n2,NA\n")
    with pytest.raises(SpecError, match=r"^data.target: the target has infinite values.*got: '1 rows'"):
        load_csv(tmp_path, "x,y\n1,0.5\n2,inf\n3,1.5\n4,\n")


@pytest.mark.parametrize("labels, expected", [
    (pd.Series(["no", "yes", None, "no"], dtype="str"), ["no", "yes"]),
    (pd.Series(["no", "yes", None, "no"], dtype=object), ["no", "yes"]),
    (pd.Series(["no", "yes", None, "no"], dtype="category"), ["no", "yes"]),
    (pd.Series([True, False, None, True], dtype="boolean"), [False, True]),
    (np.array([True, False, True, False]), [False, True]),
    (pd.Series([-1, 1, None, 1], dtype="Int64"), [-1, 1]),
    (np.array([9.0, 3.0, np.nan, 7.0]), [3, 7, 9]),
    (np.array(["x", "y", "x", "y"]), ["x", "y"]),
    (pd.Series(["a", 1, None, "a"], dtype=object), ["1", "a"]),  # mixed types: read as text
    (np.array([b"no", b"yes", b"no", b"yes"]), ["no", "yes"]),
])
def test_class_labels_keep_the_users_type(labels, expected):
    ds = Dataset.from_arrays(np.arange(8.0).reshape(4, 2), labels, task="classification")
    assert ds.classes.tolist() == expected and {type(c) for c in ds.classes.tolist()} == {type(expected[0])}
    assert ds.dropped_rows == int(pd.isna(pd.Series(labels)).sum())


def test_a_category_first_seen_when_scoring_and_a_column_missing_in_a_whole_subset(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0], "rare": [np.nan, np.nan, np.nan, np.nan, 7.0, 8.0],
                          "city": ["paris", "lyon", None, "paris", "nice", "lyon"], "y": ["a", "b"] * 3})
    ds = Dataset.from_arrays(frame.drop(columns="y"), frame["y"])
    prep = ds.preprocessor(scale=True)
    fitted = prep.fit(ds.X.iloc[:4])  # 'rare' is missing in every row of this subset; 'nice' is not in it
    out = fitted.transform(ds.X.iloc[4:])
    assert np.isfinite(out).all() and out.shape == (2, 2 + 3)  # x, rare; paris, lyon, a missing city
    assert out[0, 2:].tolist() == [0.0, 0.0, 0.0]  # 'nice', first seen here, encodes as all zeros


def test_column_names_that_are_not_text_and_names_that_collide():
    frame = pd.DataFrame({1: [0.5, 1.5, np.nan, 2.5], 2: ["a", "b", "a", None], "y": [0, 1, 0, 1]})
    ds = Dataset.from_arrays(frame.drop(columns="y"), frame["y"])
    assert ds.feature_names == ["1", "2"] and ds.categorical == ["2"]
    out = ds.preprocessor().fit_transform(ds.X)
    assert out.shape == (4, 1 + 3) and np.isfinite(out).all()
    with pytest.raises(SpecError, match=r"^data.path: column names must be unique; got: \['1'\]"):
        Dataset.from_arrays(pd.DataFrame([[1.0, 2.0]] * 4, columns=[1, "1"]), [0, 1, 0, 1])


def test_the_cleaner_turns_the_users_table_into_what_the_models_saw(tmp_path):
    ds = load_csv(tmp_path, "age,city,ok,y\n31,paris,True,a\n?,,False,b\n40,lyon,,a\n22,nice,True,b\n",
                  na_values=["?"])
    raw = pd.read_csv(tmp_path / "rows.csv").drop(columns="y")  # as a user reads it: '?' is text here
    again = ds.cleaner.transform(raw)
    pd.testing.assert_frame_equal(again, ds.X)
    with pytest.raises(ValueError, match="lacks the columns"):
        ds.cleaner.transform(raw.drop(columns="city"))
