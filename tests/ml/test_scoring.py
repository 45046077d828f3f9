"""Aggregation and screening metrics with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from ml.scoring import aggregate_windows, best_threshold, roc_auc, screening_metrics

CLASSES = ("normal", "abnormal")


def test_it_averages_windows_per_recording() -> None:
    windows = np.array([[0.2, 0.8], [0.4, 0.6], [1.0, 0.0]])
    result = aggregate_windows(windows, np.array([0, 0, 1]), num_recordings=2)
    assert np.allclose(result, [[0.3, 0.7], [1.0, 0.0]])


def test_it_computes_screening_metrics() -> None:
    truth = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.6, 0.9])
    probabilities = np.stack([1 - scores, scores], axis=1)
    metrics = screening_metrics(
        truth, probabilities, classes=CLASSES, positive_class="abnormal", threshold=0.5
    )
    assert metrics["sensitivity"] == 1.0
    assert metrics["specificity"] == 0.75
    assert metrics["macc"] == pytest.approx(0.875)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(0.8)
    assert metrics["roc_auc"] == pytest.approx(7 / 8)
    assert metrics["confusion_matrix"] == [[3, 1], [0, 2]]


def test_it_scores_ties_as_half_in_roc_auc() -> None:
    assert roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([True, True]), np.array([0.5, 0.6])) is None


def test_it_reports_macro_recall_for_many_classes() -> None:
    truth = np.array([0, 1, 2, 2])
    probabilities = np.eye(3)[[0, 2, 2, 1]]
    metrics = screening_metrics(
        truth, probabilities, classes=("a", "b", "c"), positive_class=None, threshold=0.5
    )
    assert metrics["macro_recall"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert "macc" not in metrics


def test_it_picks_the_threshold_with_best_macc() -> None:
    truth = np.array([False, False, True, True])
    threshold = best_threshold(truth, np.array([0.1, 0.3, 0.35, 0.9]), low=0.2, high=0.8)
    assert 0.3 < threshold <= 0.35


def test_it_takes_the_declared_positive_class_of_a_two_class_model_only() -> None:
    from ml.scoring import positive_class

    assert positive_class(CLASSES, "abnormal") == "abnormal"
    assert positive_class(CLASSES, None) is None
    assert positive_class(CLASSES, "murmur") is None
    assert positive_class(("a", "b", "c"), "a") is None


def test_it_grades_the_declared_class_else_abnormal_else_the_second() -> None:
    from ml.scoring import graded_class

    assert graded_class(("abnormal", "normal"), "normal") == "normal"
    assert graded_class(("abnormal", "normal"), None) == "abnormal"
    assert graded_class(("absent", "present"), None) == "present"
    assert graded_class(("a", "b", "c"), "a") is None


def test_it_grades_metrics_on_abnormal_when_it_comes_first_and_none_is_declared() -> None:
    truth = np.array([0, 0, 0, 1])  # three abnormal, one normal
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])
    metrics = screening_metrics(
        truth, probabilities, classes=("abnormal", "normal"), positive_class=None, threshold=0.5
    )
    assert metrics["sensitivity"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == 1.0


def test_it_computes_rates_from_counts_and_leaves_an_empty_class_out() -> None:
    from ml.scoring import binary_rates

    rates = binary_rates(tp=9, fn=1, tn=6, fp=2)
    assert (rates.sensitivity, rates.specificity) == (0.9, 0.75)
    assert rates.macc == pytest.approx(0.825)
    empty = binary_rates(tp=0, fn=0, tn=3, fp=1)
    assert empty.sensitivity is None and empty.specificity == 0.75 and empty.macc is None


def test_it_sweeps_rates_over_thresholds_calling_a_score_at_the_threshold_positive() -> None:
    from ml.scoring import rates_at

    scores = np.array([0.2, 0.4, 0.6, 0.8])
    truth = np.array([False, True, False, True])
    sensitivity, specificity = rates_at(scores, truth, np.array([0.0, 0.4, 0.7, 0.9]))
    assert sensitivity.tolist() == [1.0, 1.0, 0.5, 0.0]
    assert specificity.tolist() == [0.0, 0.5, 1.0, 1.0]
