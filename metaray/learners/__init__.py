"""Learners by short name or import path, built unfitted with validated parameters.

Every learner follows the scikit-learn contract (``fit`` returns self, ``predict``/``predict_proba``,
``get_params``/``set_params``), so one objective serves scikit-learn and PyTorch alike.

Example:
    >>> from metaray.spec import LearnerSpec
    >>> build_learner(LearnerSpec(name="random_forest", params={"n_estimators": 10}), "classification").describe()
    'RandomForestClassifier(n_estimators=10)'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metaray.errors import RejectedValue, SpecError
from metaray.registry import Registry, import_object


@dataclass(frozen=True)
class LearnerEntry:
    """A registered learner: an import path per task it supports ("embedding" for transformers that embed
    the features), and defaults that differ from the class's own."""

    classification: str | None = None
    regression: str | None = None
    embedding: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    # a parameter -> (the parameter it depends on, the least value at which it exists): a network's block parameters
    conditions: dict[str, tuple[str, int]] = field(default_factory=dict)

    def path(self, task: str) -> str | None:
        return getattr(self, task)


def _blocks(dense: int, conv: int) -> dict[str, tuple[str, int]]:
    """An architecture's block parameters and the depth at which each exists: ``width_i`` when ``n_layers >= i``,
    ``channels_i`` and ``kernel_i`` when ``conv_blocks >= i`` (metaray.learners.nas: at most ``dense`` and ``conv``)."""
    return {**{f"width_{i}": ("n_layers", i) for i in range(1, dense + 1)},
            **{f"{p}_{i}": ("conv_blocks", i) for i in range(1, conv + 1) for p in ("channels", "kernel")}}


LEARNERS: Registry[LearnerEntry] = Registry("learner", "learner.name")
_SK = "sklearn."
for _name, _entry in {
    "logistic_regression": LearnerEntry(_SK + "linear_model.LogisticRegression", defaults={"max_iter": 1000}),
    "linear_regression": LearnerEntry(regression=_SK + "linear_model.LinearRegression"),
    "ridge": LearnerEntry(_SK + "linear_model.RidgeClassifier", _SK + "linear_model.Ridge"),
    "lasso": LearnerEntry(regression=_SK + "linear_model.Lasso", defaults={"max_iter": 10000}),
    "elastic_net": LearnerEntry(regression=_SK + "linear_model.ElasticNet", defaults={"max_iter": 10000}),
    "bayesian_ridge": LearnerEntry(regression=_SK + "linear_model.BayesianRidge"),
    "ard_regression": LearnerEntry(regression=_SK + "linear_model.ARDRegression"),
    "svc": LearnerEntry(_SK + "svm.SVC"),
    "svr": LearnerEntry(regression=_SK + "svm.SVR"),
    "knn": LearnerEntry(_SK + "neighbors.KNeighborsClassifier", _SK + "neighbors.KNeighborsRegressor"),
    "naive_bayes": LearnerEntry(_SK + "naive_bayes.GaussianNB"),
    "decision_tree": LearnerEntry(_SK + "tree.DecisionTreeClassifier", _SK + "tree.DecisionTreeRegressor"),
    "random_forest": LearnerEntry(_SK + "ensemble.RandomForestClassifier", _SK + "ensemble.RandomForestRegressor"),
    "extra_trees": LearnerEntry(_SK + "ensemble.ExtraTreesClassifier", _SK + "ensemble.ExtraTreesRegressor"),
    "gradient_boosting": LearnerEntry(_SK + "ensemble.GradientBoostingClassifier",
                                      _SK + "ensemble.GradientBoostingRegressor"),
    "hist_gradient_boosting": LearnerEntry(_SK + "ensemble.HistGradientBoostingClassifier",
                                           _SK + "ensemble.HistGradientBoostingRegressor"),
    "sklearn_mlp": LearnerEntry(_SK + "neural_network.MLPClassifier", _SK + "neural_network.MLPRegressor",
                                defaults={"max_iter": 500}),
    "mlp": LearnerEntry("metaray.learners.torch_mlp.TorchMLPClassifier",
                        "metaray.learners.torch_mlp.TorchMLPRegressor"),
    "nas_net": LearnerEntry("metaray.learners.nas.TorchNetClassifier", "metaray.learners.nas.TorchNetRegressor",
                            conditions=_blocks(dense=4, conv=3)),
    "pca": LearnerEntry(embedding=_SK + "decomposition.PCA"),
    "truncated_svd": LearnerEntry(embedding=_SK + "decomposition.TruncatedSVD"),
    "kernel_pca": LearnerEntry(embedding=_SK + "decomposition.KernelPCA", defaults={"fit_inverse_transform": True}),
    "autoencoder": LearnerEntry(embedding="metaray.learners.embedding.TorchAutoencoder"),
}.items():
    LEARNERS.register(_name, _entry)


