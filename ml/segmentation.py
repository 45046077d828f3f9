"""Heart-cycle segmentation: S1, systole, S2 and diastole of every beat.

Springer-style: a frame classifier gives each 20-ms frame its state
probabilities (emissions), and a hidden semi-Markov model with the states in
their fixed order (S1 -> systole -> S2 -> diastole -> S1) and duration
distributions set from the recording's own heart rate and systolic interval
picks the most probable segmentation (Viterbi). The frame classifier is a small
network trained on CirCor 2022's annotations (``python -m ml segmenter``); its
weights are plain arrays, so segmentation needs numpy and numba, not TensorFlow.

Springer DB, Tarassenko L, Clifford GD. Logistic regression-HSMM-based heart
sound segmentation. IEEE Trans Biomed Eng 2016;63(4):822-832.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from ml import filters, quality

FRAME_RATE_HZ = 50
STATES = ("S1", "systole", "S2", "diastole")
S1, SYSTOLE, S2, DIASTOLE = range(4)
# Bands (Hz) of the per-frame log energies; heart sounds sit low, murmurs reach higher.
SEGMENT_BANDS_HZ = ((25.0, 60.0), (60.0, 120.0), (120.0, 250.0), (250.0, 400.0))
FLOOR_NEPERS = 8.0  # about 35 dB below the loud frames
CONTEXT_FRAMES = 5  # frames each side given to the frame classifier (100 ms)
HOMOMORPHIC_CUTOFF_HZ = 8.0
MIN_BPM = 35.0
MAX_BPM = 220.0
MIN_SYSTOLE_S = 0.12
SHORTER_PERIOD_SHARE = 0.75  # a shorter autocorrelation peak this strong may be the true beat
# Autocorrelation lags (frames) searched for the beat period, and the shortest systole.
PERIOD_LAG_LO = int(round(FRAME_RATE_HZ * 60.0 / MAX_BPM))
PERIOD_LAG_HI = int(round(FRAME_RATE_HZ * 60.0 / MIN_BPM))
SYSTOLE_LAG_LO = int(round(MIN_SYSTOLE_S * FRAME_RATE_HZ))
# Sound durations (s) measured on CirCor's annotations; the gaps follow the heart rate.
S1_MEAN_S, S1_SD_S = 0.120, 0.030
S2_MEAN_S, S2_SD_S = 0.100, 0.025
SYSTOLE_SD_S = 0.030
DIASTOLE_SD_SHARE, DIASTOLE_SD_S = 0.10, 0.030
DURATION_SPAN_SD = 3.0
DEFAULT_SEGMENTER = Path(__file__).resolve().parent / "bundles" / "segmenter-v1" / "segmenter.json"


@dataclass(frozen=True)
class Segmentation:
    """States of one recording.

    ``states`` holds one state index per frame at ``FRAME_RATE_HZ``; ``segments``
    is ``(state, start_s, end_s)`` per run of one state; ``cycles`` is
    ``(start_frame, systole_frame, s2_frame, diastole_frame, end_frame)`` per
    complete beat (S1 onset to the next S1 onset).
    """

    states: np.ndarray
    segments: list[tuple[int, float, float]]
    cycles: np.ndarray
    heart_rate_bpm: float | None
    systolic_interval_s: float | None

    def onsets_s(self, state: int) -> np.ndarray:
        """Start times in seconds of every run of ``state``."""
        # A run that starts the recording was cut by it: its start is no onset.
        return np.array([start for kind, start, _ in self.segments if kind == state and start > 0])

    def summary(self) -> dict[str, Any]:
        """JSON-able times for storage and drawing: onsets, cycle count, rate and its variability."""
        lengths = (self.cycles[:, 4] - self.cycles[:, 0]) / FRAME_RATE_HZ
        rate = 60.0 / _median(lengths) if len(lengths) else self.heart_rate_bpm
        # Rounded as arrays, and the onsets picked from one array of the runs: a
        # recording has a few hundred runs, and per-value work was a visible share
        # of a prediction's cost.
        table = np.array(self.segments, dtype=np.float64).reshape(-1, 3)
        kinds, starts = table[:, 0], table[:, 1]
        bounds = np.round(table[:, 1:], 3)
        onsets = {state: np.round(starts[(kinds == state) & (starts > 0)], 3).tolist() for state in (S1, S2)}
        return {
            "s1_s": onsets[S1],
            "s2_s": onsets[S2],
            "segments": [
                [STATES[kind], start, end]
                for (kind, _, _), (start, end) in zip(self.segments, bounds.tolist(), strict=True)
            ],
            "cycles": int(len(self.cycles)),
            "heart_rate_bpm": None if rate is None else round(float(rate), 1),
            "heart_rate_sd_bpm": (
                round(float(np.std(60.0 / np.asarray(lengths))), 1) if len(lengths) > 1 else None
            ),
        }


def _median(values: np.ndarray) -> float:
    """``np.median`` of a finite 1-D array: the middle value, or the mean of the middle two
    (``(a + b) / 2``, as numpy takes it), without numpy's general set-up."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


