"""Datasets: scikit-learn's bundled sets, CSV/Parquet files and synthetic generators, as one Dataset type.

Preprocessing (imputation, one-hot encoding, scaling) is returned as an unfitted transformer, so that the
objective fits it on each subset only and nothing leaks from the rows a fit is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from metaray.columns import ColumnRole, assign_roles, date_values, dates_parser, describe_roles, encoder, is_numeric
from metaray.datasets import DATASETS  # the named datasets: a module of their own, light for load_spec
from metaray.errors import SpecError

#: a target with at most this many distinct integer values is taken for class labels when the task is "auto"
MAX_AUTO_CLASSES = 20


@dataclass
class Dataset:
    """Features, target and task, validated.

    Attributes:
        X: a float ndarray, or a DataFrame (numeric columns as float with NaN, the others as text with NaN)
            when columns need encoding.
        y: 1-D labels in the user's own label type (text, bool, integers) or values; 2-D for multi-output
            regression.
        task: "classification" or "regression".
        classes: sorted class labels (classification only), of the same type as ``y``.
        dropped_rows: rows left out because their target was missing.
        cleaner: for a table, the conversion of its columns into ``X`` (see ``TableCleaner``).
    """

    name: str
    X: np.ndarray | pd.DataFrame
    y: np.ndarray
    task: str
    feature_names: list[str]
    classes: np.ndarray | None = None
    categorical: list[str] = field(default_factory=list)
    dropped_rows: int = 0
    target_name: str = "target"
    cleaner: TableCleaner | None = None  # how the user's table became X; the first step of the model metaray logs
    roles: list[ColumnRole] = field(default_factory=list)  # a table's columns and what each became (metaray.columns)
    groups: np.ndarray | None = None  # subsets.groups: each row's group, kept together by the subsets
    order: np.ndarray | None = None  # data.order: each row's place in time (float), for the time sampler

    @property
    def n_rows(self) -> int:
        return len(self.y)

    @property
    def needs_imputation(self) -> bool:
        return bool(np.asarray(_isnan(self.X)).any())

    @property
    def notes(self) -> list[str]:
        """What loading did to the user's rows, one line each, for the user to read."""
        out = [f"data: column {r.column!r} left out: {r.reason}; keep it with data.columns: {{{r.column}: ROLE}}"
               for r in self.roles if r.role == "drop" and not r.reason.startswith(("data.", "subsets."))]
        if self.dropped_rows:
            out.append(f"data: dropped {self.dropped_rows} rows whose target {self.target_name!r} is missing")
        return out

    def column_lines(self) -> list[str]:
        """What each column of a table became, one line each (empty for an array)."""
        return ["columns (role, why):", *describe_roles(self.roles)] if self.roles else []

    @classmethod
    def from_arrays(cls, X, y, *, task: str = "auto", name: str = "arrays", key: str = "data",
                    target: str = "target", columns: dict[str, str] | None = None, drop=(),
                    groups=None, order=None) -> Dataset:
        """Validate features and target and infer the task. Rows whose target is missing are left out
        (``dropped_rows``); class labels keep their type (text, bool, integers such as -1/1). A table's columns get
        their roles (``metaray.columns``; ``columns`` and ``drop`` are the user's overrides); ``groups`` and
        ``order`` are per-row arrays for the subsets.

        Example:
            >>> ds = Dataset.from_arrays([[0.0], [1.0], [2.0], [3.0], [4.0]], ["no", "yes", None, "no", "yes"])
            >>> ds.task, ds.classes.tolist(), ds.dropped_rows
            ('classification', ['no', 'yes'], 1)
        """
        X = _features(X, len(y), name=name, key=key)
        y, missing = clean_target(y, key=f"{key}.target")
        dropped = int(missing.sum())
        if dropped == len(missing):
            raise SpecError(f"{key}.target", f"every row's target {target!r} is missing, so nothing is left to learn",
                            got=f"{dropped} rows")
        if dropped:
            X = X.loc[~missing].reset_index(drop=True) if isinstance(X, pd.DataFrame) else X[~missing]
        groups = None if groups is None else np.asarray(groups)[~missing]
        order = None if order is None else np.asarray(order, dtype=float)[~missing]
        if y.dtype.kind in "fc" and not np.isfinite(y).all():
            raise SpecError(f"{key}.target", "the target has infinite values, which no learner or metric can use",
                            got=f"{int(np.sum(~np.isfinite(y)))} rows")
        if isinstance(X, pd.DataFrame):
            X, names, categorical, cleaner, roles = _clean_table(X, columns, drop, key)
        else:
            names, categorical, cleaner, roles = [f"x{i}" for i in range(X.shape[1])], [], None, []
            _refuse_inf(X, names, key)
        task, y, classes = _labels(y, task, key)
        return cls(name=name, X=X, y=y, task=task, feature_names=names, classes=classes, categorical=list(categorical),
                   dropped_rows=dropped, target_name=str(target), cleaner=cleaner, roles=roles, groups=groups,
                   order=order)

    def preprocessor(self, *, scale: bool = False, impute: bool = True):
        """An unfitted transformer for these features, or None when the learner can take them as they are.

        A table's columns are encoded by role (``metaray.columns.encoder``); numeric columns are imputed (median)
        and scaled if asked.
        """
        from sklearn.preprocessing import StandardScaler

        if isinstance(self.X, pd.DataFrame):
            return encoder(self.roles, scale=scale, impute=impute)
        steps = []
        if impute and self.needs_imputation:
            from sklearn.impute import SimpleImputer

            steps.append(SimpleImputer(strategy="median", keep_empty_features=True))
        if scale:
            steps.append(StandardScaler())
        if not steps:
            return None
        from sklearn.pipeline import make_pipeline

        return make_pipeline(*steps)

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "rows": self.n_rows, "features": len(self.feature_names), "task": self.task}
        if self.classes is not None:
            out["classes"] = len(self.classes)
        if self.categorical:
            out["categorical"] = len(self.categorical)
        out["dropped_rows"] = self.dropped_rows
        if self.roles:
            out["columns"] = {r.column: r.role for r in self.roles}
        return out