def conditions(name: str) -> dict[str, tuple[str, int]]:
    """The conditional parameters of a registered learner (``LearnerEntry.conditions``); none for others."""
    return LEARNERS.get(name).conditions if name in LEARNERS.names() else {}


def inactive(name: str, params: dict[str, Any]) -> set[str]:
    """The parameters of ``params`` that the learner ``name`` does not use with them (a block its network lacks).

    Example:
        >>> sorted(inactive("nas_net", {"n_layers": 1, "conv_blocks": 1}))[:4]
        ['channels_2', 'channels_3', 'kernel_2', 'kernel_3']
    """
    return {p for p, (on, least) in conditions(name).items()
            if isinstance(params.get(on), (int, np.integer)) and params[on] < least}


#: each learner's own notion of simple, for the "simplest tied" recommendation: a rank across learners (0: linear
#: models and the like, 1: neighbours, kernels, single trees, 2: ensembles and networks), then its parameters in
#: order of weight, lower is simpler ("-name": higher is simpler, e.g. a ridge's alpha); "n_parameters": the
#: network's trainable parameters for the data's width
SIMPLER: dict[str, tuple[int, tuple[str, ...]]] = {
    "logistic_regression": (0, ("C",)), "linear_regression": (0, ()), "ridge": (0, ("-alpha",)),
    "lasso": (0, ("-alpha",)), "elastic_net": (0, ("-alpha",)), "bayesian_ridge": (0, ()),
    "ard_regression": (0, ()), "naive_bayes": (0, ()), "svc": (1, ("C", "gamma")), "svr": (1, ("C", "gamma")),
    "knn": (1, ("-n_neighbors",)), "decision_tree": (1, ("max_depth", "max_leaf_nodes", "-min_samples_leaf")),
    "random_forest": (2, ("max_depth", "n_estimators", "-min_samples_leaf")),
    "extra_trees": (2, ("max_depth", "n_estimators", "-min_samples_leaf")),
    "gradient_boosting": (2, ("n_estimators", "max_depth", "learning_rate")),
    "hist_gradient_boosting": (2, ("max_iter", "max_depth", "max_leaf_nodes", "learning_rate")),
    "sklearn_mlp": (2, ("hidden_layer_sizes", "-alpha")), "mlp": (2, ("n_parameters",)),
    "nas_net": (2, ("n_parameters",)), "pca": (0, ("n_components",)), "truncated_svd": (0, ("n_components",)),
    "kernel_pca": (1, ("n_components",)), "autoencoder": (2, ("bottleneck", "depth", "width")),
}


def complexity(learner: Learner, n_features: int, n_outputs: int) -> tuple:
    """How complex a configuration is by its learner's own notion (``SIMPLER``), as a key that sorts the simplest
    first: the learner's rank, its name, then its parameters (a network's parameter count for ``n_features``
    inputs and ``n_outputs`` outputs). A learner given by import path has no notion: it ranks last, all equal.

    Example:
        >>> from metaray.spec import LearnerSpec
        >>> ridge = lambda alpha: build_learner(LearnerSpec(name="ridge", params={"alpha": alpha}), "regression")
        >>> complexity(ridge(10), 4, 1) < complexity(ridge(0.1), 4, 1)        # more regularisation is simpler
        True
    """
    rank, keys = SIMPLER.get(learner.name, (3, ()))
    model = learner.model
    model = getattr(model, "embedder", model)  # an embedding's probe wraps the embedder
    params = model.get_params()
    key: list = [rank, learner.name]
    for item in keys:
        if item == "n_parameters":
            key.append(_n_parameters(model, n_features, n_outputs))
            continue
        value = _number(params.get(item.lstrip("-")))
        key.append(-value if item.startswith("-") else value)
    return tuple(key)


