"""metaray.schedulers: when a configuration stops early. Each scheduler on hand-made streams of scores, without a
search: no early stopping, ASHA against Ray Tune's own AsyncHyperBandScheduler, racing against the incumbent with
the corrected bound; options as a spec's ``search.scheduler`` gives them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from metaray.driver import Layout
from metaray.errors import SpecError
from metaray.schedulers import make_scheduler
from metaray.spec import load_spec


def options(k: int = 10, **scheduler):
    """The ``search.scheduler`` of a spec with ``k`` subsets (a name alone takes that scheduler's defaults)."""
    return load_spec({"name": "s", "data": {"dataset": "iris"}, "subsets": {"k": k},
                      "search": {"scheduler": scheduler}}).search.scheduler


def test_without_a_scheduler_nothing_is_judged_or_stopped():
    none = make_scheduler(options(name="none"), mode="max", greater_is_better=True, total=5)
    assert none.milestones(5) == []
    assert not any(none.decide(t, d, -1e9, [-1e9] * d) for t in range(5) for d in range(1, 5))


def test_each_scheduler_takes_its_defaults_and_refuses_what_cannot_work_with_k_subsets():
    asha, racing = options(name="asha"), options(name="racing")
    assert (asha.grace_period, asha.reduction_factor, asha.fidelity) == (1, 3, "subsets")
    assert (racing.min_subsets, racing.confidence, racing.tolerance) == (3, 0.95, 0)
    with pytest.raises(SpecError, match=r"^search.scheduler.grace_period: ASHA stops configurations at rungs below k "
                                        r"subsets \(subsets.k is 3\); allowed: \(0, 2\]; got: 3"):
        options(k=3, name="asha", grace_period=3)
    options(k=3, name="asha", grace_period=3, fidelity="epochs")  # rungs over epochs: k does not bound them
    with pytest.raises(SpecError, match=r"^search.scheduler.min_subsets: racing compares configurations before all "
                                        r"k subsets are fitted \(subsets.k is 5\); allowed: \[2, 4\]; got: 5"):
        options(k=5, name="racing", min_subsets=5)
    # the default, where k leaves it no room, is said to be one; where no value could race, k is the key
    with pytest.raises(SpecError, match=r"^search.scheduler.min_subsets: .*\(subsets.k is 3; 3 is the default\); "
                                        r"allowed: \[2, 2\]; got: 3"):
        options(k=3, name="racing")
    with pytest.raises(SpecError, match=r"^subsets.k: racing needs two subsets' scores before the last .*; "
                                        r"allowed: >= 3 with search.scheduler: racing; got: 2$"):
        options(k=2, name="racing", min_subsets=2)
    with pytest.raises(SpecError, match=r"^subsets.k: ASHA over subsets .*; allowed: >= 2 with search.scheduler: "
                                        r"asha; got: 1$"):
        options(k=1, name="asha")


def test_asha_takes_the_decisions_of_ray_tunes_asynchyperbandscheduler():
    """Our rule against Tune's, through Tune's public scheduler API, on the same stream of results, for integer and
    real reduction factors (Tune's rungs at 2.5 and 6.25 are compared as such: decided after 3 and 7 subsets)."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    rng = np.random.default_rng(5)
    for rf in (2, 2.5, 3):
        ours = make_scheduler(options(name="asha", grace_period=1, reduction_factor=rf), mode="max",
                              greater_is_better=True, total=10)
        tune = AsyncHyperBandScheduler(time_attr="done", metric="v", mode="max", max_t=10, grace_period=1,
                                       reduction_factor=rf, brackets=1)
        layout = Layout.over_subsets(10, ours.milestones(10))
        assert set(layout.decisions) == ({1, 3, 7} if rf == 2.5 else {1, 2, 4, 8} if rf == 2 else {1, 3, 9})
        stopped = 0
        for trial in range(40):
            ref = SimpleNamespace(trial_id=f"t{trial}")
            tune.on_trial_add(None, ref)
            for done, rung in sorted(layout.decisions.items()):
                value = float(rng.normal())
                theirs = tune.on_trial_result(None, ref, {"done": done, "v": value}) == TrialScheduler.STOP
                assert ours.decide(trial, rung, value, []) == theirs, (rf, trial, done)
                if theirs:
                    stopped += 1
                    break
        assert 10 < stopped < 40  # both kinds of decision were compared


def test_asha_keeps_the_top_of_each_rung_in_the_objectives_direction():
    for mode, sign in (("max", 1.0), ("min", -1.0)):
        asha = make_scheduler(options(name="asha", grace_period=1, reduction_factor=2), mode=mode,
                              greater_is_better=mode == "max", total=4)
        assert asha.milestones(4) == [1.0, 2.0]
        assert not asha.decide(0, 1, sign * 0.9, [])  # the first at a rung has nothing to be compared with
        assert asha.decide(1, 1, sign * 0.5, [])  # below the top half of what the rung recorded
        assert not asha.decide(2, 1, sign * 0.95, [])  # above it
        assert not asha.decide(2, 1, sign * 0.1, [])  # judged once per rung
        assert not asha.decide(3, 1, float("nan"), [])  # a failed score is never a reason to stop


def test_racing_stops_what_cannot_beat_the_incumbent_and_keeps_what_can():
    racing = make_scheduler(options(k=5, name="racing", min_subsets=2), mode="max", greater_is_better=True, total=5)
    assert racing.milestones(5) == [2.0, 3.0, 4.0]
    assert not racing.decide(0, 2, 0.9, [0.9, 0.91])  # no incumbent yet
    racing.finished(0, True, 0.9, [0.9, 0.91, 0.89, 0.92, 0.9])
    assert racing.decide(1, 3, 0.6, [0.6, 0.61, 0.59])  # far below on every subset
    assert not racing.decide(2, 3, 0.9, [0.91, 0.90, 0.90])  # as good within the noise
    racing.finished(3, False, 0.99, [0.99, 0.99])  # a stopped configuration never becomes the incumbent
    assert racing.decide(1, 3, 0.6, [0.6, 0.61, 0.59])


def test_racing_a_loss_stops_the_configurations_whose_loss_is_higher():
    racing = make_scheduler(options(k=5, name="racing", min_subsets=2), mode="min", greater_is_better=False, total=5)
    racing.finished(0, True, 0.10, [0.10, 0.11, 0.09, 0.10, 0.10])
    assert racing.decide(1, 3, 0.40, [0.40, 0.41, 0.39])  # a far higher loss
    assert not racing.decide(2, 3, 0.05, [0.05, 0.06, 0.04])  # a lower one races on
    racing.finished(2, True, 0.05, [0.05, 0.06, 0.04, 0.05, 0.05])  # the new incumbent: the lower loss
    assert racing.decide(4, 3, 0.10, [0.10, 0.11, 0.09])  # as good as the old incumbent is now beaten


def test_plain_racing_stops_configurations_the_corrected_one_keeps():
    """Logistic regressions on ten 80 % subsamples of breast cancer, raced against the best: the plain paired
    t-bound (overlap 0) stops configurations that the corrected bound keeps, and never keeps one it stops."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from metaray.spec import SubsetSpec
    from metaray.subsets import make_plan

    X, y = load_breast_cancer(return_X_y=True)
    plan = make_plan(y, "classification", SubsetSpec(k=10, fraction=0.8, protocol="out_of_subset"), seed=0)
    n_train, n_test = plan.sizes(0)
    scores = np.array([[(make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
                         .fit(X[tr], y[tr]).predict(X[ev]) == y[ev]).mean()
                        for tr, ev in zip(plan.train, plan.evaluate, strict=True)] for C in np.logspace(-3, 1, 12)])
    best = int(scores.mean(axis=1).argmax())

    def stopped(overlap):
        racing = make_scheduler(options(name="racing"), mode="max", greater_is_better=True, total=10, overlap=overlap)
        racing.finished(best, True, scores[best].mean(), list(scores[best]))
        return {i for i in range(len(scores)) if i != best and any(
            racing.decide(i, m, 0.0, list(scores[i][:m])) for m in range(3, 10))}

    plain, corrected = stopped(0.0), stopped(n_test / n_train)
    assert corrected < plain, (plain, corrected)  # a strict subset: the plain bound stops more


def test_asha_decides_ahead_only_what_no_earlier_configuration_could_change():
    """Judged ahead (``unknown`` configurations before it not yet known at the rung, ``pending`` known but not yet
    judged), ASHA answers only when every outcome of the unknown ones (recorded at any value, or never reaching the
    rung) gives the same answer as judging in order; else None, recording nothing. Checked against the in-order
    decision over many random worlds, for both directions and several reduction factors."""
    rng = np.random.default_rng(0)
    answered = {True: 0, False: 0}
    for case in range(300):
        rf, mode = (2, 3, 2.5)[case % 3], ("max", "min")[case % 2]
        n_before, unknown = int(rng.integers(0, 12)), int(rng.integers(0, 4))
        values = rng.normal(size=n_before).round(1).tolist()  # ties too
        candidate = round(float(rng.normal()), 1)
        split = int(rng.integers(0, n_before + 1))  # the first ones recorded, the rest known but not judged
        ahead = make_scheduler(options(name="asha", grace_period=1, reduction_factor=rf), mode=mode,
                               greater_is_better=mode == "max", total=4)
        for i, v in enumerate(values[:split]):
            ahead.decide(i, 1, v, [])
        got = ahead.decide(50, 1, candidate, [], unknown=unknown, pending=values[split:])
        if got is None:
            assert 50 not in ahead._recorded[1.0]
            continue
        answered[got] += 1
        for _ in range(20):  # a world: which unknown ones reach the rung, and at what value
            reach = [float(x) for x in rng.normal(scale=2, size=unknown) if rng.random() < 0.7]
            in_order = make_scheduler(options(name="asha", grace_period=1, reduction_factor=rf), mode=mode,
                                      greater_is_better=mode == "max", total=4)
            for i, v in enumerate(values + reach):
                in_order.decide(i, 1, v, [])
            assert in_order.decide(50, 1, candidate, []) == got, (case, values, reach, candidate, unknown)
    assert answered[True] > 20 and answered[False] > 20  # both answers were given ahead, not only None