def _features(X, n_target: int, *, name: str, key: str):
    """The features as a table (a DataFrame) or a C-ordered float matrix, with rows, columns, and one row per
    target value."""
    if not isinstance(X, pd.DataFrame):
        # C order: Ray's object store shares only contiguous buffers without a copy (digits' array is not)
        X = np.ascontiguousarray(X, dtype=float) if not _is_table(X) else pd.DataFrame(X)
        if isinstance(X, np.ndarray) and X.ndim == 1:
            X = X.reshape(-1, 1)
    if len(X) == 0:
        raise SpecError(key, "the dataset has no rows", got=name)
    if X.shape[1] == 0:
        raise SpecError(key, "the dataset has no feature columns", got=name)
    if len(X) != n_target:
        raise SpecError(key, "features and target have different numbers of rows",
                        got={"features": len(X), "target": n_target})
    return X


def _clean_table(X: pd.DataFrame, columns, drop, key: str):
    """A table's columns by role (``metaray.columns``) and the cleaner that converts them: (X, feature names,
    categorical names, cleaner, roles)."""
    names = [str(c) for c in X.columns]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise SpecError(f"{key}.path", "column names must be unique", got=twice)
    roles = assign_roles(X, columns, drop, key=key)
    cleaner = TableCleaner.for_table(X, roles, key=key)
    X = cleaner.transform(X)
    categorical, names = cleaner.categorical, [str(c) for c in cleaner.columns]
    numeric = [c for c in names if c not in categorical and c not in (cleaner.dates or {})]
    _refuse_inf(X[numeric].to_numpy(dtype=float) if isinstance(X, pd.DataFrame) else X, numeric, key)
    return X, names, categorical, cleaner, roles


def _refuse_inf(values: np.ndarray, names: list[str], key: str) -> None:
    if np.isinf(values).any():
        raise SpecError(f"{key}.features", "features contain inf, which no learner or imputer can use",
                        got=_first_bad(values, names, np.isinf))


def _labels(y: np.ndarray, task: str, key: str):
    """The task, the target (whole-number labels read as floats back to integers) and the sorted classes."""
    task = resolve_task(y, task, key=f"{key}.task")
    if task == "classification" and y.dtype.kind == "f":
        y = y.astype(np.int64)  # whole-number labels read as floats (a column with gaps): back to integers
    classes, counts = np.unique(y, return_counts=True) if task == "classification" else (None, np.zeros(0))
    if classes is not None and len(classes) < 2:
        raise SpecError(f"{key}.target", "classification needs at least two classes", got=classes.tolist())
    single = int((counts == 1).sum())
    if single > 10 and single > len(classes) / 2:  # an ID, or numbers written as text: not classes to learn
        numbers = (f"for numbers, {key}.task: regression" if y.dtype.kind in "iufb" else
                   f"for numbers, plain ones in the column (no currency, units or 1.234,5) and {key}.task: regression")
        raise SpecError(f"{key}.target", f"{len(classes)} classes in {len(y)} rows, {single} of them with one row, "
                        "which no fit can learn from", allowed=f"a target whose classes repeat; {numbers}",
                        got=[*y[:3].tolist(), "..."])
    return task, y, classes