# ---------------------------------------------------------------------------
# Frame features


def band_energies(samples: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Raw per-frame measures ``(frames, 5)`` at ``FRAME_RATE_HZ``: log power in each of
    ``SEGMENT_BANDS_HZ`` and the log homomorphic envelope (natural-log units).

    Frames are ``2 * hop`` samples (40 ms at 50 frames/s) with a Hann window.
    """
    hop = sample_rate // FRAME_RATE_HZ
    n_fft = 2 * hop
    count = len(samples) // hop
    if count < 2:
        return np.zeros((max(count, 0), len(SEGMENT_BANDS_HZ) + 1), dtype=np.float32)
    padded = np.pad(np.asarray(samples, dtype=np.float32), (n_fft // 2, n_fft), mode="reflect")
    frames = sliding_window_view(padded, n_fft)[::hop][:count]
    spectrum = np.fft.rfft(frames * _hann(n_fft), axis=1)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    columns = [power[:, bins].sum(axis=1) for bins in _band_bins(sample_rate, n_fft)]
    bands = np.log(np.stack(columns, axis=1) + 1e-8)
    envelope = homomorphic_envelope(np.sum(columns, axis=0))
    return np.concatenate([bands, envelope[:, np.newaxis]], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _band_bins(sample_rate: int, n_fft: int) -> tuple[slice, ...]:
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    bins = []
    for lo, hi in SEGMENT_BANDS_HZ:
        inside = np.flatnonzero((freqs >= lo) & (freqs < hi))
        bins.append(slice(int(inside[0]), int(inside[-1]) + 1))
    return tuple(bins)


def column_percentiles(values: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, percentiles, axis=0)`` (linear interpolation) from one sort.

    Segmentation and the beat statistics take several percentiles of small arrays
    per recording; numpy's general routine spends more time on its set-up than on
    the data, and this is exact for the 'linear' method it uses by default.
    """
    ordered = np.sort(values, axis=0)
    return _interpolate_sorted(ordered, percentiles)


def _interpolate_sorted(ordered: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    position = np.asarray(percentiles, dtype=np.float64) / 100.0 * (len(ordered) - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, len(ordered) - 1)
    shape = (-1,) + (1,) * (ordered.ndim - 1)
    fraction = (position - below).reshape(shape).astype(ordered.dtype)
    low, high = ordered[below], ordered[above]
    interpolated: np.ndarray = low + (high - low) * fraction
    return interpolated


def standardise(energies: np.ndarray) -> np.ndarray:
    """Each column less its median, over its 10-90th percentile spread: no gain, no device level.

    Frames more than ``FLOOR_NEPERS`` below a column's loud frames are raised to
    that floor first: a device that gates its noise to digital silence would
    otherwise stretch the spread with the depth of its silence.
    """
    if len(energies) == 0:
        return energies
    ordered = np.sort(energies, axis=0)
    floor = _interpolate_sorted(ordered, [95.0])[0] - FLOOR_NEPERS
    # Raising values to a floor keeps their order, so the floored columns stay sorted.
    low, centre, high = _interpolate_sorted(np.maximum(ordered, floor), [10.0, 50.0, 90.0])
    energies = np.maximum(energies, floor)
    spread = np.maximum(high - low, 1e-3)
    standardised: npt.NDArray[np.float32] = ((energies - centre) / spread).astype(np.float32)
    return standardised


def frame_features(samples: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Standardised per-frame features ``(frames, 5)``, the frame classifier's input."""
    return standardise(band_energies(samples, sample_rate=sample_rate))


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1].astype(np.float32)


def homomorphic_envelope(band_power: np.ndarray) -> np.ndarray:
    """Log envelope: the log of a frame's power in the heart-sound band, low-passed at 8 Hz.

    The homomorphic envelope of Springer et al., computed on the frames rather
    than on every sample (the same shape at a fraction of the cost).
    """
    log_power = np.log(band_power + 1e-8)
    design = filters.butterworth(1, None, HOMOMORPHIC_CUTOFF_HZ, FRAME_RATE_HZ)
    if len(log_power) <= filters.pad_length(design[0]):
        return log_power
    return filters.filtfilt(log_power, design)


def context_windows(features: np.ndarray) -> np.ndarray:
    """Each frame with ``CONTEXT_FRAMES`` neighbours each side, flattened: ``(frames, 11 * 5)``."""
    padded = np.pad(features, ((CONTEXT_FRAMES, CONTEXT_FRAMES), (0, 0)), mode="edge")
    view = sliding_window_view(padded, (2 * CONTEXT_FRAMES + 1, features.shape[1]))[:, 0]
    return view.reshape(len(features), -1)


# ---------------------------------------------------------------------------
# Frame classifier (emissions)


@dataclass(frozen=True)
class FrameClassifier:
    """Dense layers (ReLU between, softmax out) over context windows; plain arrays."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    log_prior: np.ndarray

    def log_emissions(self, features: np.ndarray) -> np.ndarray:
        """Scaled log-likelihoods ``(frames, 4)``: log posterior minus log prior."""
        return self.scaled(self.logits(features))

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The output layer's values ``(frames, 4)`` for one recording's frames."""
        # context_windows() and numpy's broadcast bias and ReLU give the same values;
        # over rows of a few dozen values the compiled loops cost less.
        hidden = _context_rows(features, 0, len(features), CONTEXT_FRAMES)
        last = len(self.weights) - 1
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            hidden = hidden @ weight
            _add_bias(hidden, bias, layer < last)
        return np.asarray(hidden)

    def scaled(self, logits: np.ndarray) -> np.ndarray:
        """:meth:`log_emissions` from :meth:`logits` (of one recording or of many stacked)."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_posterior = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        scaled: npt.NDArray[np.float64] = (log_posterior - self.log_prior).astype(np.float64)
        return scaled

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (lists of floats)."""
        return {
            "format": 1,
            "frame_rate_hz": FRAME_RATE_HZ,
            "context_frames": CONTEXT_FRAMES,
            "bands_hz": [list(band) for band in SEGMENT_BANDS_HZ],
            "weights": [w.tolist() for w in self.weights],
            "biases": [b.tolist() for b in self.biases],
            "log_prior": self.log_prior.tolist(),
        }

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> FrameClassifier:
        """Rebuild from :meth:`to_json`; refuses a file made for other frame settings."""
        if values.get("frame_rate_hz") != FRAME_RATE_HZ or values.get("context_frames") != CONTEXT_FRAMES:
            raise ValueError("segmenter was trained with other frame settings")
        return cls(
            weights=tuple(np.asarray(w, dtype=np.float32) for w in values["weights"]),
            biases=tuple(np.asarray(b, dtype=np.float32) for b in values["biases"]),
            log_prior=np.asarray(values["log_prior"], dtype=np.float32),
        )


@functools.lru_cache(maxsize=4)
def load_classifier(path: Path = DEFAULT_SEGMENTER) -> FrameClassifier:
    """The frame classifier stored at ``path`` (cached per process)."""
    return FrameClassifier.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------
# Heart rate and durations


def beat_timings(correlation: np.ndarray) -> np.ndarray:
    """Beat timings worth decoding, rows ``(period_s, gap_s, period_s - gap_s)``, from the
    envelope's :func:`ml.quality.autocorrelation`.

    The period is the strongest peak in the heart-rate range and, when that is a
    multiple of a shorter one nearly as strong, also that shorter one; the gap is
    the shorter one between the heart sounds, the strongest peak below half the
    period.
    """
    return np.asarray(
        _timings(
            correlation,
            PERIOD_LAG_LO,
            PERIOD_LAG_HI,
            SYSTOLE_LAG_LO,
            float(FRAME_RATE_HZ),
            SHORTER_PERIOD_SHARE,
        )
    )


def _best_decoding(emissions: np.ndarray, timings: np.ndarray) -> Segmentation:
    """The most probable states over every timing, both gaps of each tried as the systole.

    The autocorrelation finds the shorter of the two gaps between heart sounds; at
    fast rates the systole is the longer one, so both readings are decoded, and so
    is a shorter period when the strongest peak may be two or three beats long.
    """
    best_score, best_states, best_timing = -np.inf, None, (0.0, 0.0)
    for period, gap, other in timings.tolist():
        for systolic in (gap, other):
            states, score = decode_states(emissions, period_s=period, systolic_s=systolic)
            # as np.argmax over the scores: the first of equal ones, the first when all are -inf
            if best_states is None or score > best_score:
                best_score, best_states, best_timing = score, states, (period, systolic)
    assert best_states is not None
    return Segmentation(
        states=best_states,
        segments=runs(best_states),
        cycles=complete_cycles(best_states),
        heart_rate_bpm=60.0 / best_timing[0],
        systolic_interval_s=best_timing[1],
    )


@functools.lru_cache(maxsize=1024)  # timings are whole frames, so the same few recur
def duration_tables(period_s: float, systolic_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(minimum frames, maximum frames, log-probability table ``(4, max + 1)``) per state."""
    systole = max(systolic_s - S1_MEAN_S, 0.06)
    diastole = max(period_s - systolic_s - S2_MEAN_S, 0.08)
    means = np.array([S1_MEAN_S, systole, S2_MEAN_S, diastole]) * FRAME_RATE_HZ
    sds = (
        np.array([S1_SD_S, SYSTOLE_SD_S, S2_SD_S, DIASTOLE_SD_SHARE * diastole + DIASTOLE_SD_S])
        * FRAME_RATE_HZ
    )
    low = np.maximum(1, np.floor(means - DURATION_SPAN_SD * sds)).astype(np.int64)
    high = np.maximum(low + 1, np.ceil(means + DURATION_SPAN_SD * sds)).astype(np.int64)
    table = np.full((4, int(high.max()) + 1), -np.inf)
    for state in range(4):
        table[state, low[state] : high[state] + 1] = _duration_row(
            int(low[state]), int(high[state]), float(means[state]), float(sds[state])
        )
    return low, high, table


@functools.lru_cache(maxsize=1024)  # the sounds' rows never change, and the systole's recur
def _duration_row(low: int, high: int, mean: float, sd: float) -> np.ndarray:
    """Log-probabilities of durations ``low..high`` frames (a normal density, normalised)."""
    span = np.arange(low, high + 1)
    log_pdf = -0.5 * ((span - mean) / sd) ** 2
    row: np.ndarray = log_pdf - np.log(np.exp(log_pdf).sum())
    row.setflags(write=False)
    return row


@njit(cache=True)
def _viterbi(emissions, low, high, table):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    frames = emissions.shape[0]
    cumulative = np.zeros((frames + 1, 4))
    for t in range(frames):
        for j in range(4):
            cumulative[t + 1, j] = cumulative[t, j] + emissions[t, j]
    score = np.full((frames + 1, 4), -np.inf)
    back = np.zeros((frames + 1, 4), dtype=np.int64)
    for t in range(1, frames + 1):
        for j in range(4):
            previous = (j + 3) % 4
            best = -np.inf
            best_d = 1
            # The first segment may be cut by the recording's start: any length, no duration cost.
            if t <= high[j]:
                best = cumulative[t, j]
                best_d = t
            top = min(high[j], t - 1)
            for d in range(low[j], top + 1):
                start = t - d
                candidate = score[start, previous] + table[j, d] + cumulative[t, j] - cumulative[start, j]
                if candidate > best:
                    best = candidate
                    best_d = d
            score[t, j] = best
            back[t, j] = best_d
    # The last segment may be cut by the recording's end: any length up to its maximum.
    final = -np.inf
    final_state = 0
    final_d = frames
    for j in range(4):
        previous = (j + 3) % 4
        if frames <= high[j] and cumulative[frames, j] > final:
            final = cumulative[frames, j]
            final_state = j
            final_d = frames
        for d in range(1, min(high[j], frames - 1) + 1):
            start = frames - d
            candidate = score[start, previous] + cumulative[frames, j] - cumulative[start, j]
            if candidate > final:
                final = candidate
                final_state = j
                final_d = d
    states = np.zeros(frames, dtype=np.int64)
    if final == -np.inf:
        return states, final
    t = frames
    j = final_state
    d = final_d
    while t > 0:
        states[t - d : t] = j
        t -= d
        if t > 0:
            j = (j + 3) % 4
            d = back[t, j]
    return states, final


def decode_states(emissions: np.ndarray, *, period_s: float, systolic_s: float) -> tuple[np.ndarray, float]:
    """Most probable states given emissions ``(frames, 4)`` and the beat timing, and their log score."""
    low, high, table = duration_tables(period_s, systolic_s)
    states, score = _viterbi(np.ascontiguousarray(emissions, dtype=np.float64), low, high, table)
    return np.asarray(states), float(score)


# ---------------------------------------------------------------------------
# The whole step


def segment(
    samples: np.ndarray,
    *,
    sample_rate: int,
    classifier: FrameClassifier | None = None,
    energies: np.ndarray | None = None,
) -> Segmentation:
    """Segment one band-passed recording into heart-cycle states.

    ``energies``: :func:`band_energies` of the same samples, when the caller has them.
    """
    raw = band_energies(samples, sample_rate=sample_rate) if energies is None else energies
    features = standardise(raw)
    if len(features) < 2:
        return Segmentation(np.zeros(len(features), np.int64), [], np.zeros((0, 5), np.int64), None, None)
    model = classifier if classifier is not None else load_classifier()
    envelope = features[:, -1]
    correlation = quality.autocorrelation(envelope - envelope.mean())
    return _best_decoding(model.log_emissions(features), beat_timings(correlation))


def runs(states: np.ndarray) -> list[tuple[int, float, float]]:
    """``(state, start_s, end_s)`` for each run of equal states."""
    if len(states) == 0:
        return []
    edges = np.flatnonzero(np.diff(states)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(states)]])
    # Whole arrays to Python values at once: a recording has a few hundred runs.
    kinds = states[starts].tolist()
    return list(zip(kinds, (starts / FRAME_RATE_HZ).tolist(), (ends / FRAME_RATE_HZ).tolist(), strict=True))


def complete_cycles(states: np.ndarray) -> np.ndarray:
    """Frame bounds of every complete beat: ``(S1, systole, S2, diastole, next S1)`` starts."""
    if len(states) == 0:
        return np.zeros((0, 5), np.int64)
    edges = np.flatnonzero(np.diff(states)) + 1
    starts = np.concatenate([[0], edges])
    kinds = states[starts]
    # A run at index 0 may be cut by the recording's start, so beats begin at the first S1 onset after it.
    first = 1 + np.flatnonzero(kinds[1 : max(len(starts) - 4, 1)] == S1)
    return np.asarray(starts[first[:, np.newaxis] + np.arange(5)], dtype=np.int64).reshape(-1, 5)


# ---------------------------------------------------------------------------
# Scoring against annotations


ONSET_TOLERANCE_S = 0.06


def onset_scores(
    detected: np.ndarray,
    annotated: np.ndarray,
    *,
    span: tuple[float, float],
    tolerance_s: float = ONSET_TOLERANCE_S,
) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of onsets inside ``span`` (s).

    Each annotated onset matches at most one detected onset within ``tolerance_s``.
    """
    lo, hi = span
    inner = lo + tolerance_s, hi - tolerance_s
    found = np.sort(detected[(detected >= lo) & (detected <= hi)])
    truth = np.sort(annotated[(annotated >= inner[0]) & (annotated <= inner[1])])
    used = np.zeros(len(found), dtype=bool)
    hits = 0
    for onset in truth:
        if len(found) == 0:
            break
        distance = np.abs(found - onset)
        distance[used] = np.inf
        best = int(np.argmin(distance))
        if distance[best] <= tolerance_s:
            used[best] = True
            hits += 1
    # Unmatched detections at the span's edges may belong to onsets just outside it.
    extra = int(np.sum(~used & (found >= inner[0]) & (found <= inner[1])))
    return hits, extra, int(len(truth) - hits)


# ---------------------------------------------------------------------------
# Many recordings at once
#
# A worker segments a chunk of recordings per call. Per recording the work is a
# few hundred frames, so numpy's per-call set-up costs as much as the arithmetic:
# the batched path below gathers frames, sums bands, standardises and finds the
# beat timings in compiled loops, and runs each transcendental function (log,
# exp) once over the whole chunk. Every value is computed with the same float
# operations in the same order as the per-recording functions above, so the
# results are identical (the tests compare them). The frame FFTs and the
# classifier's matrix products stay per recording: one FFT over a whole chunk's
# frames ran slower (out of cache), and BLAS may sum in another order when a
# product has more rows.

# Below these many frames a recording goes through :func:`segment` (edge cases:
# reflections longer than the recording, envelopes too short to filter).
MIN_BATCH_FRAMES = 16


@dataclass(frozen=True)
class FrameBatch:
    """Per-frame values of many recordings stacked: ``(frames of all, ...)`` with
    recording ``i`` in rows ``offsets[i]:offsets[i + 1]``."""

    energies: np.ndarray
    offsets: np.ndarray

    def rows(self, index: int) -> slice:
        """Rows of recording ``index``."""
        return slice(int(self.offsets[index]), int(self.offsets[index + 1]))


@njit(cache=True)
def _gather_frames(samples, hop, n_fft, count, window):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # The frames of band_energies: reflect-padded by n_fft // 2 in front, windowed.
    n = samples.shape[0]
    half = n_fft // 2
    frames = np.empty((count, n_fft), dtype=np.float32)
    for t in range(count):
        first = t * hop - half
        if first >= 0 and first + n_fft <= n:
            for k in range(n_fft):
                frames[t, k] = samples[first + k] * window[k]
            continue
        for k in range(n_fft):
            i = first + k
            if i < 0:
                i = -i
            elif i >= n:
                i = 2 * (n - 1) - i
            frames[t, k] = samples[i] * window[k]
    return frames


@njit(cache=True)
def _band_powers(spectrum, bounds, out, total, row):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # Power summed over each band's bins, and over the bands, into out[row:], total[row:]:
    # float32 and left to right, as numpy sums so few values.
    for t in range(spectrum.shape[0]):
        overall = np.float32(0.0)
        for b in range(bounds.shape[0]):
            acc = np.float32(0.0)
            for k in range(bounds[b, 0], bounds[b, 1]):
                value = spectrum[t, k]
                power = value.real * value.real + value.imag * value.imag
                acc = power if k == bounds[b, 0] else acc + power
            out[row + t, b] = acc
            overall = acc if b == 0 else overall + acc
        total[row + t] = overall


@njit(cache=True)
def _sorted_quantile(ordered, a, b, percentile, floor):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # _interpolate_sorted of max(ordered[a:b], floor) (sorted) for one percentile, in float32.
    position = percentile / 100.0 * (b - a - 1)
    below = int(np.floor(position))
    above = min(below + 1, b - a - 1)
    fraction = np.float32(position - below)
    low = max(ordered[a + below], floor)
    return low + (max(ordered[a + above], floor) - low) * fraction


@njit(cache=True)
def _standardise_rows(energies, ordered, offsets, floor_nepers, features, loudness):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # standardise() per recording, from each column sorted per recording (ordered is
    # (columns, frames)); also the 10th, 50th and 90th percentile of each raw band
    # (gap_fill's) from the same sort.
    minimum_spread = np.float32(1e-3)
    lowest = np.float32(-np.inf)
    for r in range(offsets.shape[0] - 1):
        a, b = offsets[r], offsets[r + 1]
        for c in range(energies.shape[1]):
            column = ordered[c]
            if c < loudness.shape[1]:
                loudness[r, c, 0] = _sorted_quantile(column, a, b, 10.0, lowest)
                loudness[r, c, 1] = _sorted_quantile(column, a, b, 50.0, lowest)
                loudness[r, c, 2] = _sorted_quantile(column, a, b, 90.0, lowest)
            floor = _sorted_quantile(column, a, b, 95.0, lowest) - floor_nepers
            low = _sorted_quantile(column, a, b, 10.0, floor)
            centre = _sorted_quantile(column, a, b, 50.0, floor)
            spread = max(_sorted_quantile(column, a, b, 90.0, floor) - low, minimum_spread)
            for i in range(a, b):
                features[i, c] = (max(energies[i, c], floor) - centre) / spread


@njit(cache=True)
def _context_rows(features, a, b, context):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # context_windows() of rows a:b.
    n = b - a
    width = features.shape[1]
    out = np.empty((n, (2 * context + 1) * width), dtype=features.dtype)
    for i in range(n):
        for w in range(2 * context + 1):
            source = min(max(i + w - context, 0), n - 1)
            for c in range(width):
                out[i, w * width + c] = features[a + source, c]
    return out


@njit(cache=True)
def _add_bias(hidden, bias, rectify):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # hidden + bias, then np.maximum(., 0) when rectify, in place: numpy's broadcast
    # over rows of a few dozen values costs more than the arithmetic.
    for i in range(hidden.shape[0]):
        for j in range(hidden.shape[1]):
            value = hidden[i, j] + bias[j]
            if rectify and value <= 0:  # NaN kept, as np.maximum keeps it
                value = np.float32(0.0)
            hidden[i, j] = value


@njit(cache=True)
def _timings(correlation, lo, hi, sys_lo, frame_rate, share):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # beat_timings(): the period candidates, then the systolic gap of each.
    n = correlation.shape[0]
    hi = min(n - 2, hi)
    periods = np.empty(2)
    count = 1
    if hi <= lo:
        periods[0] = 60.0 / 80.0
    else:
        strongest = lo
        for p in range(lo + 1, hi + 1):
            if correlation[p] > correlation[strongest]:
                strongest = p
        threshold = share * correlation[strongest]
        shortest = -1
        for p in range(lo, hi + 1):
            if correlation[p] >= correlation[p - 1] and correlation[p] >= correlation[p + 1]:
                if correlation[p] >= threshold and (shortest < 0 or p < shortest):
                    shortest = p
        if shortest < 0:
            shortest = strongest
        periods[0] = strongest / frame_rate
        if shortest < strongest:
            periods[1] = shortest / frame_rate
            count = 2
    out = np.empty((count, 3))
    for index in range(count):
        period = periods[index]
        sys_hi = min(n - 1, max(sys_lo + 1, int(period * frame_rate * 0.5)))
        if sys_hi <= sys_lo:
            gap = 0.3
        else:
            best = sys_lo
            for p in range(sys_lo + 1, sys_hi + 1):
                if correlation[p] > correlation[best]:
                    best = p
            gap = best / frame_rate
        out[index, 0] = period
        out[index, 1] = gap
        out[index, 2] = period - gap
    return out


def _batchable(samples: np.ndarray, sample_rate: int) -> bool:
    hop = sample_rate // FRAME_RATE_HZ
    return len(samples) // hop >= MIN_BATCH_FRAMES and len(samples) > 4 * hop


def band_energies_batch(recordings: Sequence[np.ndarray], *, sample_rate: int) -> FrameBatch:
    """:func:`band_energies` of every recording (each at least ``MIN_BATCH_FRAMES`` frames long)."""
    hop = sample_rate // FRAME_RATE_HZ
    n_fft = 2 * hop
    counts = np.array([len(samples) // hop for samples in recordings], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    bounds = np.array([(b.start, b.stop) for b in _band_bins(sample_rate, n_fft)], dtype=np.int64)
    bands = np.empty((int(offsets[-1]), len(SEGMENT_BANDS_HZ)), dtype=np.float32)
    total = np.empty(int(offsets[-1]), dtype=np.float32)
    window = _hann(n_fft)
    for index, samples in enumerate(recordings):
        frames = _gather_frames(np.asarray(samples, dtype=np.float32), hop, n_fft, int(counts[index]), window)
        _band_powers(np.fft.rfft(frames, axis=1), bounds, bands, total, int(offsets[index]))
    energies = np.empty((len(bands), len(SEGMENT_BANDS_HZ) + 1), dtype=np.float32)
    energies[:, :-1] = np.log(bands + 1e-8)
    log_total = np.log(total + 1e-8)
    design = filters.butterworth(1, None, HOMOMORPHIC_CUTOFF_HZ, FRAME_RATE_HZ)
    for index in range(len(recordings)):
        rows = slice(int(offsets[index]), int(offsets[index + 1]))
        energies[rows, -1] = filters.filtfilt(log_total[rows], design)
    return FrameBatch(energies, offsets)


def segment_batch(
    recordings: Sequence[np.ndarray], *, sample_rate: int, classifier: FrameClassifier | None = None
) -> list[Segmentation]:
    """:func:`segment` of every recording, the frame stages run over all of them at once."""
    return _segment_many(recordings, sample_rate=sample_rate, classifier=classifier)[0]


def _segment_many(
    recordings: Sequence[np.ndarray], *, sample_rate: int, classifier: FrameClassifier | None = None
) -> tuple[list[Segmentation], list[np.ndarray], list[np.ndarray | None]]:
    """Segmentations, raw :func:`band_energies` and the band percentiles (10th, 50th,
    90th; ``(bands, 3)``, None for a recording that went through :func:`segment`)."""
    model = classifier if classifier is not None else load_classifier()
    found: list[Segmentation | None] = [None] * len(recordings)
    energies: list[np.ndarray | None] = [None] * len(recordings)
    loudness: list[np.ndarray | None] = [None] * len(recordings)
    chosen = []
    for index, samples in enumerate(recordings):
        if _batchable(samples, sample_rate):
            chosen.append(index)
            continue
        energies[index] = band_energies(samples, sample_rate=sample_rate)
        found[index] = segment(samples, sample_rate=sample_rate, classifier=model, energies=energies[index])
    if chosen:
        batch = band_energies_batch([recordings[index] for index in chosen], sample_rate=sample_rate)
        segmentations, percentiles = _segment_frames(batch, model)
        for position, index in enumerate(chosen):
            found[index] = segmentations[position]
            energies[index] = batch.energies[batch.rows(position)]
            loudness[index] = percentiles[position]
    return [s for s in found if s is not None], [e for e in energies if e is not None], loudness


def _segment_frames(batch: FrameBatch, model: FrameClassifier) -> tuple[list[Segmentation], np.ndarray]:
    raw, offsets = batch.energies, batch.offsets
    count = len(offsets) - 1
    features = np.empty_like(raw)
    loudness = np.empty((count, raw.shape[1] - 1, 3), dtype=np.float32)
    # numpy's sort is several times faster than numba's on these columns.
    ordered = np.empty((raw.shape[1], len(raw)), dtype=raw.dtype)
    for index in range(count):
        a, b = int(offsets[index]), int(offsets[index + 1])
        ordered[:, a:b] = np.sort(raw[a:b].T, axis=1)
    _standardise_rows(raw, ordered, offsets, np.float32(FLOOR_NEPERS), features, loudness)
    # The matrix products per recording (BLAS may sum in another order over more
    # rows), the softmax over every frame at once.
    logits = np.empty((len(raw), len(STATES)), dtype=np.float32)
    for index in range(count):
        logits[batch.rows(index)] = model.logits(features[batch.rows(index)])
    emissions = model.scaled(logits)
    correlations = _envelope_correlations(features, offsets)
    results = [
        _best_decoding(emissions[batch.rows(index)], beat_timings(correlations[index]))
        for index in range(count)
    ]
    return results, loudness


def _envelope_correlations(features: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """:func:`ml.quality.autocorrelation` of each recording's centred envelope; the FFTs
    run over all recordings of one length at once."""
    count = len(offsets) - 1
    centred = []
    for index in range(count):
        envelope = features[int(offsets[index]) : int(offsets[index + 1]), -1]
        centred.append(envelope - envelope.mean())
    out: list[np.ndarray] = [np.empty(0)] * count
    lengths = np.diff(offsets)
    for length in np.unique(lengths).tolist():
        members = np.flatnonzero(lengths == length)
        stacked = np.stack([centred[index] for index in members])
        spectrum = np.fft.rfft(stacked, n=2 * length, axis=1)
        correlation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :length]
        zero = correlation[:, :1]
        normalised = np.where(zero > 0, correlation / np.where(zero > 0, zero, 1), correlation)
        for row, index in enumerate(members.tolist()):
            out[index] = normalised[row]
    return out
