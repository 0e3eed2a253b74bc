"""What each column of a user's table becomes, and the encoder that turns a subset's rows into a matrix.

Every column gets one role when the table loads (``assign_roles``), from its type and cardinality as skrub's
``TableVectorizer`` does: numeric (imputed, scaled if asked), category (one-hot, bounded), text (skrub's
``StringEncoder``), datetime (skrub's ``DatetimeEncoder``) or drop (identifiers, constant or empty columns, the
groups column, ``data.drop``), each said with its reason. ``data.columns`` overrides any role. The rules and
thresholds, with what was measured: docs/data.md, "The role of every column".

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"id": range(200), "colour": ["red", "blue"] * 100, "x": [0.5] * 199 + [1.0]})
    >>> [(r.column, r.role) for r in assign_roles(frame)]
    [('id', 'drop'), ('colour', 'category'), ('x', 'numeric')]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from metaray.errors import SpecError

#: more distinct values than this make a text column free text rather than a category (skrub's default)
CARDINALITY_THRESHOLD = 40
#: one-hot columns of one category column at most; rarer categories are pooled (a user-forced category on a
#: column with thousands of values stays bounded)
MAX_ONEHOT = 64
#: the columns skrub's StringEncoder reduces one text column to
TEXT_COMPONENTS = 30
#: the columns DatetimeEncoder makes of a date: year, month, day, hour, seconds since 1970
DATETIME_WIDTH = 5
#: a column distinct on at least this fraction of its rows, and shaped like a key, is an identifier
ID_UNIQUE_FRACTION = 0.95
#: fewer rows than this: too few to tell an identifier from a feature
ID_MIN_ROWS = 20
_ID_NAME = re.compile(r"(?i)(^|[_\W])(id|uuid|guid|key)$|^(id|uuid|guid)([_\W]|$)")


@dataclass(frozen=True)
class ColumnRole:
    """A column's role, why, and how many encoded columns it becomes (for the memory estimate)."""

    column: str
    role: str
    reason: str
    width: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _width(role: str, n_unique: int) -> int:
    return {"numeric": 1, "category": min(n_unique + 1, MAX_ONEHOT), "text": TEXT_COMPONENTS,
            "datetime": DATETIME_WIDTH, "drop": 0}[role]