def clean_target(y, *, key: str = "data.target") -> tuple[np.ndarray, np.ndarray]:
    """The target as a plain NumPy array of the user's own label type, without its missing rows, and the mask of
    those rows.

    Text (pandas' ``str`` and ``object``, NumPy strings and bytes, the categories of a ``category``) becomes a NumPy
    unicode array (one buffer, which Ray shares without copying), ``bool`` and nullable booleans a bool array, whole
    numbers int64, other numbers float; a column of mixed types is read as text. Missing means None, NaN or NA.

    Example:
        >>> values, missing = clean_target(pd.Series(["a", None, "b"], dtype="category"))
        >>> values.tolist(), missing.tolist()
        (['a', 'b'], [False, True, False])
    """
    if not isinstance(y, (pd.Series, pd.Categorical, pd.Index)):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim > 1:  # multi-output: numeric values, a row is missing when any of its values is
            try:
                values = pd.DataFrame(y).apply(pd.to_numeric).to_numpy(dtype=float, na_value=np.nan)
            except (TypeError, ValueError):
                raise SpecError(key, "a multi-output target must be numeric", got=str(y.dtype)) from None
            missing = np.isnan(values).any(axis=1)
            return values[~missing], missing
    s = pd.Series(y).reset_index(drop=True)
    missing = s.isna().to_numpy()
    s = s[~missing]
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(s.cat.categories.dtype)
    kind = pd.api.types.infer_dtype(s, skipna=False)
    if kind == "boolean":
        return s.to_numpy(dtype=bool), missing
    if kind == "integer":
        return s.to_numpy(dtype=np.int64), missing
    if kind in ("floating", "mixed-integer-float", "empty"):
        return s.to_numpy(dtype=float), missing
    if kind == "bytes":
        s = s.map(lambda v: v.decode("utf-8", "replace"))
    return s.astype(str).to_numpy(dtype=str), missing


class TableCleaner(TransformerMixin, BaseEstimator):
    """A user's table as metaray's models see it: the kept columns (every role but drop), numbers as float with NaN
    (an unmarked ``?`` too), dates as datetimes (NaT where a value does not parse), the rest as text with NaN.

    Applied once when the data loads, and kept as the first step of the logged model, so that the logged model takes
    the user's own table (as ``pandas.read_csv`` gives it).

    Args:
        columns: the table's kept feature columns, in order.
        categorical: the names (as text) of the columns read as text (roles category and text).
        dates: the names of the date columns, each with skrub's fitted ``ToDatetime`` for a text column, or None
            for a column that is already typed.
    """

    def __init__(self, columns=(), categorical=(), dates=None):
        self.columns = columns
        self.categorical = categorical
        self.dates = dates

    @classmethod
    def for_table(cls, frame: pd.DataFrame, roles, key: str = "data") -> TableCleaner:
        kept = {r.column: r.role for r in roles if r.role != "drop"}
        columns = [c for c in frame.columns if str(c) in kept]
        categorical = [str(c) for c in columns if kept[str(c)] in ("category", "text")]
        dates = {str(c): dates_parser(frame[c], f"{key}.columns.{c}", "not dates: its values do not parse with one "
                                      "date format; allowed: numeric, category, text, drop")
                 for c in columns if kept[str(c)] == "datetime"}
        return cls(columns, categorical, dates).fit(frame)

    def fit(self, X=None, y=None):
        self.n_columns_ = len(self.columns)
        return self

    def _column(self, name: str, col: pd.Series):
        if name in (self.dates or {}):
            parser = self.dates[name]
            return parser.transform(col) if parser is not None else pd.to_datetime(col, errors="coerce")
        return _as_text(col) if name in self.categorical else _as_number(col)

    def transform(self, X):
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(X, columns=list(self.columns))
        absent = [c for c in self.columns if c not in X.columns]
        if absent:
            raise ValueError(f"the table lacks the columns the model was trained on: {absent}")
        out = {str(c): self._column(str(c), X[c]) for c in self.columns}
        frame = pd.DataFrame({k: (v.to_numpy() if isinstance(v, pd.Series) else v) for k, v in out.items()},
                             index=pd.RangeIndex(len(X)))
        # C order: Ray's object store shares only contiguous buffers without a copy
        return frame if self.categorical or self.dates else np.ascontiguousarray(frame.to_numpy(dtype=float))


