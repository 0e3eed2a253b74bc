"""Meta-features of a dataset: numbers that compare across datasets, so that a new search can start from the best
configurations of the most similar past ones (metaray.warmstart).

Size and shape, the target, missing and categorical shares, statistics of the numeric features and landmarkers
(the scores of simple learners); bounded time: at most ``MAX_ROWS`` rows and ``MAX_FEATURES`` features, drawn with
the search's seed. The list: docs/learning.md, "Meta-features".
"""

from __future__ import annotations

import math
import warnings

import numpy as np

#: rows and features the statistics and landmarkers look at, at most
MAX_ROWS = 1000
MAX_FEATURES = 50
_STREAM = 0x3E7A


def compute(ds, *, seed: int = 0) -> dict[str, float]:
    """The meta-features of a ``metaray.data.Dataset`` (names are the same for every dataset of a task).

    Example:
        >>> from metaray.data import Dataset
        >>> from sklearn.datasets import load_iris
        >>> mf = compute(Dataset.from_arrays(*load_iris(return_X_y=True)))
        >>> mf["classes"], round(mf["class_entropy"], 3), mf["landmark_1nn"] > 0.9
        (3.0, 1.0, True)
    """
    import pandas as pd

    from metaray.subsets import rng_for

    rng = rng_for(seed, _STREAM)
    n, d = ds.n_rows, len(ds.feature_names)
    frame = ds.X if isinstance(ds.X, pd.DataFrame) else None
    numeric_cols = ([c for c in frame.columns if str(c) not in ds.categorical
                     and not pd.api.types.is_datetime64_any_dtype(frame[c])] if frame is not None else None)
    missing = (frame.isna().to_numpy().mean() if frame is not None else float(np.isnan(ds.X).mean()))
    out = {"rows_log10": math.log10(n), "features_log10": math.log10(d), "features_per_row": d / n,
           "categorical_share": len(ds.categorical) / d, "missing_share": float(missing)}
    y = ds.y if ds.y.ndim == 1 else ds.y[:, 0]
    if ds.task == "classification":
        _, counts = np.unique(y, return_counts=True)
        p = counts / counts.sum()
        out.update(classes=float(len(counts)), class_entropy=float(-(p * np.log(p)).sum() / math.log(len(p))),
                   minority_share=float(p.min()))
    else:
        out.update(target_skew=_skew(y.astype(float)), target_kurtosis=_kurtosis(y.astype(float)))
    rows = np.sort(rng.choice(n, size=min(n, MAX_ROWS), replace=False))
    if frame is not None:
        numeric = frame.iloc[rows][numeric_cols].to_numpy(dtype=float)
    else:
        numeric = ds.X[rows]
    if numeric.shape[1] > MAX_FEATURES:
        numeric = numeric[:, np.sort(rng.choice(numeric.shape[1], MAX_FEATURES, replace=False))]
    out.update(_feature_statistics(numeric))
    if d > MAX_FEATURES:  # wide data: the landmarkers see the sampled numeric features, imputed and scaled
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, pre = numeric, make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
    else:
        X = ds.X.iloc[rows].reset_index(drop=True) if frame is not None else ds.X[rows]
        pre = ds.preprocessor(scale=True, impute=True)
    out.update(_landmarkers(X, ds.y[rows], pre, ds.task, seed))
    return {k: float(v) for k, v in out.items()}


def _skew(v) -> float:
    v = v[np.isfinite(v)]
    s = v.std()
    return float(np.mean(((v - v.mean()) / s) ** 3)) if v.size > 2 and s > 0 else 0.0


def _kurtosis(v) -> float:
    v = v[np.isfinite(v)]
    s = v.std()
    return float(np.mean(((v - v.mean()) / s) ** 4) - 3.0) if v.size > 3 and s > 0 else 0.0


def _feature_statistics(numeric) -> dict[str, float]:
    """Mean |skewness|, mean kurtosis, mean and largest |correlation| of the numeric features (0 without any)."""
    cols = [c for c in numeric.T if np.isfinite(c).sum() > 3 and np.nanstd(c) > 0]
    if not cols:
        return {"skewness_mean_abs": 0.0, "kurtosis_mean": 0.0, "correlation_mean_abs": 0.0,
                "correlation_max_abs": 0.0}
    skews = [abs(_skew(c)) for c in cols]
    kurts = [_kurtosis(c) for c in cols]
    corr_mean = corr_max = 0.0
    if len(cols) > 1:
        m = np.column_stack([np.where(np.isfinite(c), c, np.nanmedian(c)) for c in cols])
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.abs(np.corrcoef(m, rowvar=False))
        upper = corr[np.triu_indices(len(cols), 1)]
        upper = upper[np.isfinite(upper)]
        if upper.size:
            corr_mean, corr_max = float(upper.mean()), float(upper.max())
    return {"skewness_mean_abs": float(np.mean(skews)), "kurtosis_mean": float(np.mean(kurts)),
            "correlation_mean_abs": corr_mean, "correlation_max_abs": corr_max}


def _landmarkers(X, y, pre, task: str, seed: int) -> dict[str, float]:
    """3-fold cross-validated scores of simple learners on the sample (accuracy, or R² for regression), behind
    ``pre`` (the dataset's own imputation, one-hot encoding and scaling); 0 for a sample too small to fold."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    classification = task == "classification"
    if classification:
        from sklearn.naive_bayes import GaussianNB
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.tree import DecisionTreeClassifier

        learners = {"landmark_stump": DecisionTreeClassifier(max_depth=1, random_state=seed),
                    "landmark_1nn": KNeighborsClassifier(1), "landmark_nb": GaussianNB()}
        _, counts = np.unique(y, return_counts=True)
        folds = (StratifiedKFold(3, shuffle=True, random_state=seed) if counts.min() >= 3
                 else KFold(3, shuffle=True, random_state=seed))
    else:
        from sklearn.linear_model import LinearRegression
        from sklearn.neighbors import KNeighborsRegressor
        from sklearn.tree import DecisionTreeRegressor

        learners = {"landmark_stump": DecisionTreeRegressor(max_depth=1, random_state=seed),
                    "landmark_1nn": KNeighborsRegressor(1), "landmark_linear": LinearRegression()}
        folds = KFold(3, shuffle=True, random_state=seed)
    if len(y) < 6:
        return dict.fromkeys(learners, 0.0)
    from metaray.columns import Dense

    out = {}
    for name, learner in learners.items():
        # a table's encoding may be sparse; the landmarkers (naive Bayes) take dense input
        model = make_pipeline(clone(pre), Dense(), learner) if pre is not None else learner
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = cross_val_score(model, X, y, cv=folds, error_score=np.nan)
        value = float(np.nanmean(scores)) if np.isfinite(scores).any() else 0.0
        out[name] = max(value, -1.0) if not classification else value  # a hopeless R² is not a distance of 1e6
    return out
