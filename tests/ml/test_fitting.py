"""The epoch dataset and the validation-score callback inside a real ``fit()`` (Keras)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from ml.fitting import Draw, EpochWindows, RecordingScore

RECORDINGS = 10
WINDOW_SHAPE = (3, 2)


class RecordedDraws:
    """Draws whose windows hold (draw number, row): what a batch came from can be read back."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = iter(sizes)
        self.count = 0

    def __call__(self) -> Draw:
        self.count += 1
        size = next(self.sizes)
        windows = np.zeros((size, *WINDOW_SHAPE), dtype=np.float32)
        windows[:, 0, 0] = self.count
        windows[:, 0, 1] = np.arange(size)
        return windows, np.arange(size) % RECORDINGS


class ServedBatches(EpochWindows):
    """Keeps every batch ``fit()`` asked for."""

    served: list[tuple[np.ndarray, Any, np.ndarray]]

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any, np.ndarray]:
        batch = super().__getitem__(index)
        self.served.append(batch)
        return batch


class EpochEnds(keras.callbacks.Callback):
    """How many batches had been served when each epoch ended."""

    def __init__(self, dataset: ServedBatches) -> None:
        super().__init__()
        self.dataset = dataset
        self.served_at_end: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.served_at_end.append(len(self.dataset.served))


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(WINDOW_SHAPE)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_it_serves_every_window_of_a_fresh_draw_once_per_epoch() -> None:
    sizes = [40, 43, 38]  # augmented draws differ by a few windows
    draws = RecordedDraws(sizes)
    truth = np.arange(RECORDINGS) % 2
    weights = np.linspace(0.5, 1.5, RECORDINGS)
    dataset = ServedBatches(draws, targets=truth, weights=weights, batch_size=8, rng=np.random.default_rng(0))
    dataset.served = []
    ends = EpochEnds(dataset)
    _tiny_model().fit(dataset, epochs=3, callbacks=[ends], shuffle=False, verbose=0)
    assert draws.count == 3  # one draw per epoch, the first made before fit
    assert len(dataset) == 5  # 40 windows at 8 per batch, kept for every epoch
    probes = len(dataset.served) - 3 * len(dataset)  # batches Keras reads for the input signature
    assert 0 < probes <= 2
    starts = [probes, *ends.served_at_end[:-1]]
    assert [end - start for start, end in zip(starts, ends.served_at_end, strict=True)] == [5, 5, 5]
    for epoch, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        batches = dataset.served[start : start + len(dataset)]
        windows = np.concatenate([x for x, _, _ in batches])
        assert set(windows[:, 0, 0].tolist()) == {epoch + 1}  # only this epoch's draw
        rows = windows[:, 0, 1].astype(int)
        assert sorted(rows.tolist()) == list(range(size))  # each window once
        assert not np.array_equal(rows, np.sort(rows))  # shuffled
        owners = rows % RECORDINGS
        assert np.array_equal(np.concatenate([y for _, y, _ in batches]), truth[owners])
        assert np.allclose(np.concatenate([w for _, _, w in batches]), weights[owners])


def test_it_looks_up_every_output_of_a_dict_of_targets() -> None:
    draws = RecordedDraws([12])
    targets = {"probabilities": np.arange(RECORDINGS) % 2, "site": np.arange(RECORDINGS) // 5}
    dataset = EpochWindows(
        draws, targets=targets, weights=np.ones(RECORDINGS), batch_size=4, rng=np.random.default_rng(1)
    )
    windows, batch_targets, batch_weights = dataset[0]
    owners = windows[:, 0, 1].astype(int) % RECORDINGS
    assert set(batch_targets) == {"probabilities", "site"}
    assert np.array_equal(batch_targets["site"], targets["site"][owners])
    assert batch_weights.dtype == np.float32


def test_it_refuses_a_draw_too_small_for_the_epochs_batches() -> None:
    dataset = EpochWindows(
        RecordedDraws([16, 2]), targets=np.zeros(RECORDINGS, dtype=int), weights=np.ones(RECORDINGS),
        batch_size=4, rng=np.random.default_rng(2),
    )  # fmt: skip
    dataset.on_epoch_begin()  # the first epoch: the draw made at construction
    with pytest.raises(ValueError, match="2 windows cannot fill 4 batches"):
        dataset.on_epoch_begin()


def test_it_puts_the_validation_score_into_the_logs_before_early_stopping_reads_them() -> None:
    scores = iter([0.2, 0.6, 0.4, 0.5, 0.3])
    score = RecordingScore(lambda: (next(scores), 0.1, 0.9))
    stopping = keras.callbacks.EarlyStopping(monitor="val_score", mode="max", patience=2)
    dataset = EpochWindows(
        RecordedDraws([20] * 5), targets=np.zeros(RECORDINGS, dtype=int), weights=np.ones(RECORDINGS),
        batch_size=10, rng=np.random.default_rng(3),
    )  # fmt: skip
    history = _tiny_model().fit(dataset, epochs=5, callbacks=[score, stopping], shuffle=False, verbose=0)
    assert history.history["val_score"] == [0.2, 0.6, 0.4, 0.5]
    assert history.history["val_accuracy"] == [0.9] * 4
    assert stopping.best_epoch == 1