def is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def is_datetime(col: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(col)


def date_parser(col: pd.Series):
    """skrub's ``ToDatetime`` fitted on a text column whose every value parses with one format, else None."""
    from skrub import ToDatetime
    from skrub.core import RejectColumn

    values = col.dropna()
    if values.empty or not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return None
    text = values.astype(str)
    # no digits, or words: no date (and no slow parsing of every free-text column)
    if not text.str.contains(r"\d", regex=True).all() or text.str.len().max() > 40:
        return None
    try:
        return ToDatetime().fit(col)
    except (RejectColumn, ValueError, TypeError):
        return None


def date_values(col: pd.Series, key: str, problem: str):
    """A column of dates as datetimes: typed dates as they are, text through skrub's ``ToDatetime`` fitted on it;
    returns (datetimes, parser or None) or raises SpecError with ``key`` and ``problem``."""
    parser = dates_parser(col, key, problem)
    return (col, None) if parser is None else (parser.transform(col), parser)


def dates_parser(col: pd.Series, key: str, problem: str):
    """The parser of a column of dates: None for typed dates, skrub's ``ToDatetime`` fitted on text; raises
    SpecError with ``key`` and ``problem`` when its text does not parse."""
    if is_datetime(col):
        return None
    parser = date_parser(col)
    if parser is None:
        raise SpecError(key, problem, got=f"{col.name} ({col.dtype})")
    return parser


def _identifier(col: pd.Series, name: str) -> str | None:
    """Why a column looks like an identifier (a key of its rows, not a property of them), or None."""
    values = col.dropna()
    n = len(values)
    if n < ID_MIN_ROWS:
        return None
    distinct = values.nunique()
    if distinct < ID_UNIQUE_FRACTION * n:
        return None
    share = f"distinct on {distinct / n:.0%} of its rows"
    if is_numeric(col):
        whole = np.asarray(values, dtype=float)
        if not np.all(np.mod(whole, 1) == 0):
            return None  # a continuous measurement is distinct on every row too
        # a row number: consecutive from 0 or 1 (a run of years, 1950-2023, is a feature, not a key)
        run = whole.min() in (0, 1) and whole.max() - whole.min() + 1 <= distinct / ID_UNIQUE_FRACTION
        return f"an identifier: whole numbers {share}" + (", numbering the rows" if run else "") \
            if run or _ID_NAME.search(name) else None
    text = values.astype(str)
    if text.str.contains(r"\s", regex=True).mean() > 1 - ID_UNIQUE_FRACTION and not _ID_NAME.search(name):
        return None  # words with spaces: free text (a title, a comment), encoded as text
    return f"an identifier: text without spaces {share}"


def assign_roles(frame: pd.DataFrame, overrides: dict[str, str] | None = None, drop=(),
                 key: str = "data") -> list[ColumnRole]:
    """A role for every column of the table (see the module's docstring); ``overrides`` (``data.columns``) and
    ``drop`` (``data.drop``: names, or names with the reason to say) are the user's, checked against the table's
    columns."""
    names = [str(c) for c in frame.columns]
    overrides = dict(overrides or {})
    drop = dict(drop) if isinstance(drop, dict) else dict.fromkeys(drop, "data.drop")
    for k, given in (("columns", list(overrides)), ("drop", list(drop))):
        unknown = [c for c in given if c not in names]
        if unknown:
            raise SpecError(f"data.{k}.{unknown[0]}" if k == "columns" else f"data.{k}",
                            "no such feature column in the table", allowed=names, got=unknown[0])
    roles = []
    for column, name in zip(frame.columns, names, strict=True):
        col = frame[column]
        n_unique = int(col.nunique(dropna=True))
        if name in drop:
            roles.append(ColumnRole(name, "drop", drop[name], 0))
            continue
        if name in overrides:
            role = overrides[name]
            roles.append(ColumnRole(name, role, f"data.columns ({n_unique} distinct values)", _width(role, n_unique)))
            continue
        if n_unique == 0:
            role, reason = "drop", "empty: every value is missing"
        elif n_unique == 1:
            role, reason = "drop", "constant: one value"
        elif is_datetime(col):  # dates before identifiers: a daily series is distinct on every row
            role, reason = "datetime", "typed dates"
        elif not is_numeric(col) and date_parser(col) is not None:
            role, reason = "datetime", "text that parses as dates"
        elif (why := _identifier(col, name)) is not None:
            role, reason = "drop", why
        elif is_numeric(col):
            role, reason = "numeric", "numbers"
        elif n_unique <= CARDINALITY_THRESHOLD:
            role, reason = "category", f"{n_unique} distinct values <= {CARDINALITY_THRESHOLD}"
        else:
            role, reason = "text", f"{n_unique} distinct values > {CARDINALITY_THRESHOLD}"
        roles.append(ColumnRole(name, role, reason, _width(role, n_unique)))
    if all(r.role == "drop" for r in roles):
        raise SpecError(f"{key}.columns", "every feature column is left out, so nothing is left to learn from",
                        got={r.column: r.reason for r in roles})
    return roles


def describe_roles(roles: list[ColumnRole]) -> list[str]:
    """One line per column for the user: ``title       text      41,200 distinct values > 40``."""
    width = max(len(r.column) for r in roles)
    return [f"  {r.column:<{width}}  {r.role:<8}  {r.reason}" for r in roles]


class Dense(TransformerMixin, BaseEstimator):
    """A sparse matrix as a dense array, for learners that take dense input only (the width is bounded)."""

    def fit(self, X, y=None):
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True  # nothing to learn

    def transform(self, X):
        return X.toarray() if hasattr(X, "toarray") else X


def accepts_sparse(model) -> bool:
    """Whether a scikit-learn estimator takes sparse input (its ``input_tags.sparse``)."""
    try:
        return bool(model.__sklearn_tags__().input_tags.sparse)
    except Exception:
        return False


def encoder(roles: list[ColumnRole], *, scale: bool = False, impute: bool = True, seed: int = 0):
    """The unfitted transformer of a table's columns into a matrix, by role. Sparse output where the one-hot columns
    make the matrix mostly zeros (``ColumnTransformer``'s ``sparse_threshold``), else a dense float array."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from skrub import DatetimeEncoder, StringEncoder

    by_role: dict[str, list[str]] = {}
    for r in roles:
        by_role.setdefault(r.role, []).append(r.column)
    parts: list[tuple[str, Any, Any]] = []
    num_steps = ([SimpleImputer(strategy="median", keep_empty_features=True)] if impute else []) + (
        [StandardScaler()] if scale else [])
    if by_role.get("numeric"):
        parts.append(("num", make_pipeline(*num_steps) if num_steps else "passthrough", by_role["numeric"]))
    if by_role.get("category"):
        parts.append(("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_ONEHOT,
                                           sparse_output=True), by_role["category"]))
    # one transformer per text or date column: skrub's encoders take one column each
    for column in by_role.get("text", []):
        parts.append((f"text:{column}", StringEncoder(n_components=TEXT_COMPONENTS, random_state=seed), column))
    for column in by_role.get("datetime", []):
        # scaled always: seconds since 1970 (~1e9) would swamp every other feature of a linear model or a distance
        steps = [DatetimeEncoder(), SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()]
        parts.append((f"date:{column}", make_pipeline(*steps), column))
    # without imputation the NaNs go to learners that take them in dense input only (trees): dense then
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.3 if impute else 0.0,
                             verbose_feature_names_out=False)
