"""Figures drawn from arrays: the waveform envelope, and PNG images of each figure."""

from __future__ import annotations

import numpy as np

from ml.plots import (
    HeartSounds,
    Overview,
    Window,
    draw_curves,
    draw_overview,
    draw_roc,
    draw_spectrogram,
    waveform_envelope,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RATE = 2000


def test_it_draws_the_waveform_to_the_recordings_end() -> None:
    samples = np.zeros(59259)
    samples[-3] = 1.0  # a click in the last samples: a column must still show it
    starts, low, high = waveform_envelope(samples, columns=2200)
    assert len(starts) == 2200 and starts[0] == 0
    assert (len(samples) - starts[-1]) <= len(samples) // 2200 + 1
    assert high[-1] == 1.0 and low.min() == 0.0


def _png_size(image: bytes) -> tuple[int, int]:
    assert image.startswith(PNG_SIGNATURE)
    return int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big")


def test_it_draws_each_figure_as_a_png_of_its_size() -> None:
    times = np.arange(4 * RATE) / RATE
    samples = np.sin(2 * np.pi * 60 * times) * (times % 0.8 < 0.1)
    overview = draw_overview(
        samples,
        Overview(
            sample_rate=RATE,
            duration_s=4.0,
            band_hz=(25.0, 400.0),
            heart_sounds=HeartSounds(s1_s=[0.0, 0.8], s2_s=[0.3]),
            windows=[Window(0.0, 2.0, {"abnormal": 0.7}), Window(1.0, 3.0, {"abnormal": 0.4})],
            shown=["abnormal"],
            threshold=0.5,
        ),
    )
    spectrogram = draw_spectrogram(samples, sample_rate=RATE, duration_s=4.0)
    roc = draw_roc([[0.0, 0.0, None], [0.2, 0.9, 0.5], [1.0, 1.0, 0.01]], chosen=(0.2, 0.9), title="ROC")

    # 11 inches at 100 dpi, and the heights the figures are made with.
    assert _png_size(overview) == (1100, 440)
    assert _png_size(spectrogram) == (1100, 300)
    assert _png_size(roc) == (480, 440)


def test_it_draws_the_learning_curves_as_a_png() -> None:
    history = {
        "loss": [0.9, 0.6, 0.5],
        "val_loss": [1.0, 0.8, 0.7],
        "accuracy": [0.5, 0.7, 0.8],
        "val_accuracy": [0.4, 0.6, 0.7],
    }

    curves = draw_curves(history)

    # 9 by 3.5 inches at 80 dpi: a small figure in a model's bundle.
    assert _png_size(curves) == (720, 280)