#: a number written with thousands groups ("1,035", "-12,345.5"), or without
_GROUPED = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[+-]?\d+(?:\.\d+)?"
#: a number written with a decimal comma ("3,14"), or a whole number
_DECIMAL_COMMA = r"[+-]?\d*,\d+|[+-]?\d+"


def _number_text(col: pd.Series, pattern: str) -> pd.Series | None:
    """``col`` as stripped text if every value it has is text that ``pattern`` matches whole, some with a comma (a
    column of numbers written with commas); else None.

    Example:
        >>> _number_text(pd.Series(["1,035", " 7", None]), _GROUPED).tolist()
        ['1,035', '7', <NA>]
        >>> _number_text(pd.Series(["1,035", "3,4"]), _GROUPED) is None  # 3,4 is no thousands group
        True
        >>> _number_text(pd.Series([True, "1,000"]), _GROUPED) is None  # not all text
        True
    """
    if not (col.dtype == object or pd.api.types.is_string_dtype(col)):
        return None
    values = col.dropna()
    text = values.astype(str)
    if not text.str.contains(",", regex=False).any():  # (most columns: cheap)
        return None
    if col.dtype == object and not all(isinstance(v, str) for v in values):  # booleans, numbers: pandas' to read
        return None
    if not text.str.strip().str.fullmatch(pattern).all():
        return None
    return col.astype("string").str.strip()


def _commas_as_numbers(frame: pd.DataFrame, *, decimal: bool = False) -> pd.DataFrame:
    """``frame`` with its text columns of numbers written with commas as numbers, every value of the column: thousands
    groups ("1,035", a spreadsheet's export; pandas reads them as text, so a target of prices became 300 classes),
    or with ``decimal``, decimal commas ("3,14": a table separated by ';'). Strict: "3,4" is no thousands group, and
    its column stays text.

    Example:
        >>> _commas_as_numbers(pd.DataFrame({"p": ["1,035", "12,345.5", None, "7"], "q": ["3,4", "1,000", "x", "y"]}))
                 p      q
        0   1035.0    3,4
        1  12345.5  1,000
        2      NaN      x
        3      7.0      y
        >>> _commas_as_numbers(pd.DataFrame({"d": ["3,14", "-2", "0,5"]}), decimal=True)["d"].tolist()
        [3.14, -2.0, 0.5]
    """
    pattern, mark = (_DECIMAL_COMMA, ".") if decimal else (_GROUPED, "")
    for name in frame.columns:
        text = _number_text(frame[name], pattern)
        if text is not None:
            frame[name] = pd.to_numeric(text.str.replace(",", mark, regex=False)).astype(float)
    return frame


def _as_number(col: pd.Series) -> np.ndarray:
    """Numbers as float, NaN where a value is none; a column of text written with thousands groups ("1,035": the
    user's own export, which ``pandas.read_csv`` reads as text) as its numbers, as the search read them."""
    text = _number_text(col, _GROUPED)
    if text is not None:
        col = text.str.replace(",", "", regex=False)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _as_text(col: pd.Series) -> np.ndarray:
    missing = col.isna().to_numpy()
    text = col.astype(str).to_numpy(dtype=object)
    text[missing] = np.nan
    return text


def _is_table(X) -> bool:
    return hasattr(X, "columns") or (isinstance(X, list) and X and isinstance(X[0], dict))


def _isnan(X):
    if isinstance(X, pd.DataFrame):
        return X.isna().to_numpy()
    return np.isnan(X)


def _first_bad(values: np.ndarray, names: list[str], test) -> str:
    rows, cols = np.nonzero(test(values))
    return f"{len(rows)} values, first at row {int(rows[0])}, column {names[int(cols[0])]!r}"


