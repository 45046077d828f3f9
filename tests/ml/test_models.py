"""Model pieces that behave differently in training and at inference."""

from __future__ import annotations

import numpy as np
import pytest

from ml.training import TrainSettings


def test_mixstyle_is_the_identity_at_inference_and_mixes_in_training() -> None:
    from ml.models import MixStyle

    layer = MixStyle(probability=1.0, seed=1)
    windows = np.random.default_rng(0).standard_normal((8, 40, 6)).astype("float32") * np.arange(1, 9)[
        :, None, None
    ].astype("float32")
    assert np.array_equal(np.asarray(layer(windows, training=False)), windows)
    mixed = np.asarray(layer(windows, training=True))
    assert mixed.shape == windows.shape
    assert not np.allclose(mixed, windows)
    # the shape over time is kept: each window's channels are only shifted and scaled
    correlation = np.corrcoef(mixed[0, :, 0], windows[0, :, 0])[0, 1]
    assert correlation == pytest.approx(1.0, abs=1e-4)


def test_mixstyle_appears_in_the_model_config_only_when_used() -> None:
    plain = TrainSettings().model_config(input_shape=(160, 24), num_classes=2)
    assert "mixstyle" not in plain
    assert TrainSettings(mixstyle=True).model_config(input_shape=(160, 24), num_classes=2)["mixstyle"]
