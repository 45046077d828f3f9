"""Keras model factories: SimpleRNN, LSTM, GRU and CNN+RNN hybrids for window sequences.

Every model maps one window of feature frames ``(frames, features)`` to class
probabilities; recordings are classified by aggregating their windows (see
``ml.scoring``). Imports TensorFlow/Keras.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

ARCHITECTURES = ("simplernn", "lstm", "gru", "cnn_lstm", "cnn_gru")
DEFAULT_UNITS = 32
DEFAULT_CONV_FILTERS = (24, 32)
CONV_KERNELS = (5, 3)
CONV_STRIDE = 2
DEFAULT_DROPOUT = 0.2
STANDARDIZATION_EPSILON = 1e-3
MIXSTYLE_PROBABILITY = 0.5
MIXSTYLE_ALPHA = 0.1
MIXSTYLE_EPSILON = 1e-6
SITE_HEAD_UNITS = 32


@keras.saving.register_keras_serializable(package="lubdub")
class AttentionPooling(layers.Layer):
    """Weighted mean over time with learned, softmax-normalised frame scores."""

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.score = layers.Dense(1, activation="tanh", name="score")
        self.score.build(input_shape)

    def call(self, inputs: Any) -> Any:
        weights = keras.ops.softmax(self.score(inputs), axis=1)
        return keras.ops.sum(inputs * weights, axis=1)


@keras.saving.register_keras_serializable(package="lubdub")
class WindowStandardization(layers.Layer):
    """Scale each window's features to zero mean and unit variance over time, per feature.

    Removes what is constant within a window (gain, channel response, noise
    floor level), leaving the shape of the heart cycle.
    """

    def call(self, inputs: Any) -> Any:
        mean = keras.ops.mean(inputs, axis=1, keepdims=True)
        spread = keras.ops.std(inputs, axis=1, keepdims=True)
        return (inputs - mean) / (spread + STANDARDIZATION_EPSILON)


@keras.saving.register_keras_serializable(package="lubdub")
class MixStyle(layers.Layer):
    """While training, mix each window's per-channel statistics with another window's.

    Every channel's mean and spread over time (what a device, a site's noise and
    the gain change) are replaced, with probability ``probability`` per batch,
    by a random convex mix (weight ~ Beta(alpha, alpha)) of its own and those of
    a random other window of the batch (Zhou et al., ICLR 2021). Identity at
    inference.
    """

    def __init__(
        self,
        probability: float = MIXSTYLE_PROBABILITY,
        alpha: float = MIXSTYLE_ALPHA,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.probability = probability
        self.alpha = alpha
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training:
            return inputs
        ops = keras.ops
        mean = ops.stop_gradient(ops.mean(inputs, axis=1, keepdims=True))
        spread = ops.stop_gradient(ops.sqrt(ops.var(inputs, axis=1, keepdims=True) + MIXSTYLE_EPSILON))
        normalised = (inputs - mean) / spread
        batch = ops.shape(inputs)[0]
        order = keras.random.shuffle(ops.arange(batch), seed=self.seed_generator)
        first = keras.random.gamma((batch, 1, 1), self.alpha, seed=self.seed_generator)
        second = keras.random.gamma((batch, 1, 1), self.alpha, seed=self.seed_generator)
        weight = first / (first + second + MIXSTYLE_EPSILON)
        mixed_mean = weight * mean + (1 - weight) * ops.take(mean, order, axis=0)
        mixed_spread = weight * spread + (1 - weight) * ops.take(spread, order, axis=0)
        apply = keras.random.uniform((), seed=self.seed_generator) < self.probability
        return ops.where(apply, normalised * mixed_spread + mixed_mean, inputs)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "probability": self.probability,
            "alpha": self.alpha,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="lubdub")
class GradientReversal(layers.Layer):
    """The identity going forward; multiplies gradients by ``-strength`` going back.

    Put in front of a source-site classifier, it trains the layers below to make
    the site harder to tell (Ganin & Lempitsky, ICML 2015): whatever tells one
    site's device from another's is pushed out of the features.
    """

    def __init__(self, strength: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strength = strength

    def call(self, inputs: Any) -> Any:
        # forward: -s*x + (1+s)*x = x; backward: only the first term has a gradient
        flipped = -self.strength * inputs
        return flipped + keras.ops.stop_gradient(inputs - flipped)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "strength": self.strength}


def with_site_adversary(model: keras.Model, *, num_sites: int, strength: float) -> keras.Model:
    """A training model with two outputs: ``model``'s probabilities and a site guess.

    The site head reads the features ``model``'s classifier reads, through a
    ``GradientReversal``; both share every layer with ``model``, so training this
    one trains ``model``, which alone is saved and served.
    """
    features = model.get_layer("probabilities").input
    hidden = GradientReversal(strength, name="reverse_gradient")(features)
    hidden = layers.Dense(SITE_HEAD_UNITS, activation="relu", name="site_hidden")(hidden)
    site = layers.Dense(num_sites, activation="softmax", name="site")(hidden)
    return keras.Model(
        model.inputs, {"probabilities": model.outputs[0], "site": site}, name="site_adversarial"
    )


@keras.saving.register_keras_serializable(package="lubdub")
class SourceMean(layers.Layer):
    """The mean over sources of per-source logits ``(batch, sources, classes)``."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.mean(inputs, axis=1)


