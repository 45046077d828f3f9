"""Calibration, the uncertain outcome and the batch-shift check on crafted scores."""

from __future__ import annotations

import numpy as np
import pytest

from ml import calibration
from ml.calibration import Calibration, OutOfDistribution

CLASSES = ("normal", "abnormal")


def test_it_recovers_a_known_platt_mapping() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.01, 0.99, 20000)
    truth = rng.uniform(size=len(scores)) < calibration.sigmoid(2.0 * calibration.logit(scores) - 1.0)
    slope, intercept = calibration.fit_platt(scores, truth)
    assert slope == pytest.approx(2.0, abs=0.1)
    assert intercept == pytest.approx(-1.0, abs=0.1)


def test_it_moves_an_overconfident_site_back_to_balanced_decisions() -> None:
    # A new device pushes every score up: normals around 0.8, abnormals around 0.95.
    rng = np.random.default_rng(1)
    normal = calibration.sigmoid(rng.normal(1.4, 0.5, 500))
    abnormal = calibration.sigmoid(rng.normal(3.0, 0.5, 500))
    scores = np.concatenate([normal, abnormal])
    truth = np.arange(1000) >= 500
    sources = np.full(1000, "site")
    raw_specificity = np.mean(normal < 0.5)
    fitted = calibration.fit_calibration(scores, truth, sources, source="test")
    predicted = fitted.probability(scores) >= fitted.threshold
    assert raw_specificity < 0.05
    assert np.mean(~predicted[~truth]) > 0.8 and np.mean(predicted[truth]) > 0.8


def test_it_weights_every_source_and_class_alike() -> None:
    weights = calibration.balanced_weights(
        np.array([1, 0, 0, 0, 1, 1]), np.array(["a", "a", "a", "a", "b", "b"])
    )
    totals = {key: weights[idx].sum() for key, idx in {"a1": [0], "a0": [1, 2, 3], "b1": [4, 5]}.items()}
    assert totals["a1"] == pytest.approx(totals["a0"]) == pytest.approx(totals["b1"])
    assert weights.mean() == pytest.approx(1.0)


def test_it_chooses_the_threshold_that_serves_every_source() -> None:
    scores = np.array([0.1, 0.2, 0.6, 0.7, 0.3, 0.4, 0.8, 0.9])
    truth = np.array([False, False, True, True, False, False, True, True])
    sources = np.array(["a"] * 4 + ["b"] * 4)
    threshold = calibration.choose_threshold(scores, truth, sources)
    assert 0.4 < threshold <= 0.6
    assert calibration.per_source_macc(truth, scores >= threshold, sources) == {"a": 1.0, "b": 1.0}


def _decide(probability: float, **kwargs: object) -> calibration.Decision:
    settings: dict = {"quality": "good", "quality_reasons": [], "distance": None, **kwargs}
    return calibration.decide_one(
        probability,
        calibration=settings.pop("calibration", Calibration(threshold=0.5, margin=0.1)),
        classes=CLASSES,
        positive_class="abnormal",
        **settings,
    )


def test_it_decides_clear_scores() -> None:
    assert _decide(0.9).outcome == "abnormal"
    assert _decide(0.1).outcome == "normal"
    assert _decide(0.9).reasons == []


def test_it_is_uncertain_near_the_threshold() -> None:
    decision = _decide(0.55)
    assert decision.outcome == calibration.UNCERTAIN
    assert "threshold 0.50" in decision.reasons[0]


def test_it_is_uncertain_about_an_unusable_recording_whatever_its_score() -> None:
    decision = _decide(0.99, quality="unusable", quality_reasons=["silence in 70% of the recording"])
    assert decision.outcome == calibration.UNCERTAIN
    assert decision.reasons == ["re-record: silence in 70% of the recording"]


def test_it_is_uncertain_about_a_recording_unlike_the_training_data() -> None:
    ood = {"mean": [0.0], "precision": [[1.0]], "limit": 3.0}
    calibrated = Calibration(threshold=0.5, margin=0.1, out_of_distribution=ood)
    assert _decide(0.9, calibration=calibrated, distance=2.0).outcome == "abnormal"
    far = _decide(0.9, calibration=calibrated, distance=7.5)
    assert far.outcome == calibration.UNCERTAIN
    assert "unlike the training recordings" in far.reasons[0]


def test_it_measures_distance_from_the_training_rows() -> None:
    rng = np.random.default_rng(2)
    rows = rng.standard_normal((2000, 3))
    check = OutOfDistribution.fit(rows)
    inside, outside = check.distance(np.array([[0.1, -0.2, 0.0], [8.0, 8.0, -8.0]]))
    assert inside < check.limit < outside
    again = OutOfDistribution.from_dict(check.to_dict())
    assert again.distance(rows[:5]) == pytest.approx(check.distance(rows[:5]))


