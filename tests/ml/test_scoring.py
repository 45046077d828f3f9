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