def _number(value) -> float:
    """A parameter as a size: None (no limit) is infinite, a tuple of layer sizes their sum, text nothing."""
    if value is None:
        return float("inf")
    if isinstance(value, (tuple, list)):
        return float(sum(_number(v) for v in value))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


def _n_parameters(model, n_features: int, n_outputs: int) -> float:
    import torch

    from metaray.learners.nets import count_parameters

    try:
        with torch.device("meta"):  # shapes only: no memory, and no draw from torch's global random state
            return float(count_parameters(model._make_net(n_features, n_outputs)))
    except Exception:  # an architecture that cannot be built for this width ranks last
        return float("inf")


@dataclass
class Learner:
    """An unfitted estimator ready to be cloned into a subset fit.

    Attributes:
        estimator: the estimator, wrapped in a Pipeline behind the data's preprocessor when there is one.
        seed_param: the parameter each fit sets to its own seed (None when the user fixed it or there is none).
        name: the registry name or import path the spec gave.
        memory: bytes each fit task reserves (metaray.memory), once the search has worked it out.
    """

    estimator: Any
    seed_param: str | None
    name: str
    memory: float | None = None

    def for_fit(self, seed: int):
        """A fresh clone, seeded for one subset fit."""
        from sklearn.base import clone

        est = clone(self.estimator)
        if self.seed_param:
            est.set_params(**{self.seed_param: seed})
        return est

    def param_key(self, name: str) -> str | None:
        """The key of the model's parameter ``name`` in the (possibly wrapped) estimator, or None."""
        keys = [k for k in self.estimator.get_params(deep=True) if k == name or k.endswith(f"__{name}")]
        return min(keys, key=len) if keys else None

    def with_params(self, **params) -> Learner:
        """A copy with some of the model's parameters changed (e.g. the epochs of one fidelity stage)."""
        from sklearn.base import clone

        est = clone(self.estimator).set_params(**{self.param_key(k): v for k, v in params.items()})
        return Learner(est, self.seed_param, self.name, self.memory)

    @property
    def model(self):
        """The estimator behind the preprocessing pipeline, if any."""
        return final_estimator(self.estimator)

    def describe(self) -> str:
        est = self.model
        est = getattr(est, "embedder", est)
        return repr(est).replace("\n", "").replace("  ", "")


def final_estimator(est):
    """The model at the end of a (fitted or unfitted) preprocessing Pipeline, or the estimator itself."""
    return est.steps[-1][1] if hasattr(est, "steps") else est


def learners_for(task: str) -> list[str]:
    return [n for n in LEARNERS.names() if LEARNERS.get(n).path(task)]


