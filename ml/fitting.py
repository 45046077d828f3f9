"""Keras pieces of training: the epoch's windows as a dataset, the validation score as a callback.

``ml.training`` builds them and hands them to one ``fit()`` call with
``keras.callbacks.EarlyStopping``. Imports Keras.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

# One epoch's training windows ``(n, frames, features)`` and, for each, the index
# of the recording it came from.
Draw = tuple[np.ndarray, np.ndarray]

log = logging.getLogger(__name__)


# Keras ships no type information: its base classes are untyped to mypy.
class EpochWindows(keras.utils.PyDataset):  # type: ignore[misc]
    """Training windows for ``fit()``, drawn afresh at the start of every epoch.

    ``draw()`` returns one epoch's windows and their recordings (augmented
    afresh, or new windows chosen from features computed once); targets and
    sample weights are looked up by recording. The first draw, made here, serves
    the first epoch. An epoch's windows are shuffled with ``rng`` and split into
    as many batches as the first draw filled at ``batch_size``: Keras reads the
    number of batches once per ``fit()``, and an augmented draw can hold a few
    windows more or fewer, so its batches are a window larger or smaller instead.
    """

    def __init__(
        self,
        draw: Callable[[], Draw],
        *,
        targets: np.ndarray | dict[str, np.ndarray],
        weights: np.ndarray,
        batch_size: int,
        rng: np.random.Generator,
    ) -> None:
        super().__init__()
        self._draw = draw
        self._targets = targets
        self._weights = np.asarray(weights, dtype=np.float32)
        self._rng = rng
        self.windows, self.owners = draw()
        self.draws = 1
        self._num_batches = max(1, math.ceil(len(self.owners) / batch_size))
        self._batches = self._shuffled_batches()
        self._first_epoch = True

    def __len__(self) -> int:
        return self._num_batches

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any, np.ndarray]:
        rows = self._batches[index]
        owners = self.owners[rows]
        if isinstance(self._targets, dict):
            targets: Any = {name: values[owners] for name, values in self._targets.items()}
        else:
            targets = self._targets[owners]
        return self.windows[rows], targets, self._weights[owners]

    def on_epoch_begin(self) -> None:
        """Draw this epoch's windows (the first epoch has the draw made at construction).

        At the start rather than the end of an epoch: ``fit()`` also ends an
        epoch once before the first, and a draw there would be thrown away.
        """
        if self._first_epoch:
            self._first_epoch = False
            return
        self.windows, self.owners = self._draw()
        self.draws += 1
        self._batches = self._shuffled_batches()

    def _shuffled_batches(self) -> list[np.ndarray]:
        if len(self.owners) < self._num_batches:
            raise ValueError(f"a draw of {len(self.owners)} windows cannot fill {self._num_batches} batches")
        return np.array_split(self._rng.permutation(len(self.owners)), self._num_batches)


# Keras ships no type information: its base classes are untyped to mypy.
class RecordingScore(keras.callbacks.Callback):  # type: ignore[misc]
    """After every epoch, score the validation recordings and put the result into the logs.

    ``score()`` returns (score to maximise, recording-level loss, accuracy); they
    go into the logs as ``val_score``, ``val_loss`` and ``val_accuracy``, where
    ``EarlyStopping`` and the returned history read them, so this callback must
    come before ``EarlyStopping`` in the list. ``loss_key`` names the training
    loss in the epoch's log line.
    """

    def __init__(self, score: Callable[[], tuple[float, float, float]], *, loss_key: str = "loss") -> None:
        super().__init__()
        self._score = score
        self._loss_key = loss_key

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        score, loss, accuracy = self._score()
        logs = {} if logs is None else logs
        logs.update(val_score=score, val_loss=loss, val_accuracy=accuracy)
        log.info("epoch %d loss %.3f val score %.3f", epoch + 1, logs.get(self._loss_key, math.nan), score)