def resolve_task(y: np.ndarray, task: str = "auto", *, key: str = "data.task") -> str:
    """Infer classification or regression from the target, or check that a stated task fits it."""
    discrete = y.dtype.kind in "OUSb" or isinstance(y.dtype, pd.CategoricalDtype)
    if y.ndim > 1:
        if task == "classification":
            raise SpecError(key, "multi-output targets are supported for regression only", allowed=["regression"],
                            got=task)
        if discrete:
            raise SpecError(key, "a multi-output target must be numeric", got=str(y.dtype))
        return "regression"
    if discrete:
        if task == "regression":
            raise SpecError(key, "task 'regression' needs a numeric target", allowed=["classification"],
                            got=f"{task} (target dtype {y.dtype})")
        return "classification"
    integral = bool(np.all(np.mod(y, 1) == 0))
    n_unique = len(np.unique(y))
    # a float target is continuous unless it is a few whole numbers (labels saved as floats)
    continuous = not integral or (y.dtype.kind == "f" and n_unique > MAX_AUTO_CLASSES)
    if task == "classification" and continuous:
        raise SpecError(key, "task 'classification' needs discrete class labels, but the target is continuous",
                        allowed=["regression", "auto"], got=f"{task} ({n_unique} distinct values, dtype {y.dtype})")
    if task == "auto":
        return "classification" if not continuous and n_unique <= MAX_AUTO_CLASSES else "regression"
    return task


# --- loaders -------------------------------------------------------------------------------------------


READERS = {".csv": "read_csv", ".tsv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet", ".npy": "npy"}


def _read(path, key: str, na_values: list | None = None) -> pd.DataFrame:
    """A table from a file. Missing values are pandas' own markers (empty fields, ``NA``, ``NaN``, ``null`` ...)
    plus ``na_values``, which CSV/TSV get from the reader and the other formats by replacement."""
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise SpecError(key, "unsupported file type", allowed=sorted(READERS), got=str(path))
    if not path.is_file():
        raise SpecError(key, "a folder, not a file" if path.is_dir() else "no such file", got=str(path))
    if path.stat().st_size == 0:
        raise SpecError(key, "the file is empty", got=str(path))
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            frame = pd.DataFrame(array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1))
        elif READERS[suffix] == "read_csv":
            default = "\t" if suffix == ".tsv" else ","
            with open(path, encoding="utf-8", errors="replace") as f:
                sample = f.read(SAMPLE_CHARS)
            # a table separated by another mark (';' in much of Europe) is read by it
            sep = _separator(sample, default, whole=len(sample) < SAMPLE_CHARS)
            _unique_header(sample, sep, key, path)
            frame = pd.read_csv(path, sep=sep, skipinitialspace=sep != default, na_values=na_values or None)
            # numbers written with commas: thousands groups (1,035), or decimal commas with ';' (3,14)
            return _commas_as_numbers(frame, decimal=sep == ";")
        else:
            frame = pd.read_parquet(path)
    except SpecError:
        raise
    except pd.errors.EmptyDataError:
        raise SpecError(key, "the file is empty", got=str(path)) from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise SpecError(key, f"cannot read the file ({str(exc).splitlines()[0]})", got=str(path)) from None
    if na_values:
        frame = frame.mask(frame.isin(na_values))
    return frame


#: the characters of a CSV's beginning its separator is judged on
SAMPLE_CHARS = 65536


def _separator(sample: str, sep: str, *, whole: bool = False) -> str:
    """The mark that separates the fields of a table beginning with ``sample`` (``whole``: all of it): of ``sep`` (a
    .csv's comma, a .tsv's tab), ``;``, a tab, ``|`` and ``,``, the one that splits every record (its first 50) into
    the same number of fields, the most; ``sep`` on a tie, or when none does. Quotes are honoured: a name
    ``"weight (kg, net)"`` holds no separator.

    Example:
        >>> _separator("when;x;label\\n1;2,5;a\\n", ","), _separator("a,b;c\\n1,2;3\\n", ",")
        (';', ',')
        >>> _separator("y\\n1\\n", ","), _separator("x,y\\n1,2\\n", "\\t")  # one column; a .tsv of commas
        (',', ',')
        >>> _separator("Gewicht, kg;Menge;label\\n1,5;3;a\\n2;4;b\\n", ",")
        ';'
    """
    import csv
    import io

    best, most = sep, 1
    for mark in dict.fromkeys((sep, ";", "\t", "|", ",")):
        records = [r for r in csv.reader(io.StringIO(sample), delimiter=mark) if r]
        records = records if whole else records[:-1]  # (the last may be cut by the sample)
        counts = {len(r) for r in records[:50]}
        if len(counts) == 1 and (n := counts.pop()) > most:
            best, most = mark, n
    return best