def source_heads_trainer(model: keras.Model) -> keras.Model:
    """The training model of a ``build_model(source_heads=...)`` model: every head's
    probabilities ``(batch, sources, classes)``, sharing all layers with ``model``."""
    per_source = layers.Softmax(axis=-1, name="source_probabilities")(
        model.get_layer("per_source_logits").output
    )
    return keras.Model(model.inputs, per_source, name="source_heads")


def source_head_count(model: keras.Model) -> int:
    """How many source heads ``model`` has (0: one classifier)."""
    names = {layer.name for layer in model.layers}
    return int(model.get_layer("per_source_logits").output.shape[1]) if "per_source_logits" in names else 0


def own_source_loss(targets: Any, probabilities: Any) -> Any:
    """Cross-entropy of each window at its own source's head, for ``source_heads_trainer``'s
    model: ``targets`` ``(batch, sources)`` hold the class there and a negative number
    (``ml.training.IGNORED``) at the other heads, which add nothing."""
    own = keras.ops.cast(targets >= 0, probabilities.dtype)
    losses = keras.losses.sparse_categorical_crossentropy(keras.ops.maximum(targets, 0), probabilities)
    return keras.ops.sum(losses * own, axis=1)


def own_source_accuracy(targets: Any, probabilities: Any) -> Any:
    """Whether each window's own source's head gives its class the highest probability."""
    own = keras.ops.cast(targets >= 0, probabilities.dtype)
    guessed = keras.ops.cast(keras.ops.argmax(probabilities, axis=-1), targets.dtype)
    return keras.ops.sum(keras.ops.cast(guessed == targets, probabilities.dtype) * own, axis=1)