def _resolve_class(name: str, task: str):
    from sklearn.base import is_classifier, is_regressor

    if name in LEARNERS and task == "embedding" and LEARNERS.get(name).path(task) is None:
        raise SpecError("learner.name", "not an embedder; the embedding strategy fits transformers",
                        allowed=learners_for("embedding"), got=name)
    if name in LEARNERS:
        path = LEARNERS.get(name).path(task)
        if path is None:
            raise SpecError("learner.name", f"learner has no {task} variant", allowed=learners_for(task), got=name)
        return import_object(path), LEARNERS.get(name).defaults
    if "." not in name:
        LEARNERS.check(name)  # raises with the known names
    try:
        cls = import_object(name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpecError("learner.name", f"cannot import the estimator ({exc})",
                        allowed="a registered name or an import path like sklearn.ensemble.ExtraTreesClassifier",
                        got=name) from None
    if not (isinstance(cls, type) and hasattr(cls, "fit") and hasattr(cls, "get_params")):
        raise SpecError("learner.name", "not a scikit-learn-compatible estimator class", got=name)
    probe = cls()
    wrong = (task == "classification" and is_regressor(probe)) or (task == "regression" and is_classifier(probe))
    if task == "embedding":
        wrong = not (hasattr(probe, "transform") and hasattr(probe, "inverse_transform"))
    if wrong:
        what = "an embedder with transform and inverse_transform" if task == "embedding" else f"a {task} estimator"
        raise SpecError("learner.name", f"not {what}", got=name)
    return cls, {}


_PARAM_IN_MESSAGE = re.compile(r"The '([^']+)' parameter")


def build_learner(spec, task: str, *, preprocessor=None, cpus_per_fit: float = 1.0, probe_task: str | None = None,
                  device: str | None = None) -> Learner:
    """Build and validate the spec's learner (a ``LearnerSpec``) for ``task``.

    With ``task="embedding"`` the learner is an embedder, wrapped with the fixed probe of ``probe_task``
    (see ``metaray.learners.embedding.EmbeddingProbe``).

    Raises:
        SpecError: unknown name, wrong task, unknown parameter, or a value the estimator rejects.
    """
    cls, defaults = _resolve_class(spec.name, task)
    user = dict(spec.params)
    est = cls()
    allowed = est.get_params(deep=True)
    _check_names(user, allowed, cls)
    _set_params(est, _implicit_params(defaults, user, allowed, cpus_per_fit, device), user, cls)
    seed_param = "random_state" if "random_state" in allowed and "random_state" not in user else None
    if task == "embedding":
        from metaray.learners.embedding import EmbeddingProbe, default_probe

        est = EmbeddingProbe(est, default_probe(probe_task or "classification"))
        seed_param = seed_param and f"embedder__{seed_param}"
    if preprocessor is not None:
        est = _behind(preprocessor, est)
        seed_param = seed_param and f"model__{seed_param}"
    return Learner(est, seed_param, spec.name)


def _check_names(user: dict, allowed: dict, cls) -> None:
    """Refuse a parameter the estimator does not have, with the nearest name it does."""
    for key in user:
        if key not in allowed:
            import difflib

            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"learner.params.{key}", f"not a parameter of {cls.__name__}{hint}",
                            allowed=sorted(allowed), got=key)


def _implicit_params(defaults: dict, user: dict, allowed: dict, cpus_per_fit: float, device: str | None) -> dict:
    """What metaray sets that the user did not: the registry's defaults, the threads a fit holds, the device."""
    implicit = {k: v for k, v in defaults.items() if k not in user}
    if "n_jobs" in allowed and "n_jobs" not in user and int(cpus_per_fit) > 1:
        implicit["n_jobs"] = int(cpus_per_fit)  # a fit holds cpus_per_fit CPUs; joblib's default uses one
    if "n_threads" in allowed and "n_threads" not in user:
        implicit["n_threads"] = max(1, int(cpus_per_fit))
    if device and "device" in allowed and "device" not in user:
        implicit["device"] = device
    return implicit


def _set_params(est, implicit: dict, user: dict, cls) -> None:
    """Set the parameters and validate them by the estimator's own constraints; a refusal names the user's key."""
    try:
        est.set_params(**implicit, **user)
        if hasattr(est, "_parameter_constraints"):  # scikit-learn's declared constraints; a user's class may have none
            est._validate_params()
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0]
        found = _PARAM_IN_MESSAGE.search(message)
        key = f"learner.params.{found.group(1)}" if found else "learner.params"
        bad = user.get(found.group(1)) if found else user
        raise RejectedValue(key, f"rejected by {cls.__name__}: {message}", got=bad) from None


def _behind(preprocessor, est):
    """The estimator behind the data's preprocessor, as a Pipeline (prep, [dense], model)."""
    from sklearn.pipeline import Pipeline

    from metaray.columns import Dense, accepts_sparse

    # a table's encoding is sparse when one-hot columns make it mostly zeros; not every model takes that
    dense = [("dense", Dense())] if getattr(preprocessor, "sparse_threshold", 0) and not accepts_sparse(est) else []
    return Pipeline([("prep", preprocessor), *dense, ("model", est)])


def accepts_nan(estimator) -> bool:
    """Whether the estimator takes NaN in its input (scikit-learn's ``allow_nan`` tag)."""
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:
        return False