def _reference(values: np.ndarray) -> Calibration:
    return Calibration(
        threshold=0.5,
        reference_quantiles=calibration.reference_quantiles(values),
        reference_positive_share=float(np.mean(values >= 0.5)),
    )


def test_a_batch_like_validation_passes_the_shift_check() -> None:
    rng = np.random.default_rng(3)
    reference = _reference(rng.beta(2, 3, 5000))
    batch = rng.beta(2, 3, 200)
    assert calibration.batch_shift_warning(batch, calibration=reference, positive_class="abnormal") is None


def test_a_batch_called_abnormal_throughout_is_flagged() -> None:
    rng = np.random.default_rng(4)
    reference = _reference(rng.beta(2, 3, 5000))
    batch = rng.beta(9, 1, 200)
    warning = calibration.batch_shift_warning(batch, calibration=reference, positive_class="abnormal")
    assert warning is not None
    assert "called abnormal" in warning and "KS distance" in warning


def test_a_batch_whose_scores_moved_is_flagged_even_below_80_percent() -> None:
    rng = np.random.default_rng(5)
    reference = _reference(rng.beta(1, 6, 5000))  # validation scores mostly near 0.1
    batch = rng.uniform(0.3, 0.6, 200)
    assert (
        calibration.batch_shift_warning(batch, calibration=reference, positive_class="abnormal") is not None
    )


def test_a_small_batch_says_nothing() -> None:
    reference = _reference(np.linspace(0, 0.4, 100))
    assert (
        calibration.batch_shift_warning([0.99] * 10, calibration=reference, positive_class="abnormal") is None
    )


def test_the_ks_distance_is_zero_for_the_same_distribution_and_one_for_disjoint() -> None:
    values = np.linspace(0, 1, 1001)
    assert calibration.ks_distance(values, calibration.reference_quantiles(values)) < 0.06
    assert calibration.ks_distance(values * 0.1 + 0.9, calibration.reference_quantiles(values * 0.1)) == 1.0


def test_nested_calibration_scores_each_source_with_the_others_fit() -> None:
    rng = np.random.default_rng(6)
    sources = np.repeat(["a", "b", "c"], 400)
    truth = np.tile(np.arange(400) >= 200, 3)
    shift = {"a": 0.0, "b": 0.5, "c": -0.5}
    scores = calibration.sigmoid(
        np.array([2.0 * t - 1.0 + shift[s] for s, t in zip(sources, truth, strict=True)])
        + rng.normal(0, 0.7, 1200)
    )
    found = calibration.nested_source_metrics(scores, truth, sources)
    assert set(found) == {"a", "b", "c"}
    assert all(0.7 < values["macc"] <= 1.0 for values in found.values())


def _fitted_on(source: str, scores: np.ndarray, truth: np.ndarray, sources: np.ndarray) -> Calibration:
    """The rule a site gets from one other source's held-out scores."""
    inside = sources == source
    return calibration.fit_calibration(scores[inside], truth[inside], sources[inside], source="x")


def test_the_uncertain_band_holds_back_the_scores_near_the_threshold_and_decides_the_rest() -> None:
    rng = np.random.default_rng(11)
    sources = np.repeat(["a", "b"], 300)
    truth = np.tile(np.arange(300) >= 150, 2)
    scores = calibration.sigmoid(np.where(truth, 1.0, -1.0) + rng.normal(0, 1.2, 600))
    found = calibration.nested_source_metrics(scores, truth, sources, margin=0.1)
    for name, other in (("a", "b"), ("b", "a")):
        # what a site gets: the other source's calibration, and the band around its threshold
        fitted = _fitted_on(other, scores, truth, sources)
        probabilities = fitted.probability(scores[sources == name])
        t = truth[sources == name]
        near = np.abs(probabilities - fitted.threshold) < 0.1
        called = probabilities >= fitted.threshold
        kept_se = np.mean(called[~near & t])
        kept_sp = np.mean(~called[~near & ~t])
        values = found[name]
        assert values["uncertain_share"] == pytest.approx(near.mean())
        assert 0.05 < values["uncertain_share"] < 0.95
        assert values["decided_sensitivity"] == pytest.approx(kept_se)
        assert values["decided_specificity"] == pytest.approx(kept_sp)
        assert values["decided_macc"] == pytest.approx((kept_se + kept_sp) / 2)
        # the recordings held back are the hardest: what is decided is called more rightly
        assert values["decided_macc"] > values["macc"]
    # no band: nothing held back, the decided figures are the overall ones
    for values in calibration.nested_source_metrics(scores, truth, sources, margin=0.0).values():
        assert values["uncertain_share"] == 0.0
        assert values["decided_macc"] == pytest.approx(values["macc"])
    # a band that holds back every recording leaves no decided recording of either class
    wide = calibration.nested_source_metrics(scores, truth, sources, margin=1.0)["a"]
    assert wide["uncertain_share"] == 1.0 and np.isnan(wide["decided_macc"])


