"""The crude floor every screening recipe must beat: whole-recording MFCC statistics
and gradient boosting.

Thirteen MFCCs of the band-passed recording, their means and spreads and the
spread of their deltas (39 numbers per recording), into scikit-learn's
histogram gradient boosting with default settings. No segmentation, no
normalisation against the device: what a first attempt would do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml.features import FeatureConfig, deltas, log_mel, mfcc

FLOOR_FEATURES = FeatureConfig(n_mels=24, recording_mean_norm=False)
FLOOR_MFCC = 13


def mfcc_statistics(recordings: Sequence[np.ndarray]) -> np.ndarray:
    """``(recordings, 39)``: MFCC means, MFCC spreads and delta spreads of each recording."""
    rows = []
    for samples in recordings:
        coefficients = mfcc(log_mel(samples, config=FLOOR_FEATURES), n_mfcc=FLOOR_MFCC)
        rows.append(
            np.concatenate(
                [coefficients.mean(axis=0), coefficients.std(axis=0), deltas(coefficients).std(axis=0)]
            )
        )
    return np.array(rows, dtype=np.float32).reshape(-1, 3 * FLOOR_MFCC)


def floor_scores(
    train_features: np.ndarray, train_positive: np.ndarray, test_features: np.ndarray, *, seed: int
) -> np.ndarray:
    """P(positive) of the test rows from gradient boosting fitted on the training rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(random_state=seed)
    model.fit(train_features, train_positive)
    return np.asarray(model.predict_proba(test_features)[:, 1])