def build_model(
    *,
    architecture: str,
    input_shape: tuple[int, int],
    num_classes: int,
    units: int = DEFAULT_UNITS,
    conv_filters: tuple[int, ...] | list[int] = DEFAULT_CONV_FILTERS,
    bidirectional: bool = False,
    attention: bool = False,
    dropout: float = DEFAULT_DROPOUT,
    standardize_windows: bool = False,
    mixstyle: bool = False,
    normalize_inputs: bool = False,
    input_noise: float = 0.0,
    members: int = 1,
    source_heads: int = 0,
) -> keras.Model:
    """Build an uncompiled classifier for windows of ``input_shape`` = (frames, features).

    ``architecture`` is one of ``ARCHITECTURES``. ``cnn_*`` variants put strided
    1-D convolutions (stride 2 each, so 4x fewer steps with two layers) in front
    of the recurrent layer. ``attention`` replaces the last-state readout with
    attention pooling over the recurrent outputs. ``standardize_windows`` puts
    a per-window, per-feature standardisation in front of everything.
    ``mixstyle`` mixes window statistics between training windows after the
    first convolution (``cnn_*``) or on the input (see ``MixStyle``).
    ``normalize_inputs`` scales each feature by the training set's mean and
    variance (a ``Normalization`` layer named ``normalize``, adapted before
    training and saved with the weights); ``input_noise`` adds Gaussian noise of
    that standard deviation to the normalised features during training only.
    ``members`` > 1 builds that many such networks side by side (``member_0``, ...)
    and averages their probabilities: an ensemble of separately trained seeds.
    ``source_heads`` > 1 gives the readout one classifier head per training source
    (layer ``per_source_logits``, trained through ``source_heads_trainer``) and
    serves the mean of their logits: "abnormal" means a murmur at one source and
    coronary disease at another, and separate heads let the shared features serve
    each meaning without forcing one rule on all; a new site's labels mean none of
    them in particular.
    """
    if members > 1:
        return _ensemble(
            members,
            architecture=architecture, input_shape=input_shape, num_classes=num_classes, units=units,
            conv_filters=conv_filters, bidirectional=bidirectional, attention=attention, dropout=dropout,
            standardize_windows=standardize_windows, mixstyle=mixstyle, normalize_inputs=normalize_inputs,
            input_noise=input_noise, source_heads=source_heads,
        )  # fmt: skip
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {architecture!r}")
    inputs = keras.Input(shape=input_shape, name="windows")
    hidden = WindowStandardization(name="standardize")(inputs) if standardize_windows else inputs
    if normalize_inputs:
        hidden = layers.Normalization(axis=-1, name="normalize")(hidden)
    if input_noise > 0:
        hidden = layers.GaussianNoise(input_noise, name="input_noise")(hidden)
    if architecture.startswith("cnn_"):
        hidden = _conv_front_end(hidden, filters=tuple(conv_filters), dropout=dropout, mixstyle=mixstyle)
    elif mixstyle:
        hidden = MixStyle(name="mixstyle")(hidden)
    hidden = _recurrent(
        hidden,
        kind=architecture.removeprefix("cnn_"),
        units=units,
        bidirectional=bidirectional,
        return_sequences=attention,
    )
    if attention:
        hidden = AttentionPooling(name="attention")(hidden)
    hidden = layers.Dropout(dropout)(hidden)
    if source_heads > 1:
        logits = layers.Dense(source_heads * num_classes, name="source_logits")(hidden)
        logits = layers.Reshape((source_heads, num_classes), name="per_source_logits")(logits)
        outputs = layers.Softmax(axis=-1, name="probabilities")(SourceMean(name="pooled_logits")(logits))
        return keras.Model(inputs, outputs, name=architecture)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(hidden)
    return keras.Model(inputs, outputs, name=architecture)


def _ensemble(members: int, **settings: Any) -> keras.Model:
    inputs = keras.Input(shape=settings["input_shape"], name="windows")
    outputs = []
    for index in range(members):
        member = build_model(**settings)
        member.name = f"member_{index}"
        outputs.append(member(inputs))
    return keras.Model(inputs, layers.Average(name="probabilities")(outputs), name="ensemble")


def _conv_front_end(hidden: Any, *, filters: tuple[int, ...], dropout: float, mixstyle: bool = False) -> Any:
    for index, count in enumerate(filters):
        kernel = CONV_KERNELS[min(index, len(CONV_KERNELS) - 1)]
        hidden = layers.Conv1D(count, kernel, strides=CONV_STRIDE, padding="same", use_bias=False)(hidden)
        hidden = layers.BatchNormalization()(hidden)
        hidden = layers.ReLU()(hidden)
        if mixstyle and index == 0:
            hidden = MixStyle(name="mixstyle")(hidden)
    return layers.SpatialDropout1D(dropout)(hidden)


def _recurrent(hidden: Any, *, kind: str, units: int, bidirectional: bool, return_sequences: bool) -> Any:
    layer_types = {"simplernn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
    recurrent = layer_types[kind](units, return_sequences=return_sequences)
    if bidirectional:
        recurrent = layers.Bidirectional(recurrent)
    return recurrent(hidden)