def test_the_band_holds_back_the_recordings_the_served_decision_calls_uncertain() -> None:
    rng = np.random.default_rng(14)
    sources = np.repeat(["a", "b"], 200)
    truth = np.tile(np.arange(200) >= 100, 2)
    scores = calibration.sigmoid(np.where(truth, 0.8, -0.8) + rng.normal(0, 1.0, 400))
    found = calibration.nested_source_metrics(scores, truth, sources, margin=0.1)
    for name, other in (("a", "b"), ("b", "a")):
        fitted = _fitted_on(other, scores, truth, sources)
        outcomes = [
            calibration.decide_one(
                float(p), calibration=fitted, classes=("normal", "abnormal"), positive_class="abnormal",
                quality="good",
            ).outcome
            for p in fitted.probability(scores[sources == name])
        ]  # fmt: skip
        held_back = np.mean([outcome == calibration.UNCERTAIN for outcome in outcomes])
        assert 0 < held_back < 1
        assert found[name]["uncertain_share"] == pytest.approx(held_back)
    # on the band's edges both decide: the band is open at its ends
    edge = calibration.Calibration(threshold=0.5, margin=0.25)
    assert not calibration.near_threshold(np.array([0.25, 0.75]), edge).any()
    assert calibration.near_threshold(np.array([0.26, 0.5, 0.74]), edge).all()


def test_the_nested_figures_say_which_source_the_batch_shift_check_warns_of() -> None:
    rng = np.random.default_rng(12)
    sources = np.repeat(["a", "b", "c", "shifted"], 200)
    truth = np.tile(np.arange(200) >= 150, 4)  # a quarter abnormal everywhere
    shift = {"a": 0.0, "b": 0.2, "c": -0.2, "shifted": 3.0}  # a device that adds 3 to the log-odds
    logits = np.array([2.0 * t - 1.0 + shift[s] for s, t in zip(sources, truth, strict=True)])
    scores = calibration.sigmoid(logits + rng.normal(0, 0.8, len(logits)))
    found = calibration.nested_source_metrics(scores, truth, sources)
    assert found["shifted"]["shift_warning"] == 1.0
    assert found["shifted"]["called_positive_share"] > 0.8 and found["shifted"]["shift_distance"] > 0.5
    for name in ("a", "b", "c"):
        assert found[name]["shift_warning"] == 0.0
        assert found[name]["shift_distance"] < 0.5


def test_nested_figures_can_decide_other_scores_with_the_rule_fitted_on_the_scores() -> None:
    rng = np.random.default_rng(13)
    sources = np.repeat(["a", "b", "c"], 300)
    truth = np.tile(np.arange(300) >= 150, 3)
    scores = calibration.sigmoid(np.where(truth, 1.5, -1.5) + rng.normal(0, 1.0, 900))
    lower = calibration.sigmoid(calibration.logit(scores) - 3.0)  # the same ranking, scored lower
    same = calibration.nested_source_metrics(scores, truth, sources, applied=scores)
    assert same == calibration.nested_source_metrics(scores, truth, sources)
    found = calibration.nested_source_metrics(scores, truth, sources, applied=lower)
    for name in ("a", "b", "c"):
        # the rule fitted on the scores calls fewer of the lower ones abnormal
        assert found[name]["sensitivity"] < same[name]["sensitivity"] - 0.3
        assert found[name]["specificity"] >= same[name]["specificity"]


def test_a_calibration_round_trips_through_the_manifest_form() -> None:
    fitted = Calibration(slope=1.5, intercept=-0.2, threshold=0.45, reference_quantiles=(0.1, 0.5, 0.9))
    again = Calibration.from_dict(fitted.to_dict())
    assert again == fitted


def test_a_local_sample_recovers_specificity_on_a_shifted_site() -> None:
    rng = np.random.default_rng(7)
    sources = np.repeat(["home", "other", "shifted"], 300)
    truth = np.tile(np.arange(300) >= 150, 3)
    shift = {"home": 0.0, "other": 0.0, "shifted": 2.5}  # a device that adds 2.5 to every log-odds
    logits = np.array([2.0 * t - 1.0 + shift[s] for s, t in zip(sources, truth, strict=True)])
    scores = calibration.sigmoid(logits + rng.normal(0, 0.8, len(logits)))
    found = calibration.site_sample_simulation(scores, truth, sources, sample=50, draws=10)
    shifted = found["shifted"]
    assert shifted["uncalibrated_specificity"] < 0.3
    assert shifted["specificity"] > 0.6 and shifted["macc"] > shifted["uncalibrated_macc"] + 0.15
