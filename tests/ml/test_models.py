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


def test_gradient_reversal_passes_values_forward_and_flips_gradients_back() -> None:
    import tensorflow as tf

    from ml.models import GradientReversal

    values = tf.constant(np.random.default_rng(1).standard_normal((4, 6)).astype("float32"))
    layer = GradientReversal(strength=0.3)
    with tf.GradientTape() as tape:
        tape.watch(values)
        out = layer(values)
        loss = tf.reduce_sum(out * out)
    assert np.allclose(np.asarray(out), np.asarray(values), atol=1e-6)
    # d(sum x^2)/dx = 2x, reversed and scaled by the strength
    assert np.allclose(np.asarray(tape.gradient(loss, values)), -0.3 * 2 * np.asarray(values), atol=1e-5)


def test_the_site_adversary_shares_the_served_model_and_adds_only_a_site_head() -> None:
    from ml.models import build_model, with_site_adversary

    model = build_model(architecture="gru", input_shape=(20, 4), num_classes=2, units=8)
    trainer = with_site_adversary(model, num_sites=3, strength=0.5)
    windows = np.random.default_rng(2).standard_normal((5, 20, 4)).astype("float32")
    outputs = trainer(windows)
    assert np.allclose(np.asarray(outputs["probabilities"]), np.asarray(model(windows)), atol=1e-6)
    assert np.asarray(outputs["site"]).shape == (5, 3)
    assert not any(layer.name.startswith("site") for layer in model.layers)
    before = [weight.copy() for weight in model.get_weights()]
    trainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    trainer.fit(
        windows, {"probabilities": np.array([0, 1, 0, 1, 0]), "site": np.array([0, 1, 2, 0, 1])}, verbose=0
    )
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_source_heads_train_each_window_on_its_own_source_and_serve_the_mean_logit() -> None:
    import keras

    from ml.models import build_model, own_source_loss, source_heads_trainer
    from ml.training import source_head_targets

    model = build_model(architecture="gru", input_shape=(8, 5), num_classes=2, units=4, source_heads=3)
    trainer = source_heads_trainer(model)
    windows = np.random.default_rng(0).standard_normal((6, 8, 5)).astype(np.float32)
    sources, truth = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 1, 0, 0, 1])
    targets = source_head_targets(truth, sources, 3)
    assert targets.tolist()[1] == [-1, 1, -1]
    heads = keras.ops.convert_to_numpy(trainer(windows))  # (windows, sources, classes)
    loss = np.asarray(
        own_source_loss(keras.ops.convert_to_tensor(targets), keras.ops.convert_to_tensor(heads))
    )
    np.testing.assert_allclose(loss, -np.log(heads[np.arange(6), sources, truth]), rtol=1e-5)
    # another source's head may say anything: it adds nothing to the window's loss
    others = heads.copy()
    others[np.arange(6), (sources + 1) % 3] = [0.999, 0.001]
    np.testing.assert_allclose(
        np.asarray(
            own_source_loss(keras.ops.convert_to_tensor(targets), keras.ops.convert_to_tensor(others))
        ),
        loss,
        rtol=1e-5,
    )
    logits = np.log(heads)  # softmax of the mean logit == normalised geometric mean of the heads
    mean = np.exp(logits.mean(axis=1))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(windows)), mean / mean.sum(axis=1, keepdims=True), atol=1e-5
    )


def test_source_heads_appear_in_the_model_config_only_with_several_sources() -> None:
    settings = TrainSettings(source_heads=True)
    assert settings.model_config(input_shape=(8, 5), num_classes=2, num_sources=4)["source_heads"] == 4
    assert "source_heads" not in settings.model_config(input_shape=(8, 5), num_classes=2, num_sources=1)
    assert "source_heads" not in TrainSettings().model_config(
        input_shape=(8, 5), num_classes=2, num_sources=4
    )