def _unique_header(sample: str, sep: str, key: str, path) -> None:
    """Refuse a header that names a column twice: pandas would read the second as ``x.1``, without a word (a copy of
    the target under a feature's name is a leak no one sees).

    Example:
        >>> _unique_header("a,b,a\\n1,2,3\\n", ",", "data.path", "t.csv")
        Traceback (most recent call last):
        ...
        metaray.errors.SpecError: data.path: the header names a column twice; allowed: unique column names; got: ['a']
    """
    import csv
    import io

    names = next(csv.reader(io.StringIO(sample), delimiter=sep), [])
    names = [n.strip() for n in names]
    twice = sorted({n for n in names if names.count(n) > 1 and n})
    if twice:
        raise SpecError(key, "the header names a column twice", allowed="unique column names", got=twice)


def is_target_file(target: str | None) -> bool:
    """Whether ``data.target`` names a file of its own (``y.npy``) rather than a column of ``data.path``."""
    return bool(target) and Path(target).suffix.lower() in READERS


def read_table(spec) -> tuple[pd.DataFrame, pd.Series]:
    """Features and target from ``data.path``: the target is a column of that file, or a file of its own (one
    column) when ``data.target`` names one, e.g. ``path: X.npy, target: y.npy``."""
    path = spec.resolve_path(spec.data.path)
    na_values = list(spec.data.na_values)
    frame = _read(path, "data.path", na_values)
    target = spec.data.target
    if is_target_file(target):
        y_frame = _read(spec.resolve_path(target), "data.target", na_values)
        if y_frame.shape[1] != 1:
            raise SpecError("data.target", "a target file must hold exactly one column",
                            got=f"{y_frame.shape[1]} columns")
        X, y = frame, y_frame.iloc[:, 0]
    elif target not in frame.columns:
        raise SpecError("data.target", f"no such column in {path.name}", allowed=[str(c) for c in frame.columns],
                        got=target)
    else:
        X, y = frame.drop(columns=[target]), frame[target]
    if frame.empty:
        raise SpecError("data.path", "the file has a header but no rows", got=str(path))
    return X, y


def _order_key(col: pd.Series, key: str = "data.order") -> np.ndarray:
    """A column that orders rows in time as floats: numbers as they are, dates (typed or text in one format) as
    nanoseconds since 1970. A row without a time cannot be placed before or after the others: refused."""
    if is_numeric(col):
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    stamps, _ = date_values(col, key, "the column that orders rows in time must hold numbers or dates")
    stamps = pd.to_datetime(stamps, errors="coerce")
    if stamps.dt.tz is not None:  # compared as instants
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    values = np.where(stamps.isna(), np.nan, stamps.astype("datetime64[ns]").astype("int64").astype(float))
    return values


def load_dataset(spec) -> Dataset:
    """Load the spec's dataset and validate it.

    Example:
        >>> from metaray.spec import load_spec
        >>> load_dataset(load_spec({"name": "d", "data": {"dataset": "iris"}})).describe()
        {'name': 'iris', 'rows': 150, 'features': 4, 'task': 'classification', 'classes': 3, 'dropped_rows': 0}
    """
    data = spec.data
    groups = order = None
    if data.path is not None:
        X, y = read_table(spec)
        name = spec.resolve_path(data.path).name
        target = Path(data.target).name if is_target_file(data.target) else data.target
        names = [str(c) for c in X.columns]
        for k, given in (("data.columns", list(data.columns)), ("data.drop", data.drop)):
            if not is_target_file(data.target) and data.target in given:
                raise SpecError(f"{k}.{data.target}" if k == "data.columns" else k, "names the target column, "
                                "which is never a feature", allowed=names, got=data.target)
        for k, column in (("subsets.groups", spec.subsets.groups), ("data.order", data.order)):
            if column is not None and column not in names:
                raise SpecError(k, "no such feature column in the table", allowed=names, got=column)
        drop = dict.fromkeys(data.drop, "data.drop")
        if spec.subsets.groups is not None:
            col = X[X.columns[names.index(spec.subsets.groups)]]
            # a missing group is a group of its own; the column is a key of rows, not a property: left out
            groups = col.astype(str).where(col.notna(), "<missing>").to_numpy(dtype=str)
            if spec.subsets.groups not in data.columns and spec.subsets.groups not in drop:
                drop[spec.subsets.groups] = "subsets.groups: the rows' groups, not a feature"
        if data.order is not None:
            order = _order_key(X[X.columns[names.index(data.order)]])
        return Dataset.from_arrays(X, y, task=data.task, name=name, key="data", target=target, columns=data.columns,
                                   drop=drop, groups=groups, order=order)
    X, y = DATASETS.get(data.dataset)(spec)
    return Dataset.from_arrays(X, y, task=data.task, name=data.dataset, key="data", target="target")
