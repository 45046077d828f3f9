"""Zero-phase Butterworth filtering for the serving path, without importing ``scipy.signal``.

``scipy.signal`` takes about a second to import (it builds its array-API
wrappers and parses docstrings at import time), more than ``python -m ml
predict`` then spends on a thousand recordings. The filters the shipped bundles
use are therefore stored here as their second-order sections and steady-state
initial conditions (tests check them against ``scipy.signal.butter`` and
``sosfilt_zi``), and the filtering itself is a compiled loop with the same
arithmetic as ``scipy.signal.sosfiltfilt``. Any other design is computed by
``scipy.signal`` on first use.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

Design = tuple[np.ndarray, np.ndarray]  # (sections (n, 6), initial conditions (n, 2))

# (order, low Hz or None, high Hz or None, sample rate Hz) -> (sos, sosfilt_zi).
_STORED: dict[tuple[int, float | None, float, int], tuple[list[list[float]], list[list[float]]]] = {
    # The 25-400 Hz heart-sound band-pass at 2 kHz (every decoded recording).
    (4, 25.0, 400.0, 2000): (
        [
            [
                0.03797304141947672,
                0.07594608283895345,
                0.03797304141947672,
                1.0,
                -0.43097580620259096,
                0.09241225285118017,
            ],
            [1.0, 2.0, 1.0, 1.0, -0.48298360428383813, 0.5047338773310683],
            [1.0, -2.0, 1.0, 1.0, -1.8480081559656902, 0.8549577693610224],
            [1.0, -2.0, 1.0, 1.0, -1.940065113971644, 0.9462258657927409],
        ],
        [
            [0.19166680749953033, 0.016751505636466633],
            [0.6693659256882762, -0.2241188214415474],
            [-0.8990057746072725, 0.899005774607274],
            [-0.0, 0.0],
        ],
    ),
    # The homomorphic envelope's 8 Hz low-pass on 50 frames/s (segmentation).
    (1, None, 8.0, 50): (
        [[0.35473657163404176, 0.35473657163404176, 0.0, 1.0, -0.2905268567319164, 0.0]],
        [[0.6452634283659581, 0.0]],
    ),
}


@functools.lru_cache(maxsize=32)
def butterworth(order: int, low_hz: float | None, high_hz: float, sample_rate: int) -> Design:
    """Second-order sections and ``sosfilt_zi`` of a digital Butterworth filter.

    ``low_hz`` and ``high_hz`` give a band-pass; ``low_hz=None`` a low-pass. The
    arrays are read-only (they are cached and shared).
    """
    key = (order, None if low_hz is None else float(low_hz), float(high_hz), sample_rate)
    stored = _STORED.get(key)
    if stored is not None:
        sos, initial = (np.array(part, dtype=np.float64) for part in stored)
    else:
        from scipy import signal  # only for designs the shipped bundles do not use

        if low_hz is None:
            sos = signal.butter(order, high_hz, btype="lowpass", fs=sample_rate, output="sos")
        else:
            sos = signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
        sos = np.asarray(sos, dtype=np.float64)
        initial = np.asarray(signal.sosfilt_zi(sos), dtype=np.float64)
    sos.setflags(write=False)
    initial.setflags(write=False)
    return sos, initial


def pad_length(sos: np.ndarray) -> int:
    """Samples of odd extension at each end, as ``scipy.signal.sosfiltfilt`` chooses them."""
    taps = 2 * len(sos) + 1
    taps -= min(int(np.sum(sos[:, 2] == 0)), int(np.sum(sos[:, 5] == 0)))
    return 3 * taps


def filtfilt(samples: np.ndarray, design: Design) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(sos, samples)`` (odd extension, steady-state start), float64.

    A signal shorter than scipy's padding is padded by its length less one instead
    of refused, as the band-pass always did.
    """
    sos, initial = design
    x = np.ascontiguousarray(samples, dtype=np.float64)
    if len(x) < 2:
        return x.copy()
    pad = min(pad_length(sos), len(x) - 1)
    return _compiled()(x, sos, initial, pad)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1)
def _compiled() -> Any:
    # Compiled on first use, so that importing ml.audio (the web process checks
    # uploads with it) does not load numba and LLVM.
    from numba import njit

    return njit(cache=True)(_filtfilt_loop)


def _filtfilt_loop(x, sos, initial, pad):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # Odd extension, then direct form II transposed forward and backward, one
    # section after the other for each sample: the arithmetic of
    # scipy.signal.sosfiltfilt, each pass starting from zi = initial * first sample.
    n = x.shape[0]
    extended = np.empty(n + 2 * pad)
    for i in range(pad):
        extended[i] = 2.0 * x[0] - x[pad - i]
        extended[n + pad + i] = 2.0 * x[n - 1] - x[n - 2 - i]
    extended[pad : pad + n] = x
    sections = sos.shape[0]
    if sections <= 4:
        # Up to four sections (every stored design) with their coefficients and
        # states in registers: the sections then overlap from one sample to the
        # next instead of waiting on memory. Missing sections pass samples
        # through unchanged (y = 1 * v + 0, states 0), so the values are the same.
        c = np.zeros((4, 6))
        zi = np.zeros((4, 2))
        for s in range(4):
            c[s, 0] = 1.0
        c[:sections] = sos
        zi[:sections] = initial
        b00, b01, b02, a01, a02 = c[0, 0], c[0, 1], c[0, 2], c[0, 4], c[0, 5]
        b10, b11, b12, a11, a12 = c[1, 0], c[1, 1], c[1, 2], c[1, 4], c[1, 5]
        b20, b21, b22, a21, a22 = c[2, 0], c[2, 1], c[2, 2], c[2, 4], c[2, 5]
        b30, b31, b32, a31, a32 = c[3, 0], c[3, 1], c[3, 2], c[3, 4], c[3, 5]
        length = extended.shape[0]
        source = extended
        for _direction in range(2):
            first = source[0]
            z00, z01 = zi[0, 0] * first, zi[0, 1] * first
            z10, z11 = zi[1, 0] * first, zi[1, 1] * first
            z20, z21 = zi[2, 0] * first, zi[2, 1] * first
            z30, z31 = zi[3, 0] * first, zi[3, 1] * first
            filtered = np.empty(length)
            for i in range(length):
                v = source[i]
                y = b00 * v + z00
                z00 = b01 * v - a01 * y + z01
                z01 = b02 * v - a02 * y
                v = y
                y = b10 * v + z10
                z10 = b11 * v - a11 * y + z11
                z11 = b12 * v - a12 * y
                v = y
                y = b20 * v + z20
                z20 = b21 * v - a21 * y + z21
                z21 = b22 * v - a22 * y
                v = y
                y = b30 * v + z30
                z30 = b31 * v - a31 * y + z31
                z31 = b32 * v - a32 * y
                # Written reversed: the next pass runs over the time-reversed output,
                # and the second pass's reversal restores the order.
                filtered[length - 1 - i] = y
            source = filtered
        return source[pad : pad + n].copy()
    state = np.empty((sections, 2))
    source = extended
    for _direction in range(2):
        for s in range(sections):
            state[s, 0] = initial[s, 0] * source[0]
            state[s, 1] = initial[s, 1] * source[0]
        filtered = np.empty_like(source)
        for i in range(source.shape[0]):
            value = source[i]
            for s in range(sections):
                y = sos[s, 0] * value + state[s, 0]
                state[s, 0] = sos[s, 1] * value - sos[s, 4] * y + state[s, 1]
                state[s, 1] = sos[s, 2] * value - sos[s, 5] * y
                value = y
            filtered[i] = value
        source = filtered[::-1].copy()
    # After the second pass ``source`` holds the backward output reversed back.
    return source[pad : pad + n].copy()
