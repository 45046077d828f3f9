"""Log-mel and MFCC sequences over fixed windows, built for batch throughput.

A recording's spectrum is computed once; fixed-length windows (with overlap) are
then sliced from its feature sequence, so a recording of any length becomes a
batch of ``(frames_per_window, num_features)`` arrays. Filterbanks and DCT
matrices are built once per configuration and cached.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ml.errors import FeatureError

# Bump when feature code changes its output for the same configuration; bundles
# trained with another version are refused.
FEATURE_CODE_VERSION = 1
# ``cycles``: per-beat measures from the heart-cycle segmentation (ml.cycles), one
# row per beat, windows of consecutive beats instead of spectrogram frames.
FEATURE_KINDS = ("logmel", "mfcc", "cycles")
# What each band is measured against when ``recording_mean_norm`` is on.
NORM_REFERENCES = ("mean", "peak")
PEAK_PERCENTILE = 90.0
# Natural-log units below the band's loud frames (about 43 dB): quieter frames
# are floored so that the recorder's own noise floor and quantisation, which
# differ by device, do not reach the model.
PEAK_FLOOR = 10.0
LOG_FLOOR = 1e-6
SLANEY_HZ_PER_MEL = 200.0 / 3
SLANEY_BREAK_HZ = 1000.0
SLANEY_BREAK_MEL = SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL
SLANEY_LOG_STEP = np.log(6.4) / 27.0
DELTA_HALF_WIDTH = 2  # frames each side in the regression delta (HTK formula)


# Kept in step with ml.cycles.NUM_CYCLE_FEATURES (a test checks); not imported from
# there because ml.cycles needs numba, and this module is imported by the web process.
NUM_CYCLE_FEATURES = 44
NUM_SPREAD_FEATURES = 8
NUM_PROFILE_FEATURES = 90
LATER_FIELDS: dict[str, Any] = {
    "norm_reference": "mean",
    "beats_per_window": 8,
    "beats_hop": 4,
    "beat_spreads": False,
    "beat_profile": False,
}


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that determines the features a model was trained on.

    The band is both the waveform band-pass applied when decoding and the span
    of the mel filterbank. Invalid settings raise ``FeatureError``.

    Parameters
    ----------
    sample_rate : int
        Rate the recordings are resampled to, Hz.
    band_low_hz, band_high_hz : float
        Edges of the heart-sound band, Hz; ``0 < low < high <= sample_rate / 2``.
    n_fft : int
        Samples per spectrum frame (the analysis window), at least ``hop_length``.
    hop_length : int
        Samples between the starts of consecutive frames.
    n_mels : int
        Mel bands.
    kind : str
        One of ``FEATURE_KINDS``: log-mel frames, MFCC frames, or ``cycles``
        (one row of ``ml.cycles`` measures per heart beat).
    n_mfcc : int
        MFCCs kept per frame (``mfcc`` only), at most ``n_mels``.
    deltas : bool
        Append first and second regression deltas (per frame) to each frame.
    window_s, window_hop_s : float
        Length of one model window and the step between windows, seconds.
    recording_mean_norm : bool
        Measure each band against the recording's own reference (``norm_reference``).
    norm_reference : str
        One of ``NORM_REFERENCES``: the band's mean, or its loud frames.
    beats_per_window, beats_hop : int
        ``cycles`` only: beats in one model window and between window starts.
    beat_spreads, beat_profile : bool
        ``cycles`` only: also the within-gap spreads and the per-beat time profile.
    """

    sample_rate: int = 2000
    band_low_hz: float = 25.0
    band_high_hz: float = 400.0
    n_fft: int = 256
    hop_length: int = 50
    n_mels: int = 24
    kind: str = "logmel"
    n_mfcc: int = 13
    deltas: bool = False
    window_s: float = 4.0
    window_hop_s: float = 2.0
    recording_mean_norm: bool = True
    norm_reference: str = "mean"
    beats_per_window: int = 8
    beats_hop: int = 4
    # ``cycles`` only: also the within-gap spreads of ml.cycles.SPREAD_FEATURE_NAMES.
    beat_spreads: bool = False
    # ``cycles`` only: also each beat's time profile (ml.cycles.PROFILE_FEATURE_NAMES).
    beat_profile: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise FeatureError(f"feature kind must be one of {FEATURE_KINDS}, not {self.kind!r}")
        if self.norm_reference not in NORM_REFERENCES:
            raise FeatureError(
                f"norm_reference must be one of {NORM_REFERENCES}, not {self.norm_reference!r}"
            )
        if not 0 < self.band_low_hz < self.band_high_hz <= self.sample_rate / 2:
            raise FeatureError("band must satisfy 0 < low < high <= sample_rate / 2")
        if self.hop_length <= 0 or self.n_fft < self.hop_length:
            raise FeatureError("need 0 < hop_length <= n_fft")
        if self.window_hop_s <= 0 or self.window_s <= 0:
            raise FeatureError("window_s and window_hop_s must be positive")
        if self.n_mels < 1:
            raise FeatureError(f"need at least one mel band, not n_mels={self.n_mels}")
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels:
            raise FeatureError(f"need 1 <= n_mfcc <= n_mels ({self.n_mels}), not n_mfcc={self.n_mfcc}")
        if self.beats_per_window < 1 or self.beats_hop < 1:
            raise FeatureError("beats_per_window and beats_hop must be at least 1")
        if self.frames_per_window < 1:
            raise FeatureError(f"a {self.window_s} s window holds no frame of {self.hop_length} samples")

    @property
    def frames_per_window(self) -> int:
        """Feature frames (beats, for ``cycles``) in one model window."""
        if self.kind == "cycles":
            return self.beats_per_window
        return round(self.window_s * self.sample_rate / self.hop_length)

    @property
    def frames_per_hop(self) -> int:
        """Feature frames between the starts of consecutive windows."""
        if self.kind == "cycles":
            return self.beats_hop
        return max(1, round(self.window_hop_s * self.sample_rate / self.hop_length))

    @property
    def num_features(self) -> int:
        """Values per feature frame."""
        if self.kind == "cycles":
            return (
                NUM_CYCLE_FEATURES
                + (NUM_SPREAD_FEATURES if self.beat_spreads else 0)
                + (NUM_PROFILE_FEATURES if self.beat_profile else 0)
            )
        base = self.n_mfcc if self.kind == "mfcc" else self.n_mels
        return base * (3 if self.deltas else 1)

    @property
    def window_shape(self) -> tuple[int, int]:
        """Shape of one model input window: (frames, features)."""
        return (self.frames_per_window, self.num_features)

    @property
    def band_hz(self) -> tuple[float, float]:
        """(low, high) edges of the heart-sound band in Hz."""
        return (self.band_low_hz, self.band_high_hz)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields.

        Fields that came later are left out at their defaults so that the
        fingerprints of bundles made before them still match.
        """
        values = dataclasses.asdict(self)
        for name, default in LATER_FIELDS.items():
            if values[name] == default:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureConfig:
        """Rebuild a config; unknown keys or invalid values raise ``FeatureError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise FeatureError(f"unknown feature settings: {sorted(unknown)}")
        return cls(**values)

    def fingerprint(self) -> str:
        """Stable hash of the settings and the feature code version (16 hex chars)."""
        text = json.dumps({"code": FEATURE_CODE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WindowBatch:
    """Windows of many recordings stacked for one model call.

    Attributes
    ----------
    windows : np.ndarray
        float32 ``(n, frames_per_window, num_features)``.
    recording_index : np.ndarray
        int64 ``(n,)``: which input recording window ``i`` came from.
    start_s, end_s : np.ndarray
        ``(n,)`` bounds of each window within its recording, seconds.
    beats : tuple of ml.cycles.BeatMeasures or None
        Per recording, the beats the windows were built from (``cycles`` only).
    """

    windows: np.ndarray
    recording_index: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    # Per-recording ``ml.cycles.BeatMeasures`` when the features came from beats.
    beats: tuple[Any, ...] | None = None


@functools.lru_cache(maxsize=16)
def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Mel filterbank of ``config``: FFT bin power to mel-band energy.

    The same triangles as ``librosa.filters.mel`` (Slaney scale and area
    normalisation), computed here so worker processes need not import librosa
    and numba (about 60 MB resident and a second of start-up).

    Parameters
    ----------
    config : FeatureConfig
        Uses ``sample_rate`` (Hz), ``n_fft`` (samples), ``n_mels`` and the band (Hz).

    Returns
    -------
    np.ndarray
        float32 ``(n_fft // 2 + 1, n_mels)``; bin ``k`` is at ``k * sample_rate / n_fft`` Hz.
        Each band is a triangle over its neighbours' centres whose peak is ``2 / base``
        (base in Hz), so that its area over frequency is 1 (Slaney normalisation).
    """
    mel_edges = np.linspace(
        _hz_to_mel(config.band_low_hz), _hz_to_mel(config.band_high_hz), config.n_mels + 2
    )
    edges_hz = _mel_to_hz(mel_edges)
    bins_hz = np.linspace(0.0, config.sample_rate / 2, 1 + config.n_fft // 2)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, np.newaxis] - bins_hz[np.newaxis, :]
    rising = -ramps[:-2] / widths[:-1, np.newaxis]
    falling = ramps[2:] / widths[1:, np.newaxis]
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, np.newaxis]
    return np.ascontiguousarray(bank.T, dtype=np.float32)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / SLANEY_HZ_PER_MEL
    logarithmic = SLANEY_BREAK_MEL + np.log(np.maximum(hz, 1e-9) / SLANEY_BREAK_HZ) / SLANEY_LOG_STEP
    return np.where(hz >= SLANEY_BREAK_HZ, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * SLANEY_HZ_PER_MEL
    logarithmic = SLANEY_BREAK_HZ * np.exp(SLANEY_LOG_STEP * (mel - SLANEY_BREAK_MEL))
    return np.where(mel >= SLANEY_BREAK_MEL, logarithmic, linear)


@functools.lru_cache(maxsize=16)
def _analysis_window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1].astype(np.float32)


@functools.lru_cache(maxsize=16)
def _band_filterbank(config: FeatureConfig) -> np.ndarray:
    """The filterbank cut to the FFT bins it uses (bins above the band are skipped)."""
    bank = mel_filterbank(config)
    used = np.flatnonzero(bank.any(axis=1))
    return np.ascontiguousarray(bank[: used[-1] + 1])


def power_spectrum(samples: np.ndarray, *, config: FeatureConfig, num_bins: int | None = None) -> np.ndarray:
    """Centred short-time power spectrum (Hann window, reflect-padded edges).

    Parameters
    ----------
    samples : np.ndarray
        1-D waveform at ``config.sample_rate`` Hz, full scale 1.
    config : FeatureConfig
        Uses ``n_fft`` and ``hop_length`` (samples).
    num_bins : int, optional
        Keep the first ``num_bins`` FFT bins (all ``n_fft // 2 + 1`` by default).

    Returns
    -------
    np.ndarray
        float32 ``(frames, bins)``: squared magnitude of the unnormalised FFT of each
        Hann-windowed frame (waveform units squared); frame ``t`` is centred on sample
        ``t * hop_length``, bin ``k`` is at ``k * sample_rate / n_fft`` Hz.

    Raises
    ------
    FeatureError
        If ``samples`` is not 1-D or is empty.
    """
    samples = np.asarray(samples)
    if samples.ndim != 1 or len(samples) == 0:
        raise FeatureError(f"need a 1-D waveform with samples, not an array of shape {samples.shape}")
    half = config.n_fft // 2
    waveform = np.asarray(samples, dtype=np.float32)
    if len(waveform) > half:
        # np.pad's reflection, without its set-up (a tenth of a 10-s recording's spectrum)
        padded = np.concatenate((waveform[half:0:-1], waveform, waveform[-2 : -half - 2 : -1]))
    else:
        padded = np.pad(waveform, half, mode="reflect")
    count = 1 + (len(padded) - config.n_fft) // config.hop_length
    step = padded.strides[0]
    frames = as_strided(padded, (count, config.n_fft), (step * config.hop_length, step), writeable=False)
    from scipy import fft as sp_fft  # imported on first use: beat bundles never need it

    windowed = frames * _analysis_window(config.n_fft)
    spectrum = sp_fft.rfft(windowed, axis=1, overwrite_x=True)[:, :num_bins]
    return np.asarray(np.square(spectrum.real) + np.square(spectrum.imag))


def log_mel(samples: np.ndarray, *, config: FeatureConfig) -> np.ndarray:
    """Log mel-band energies of a waveform.

    Parameters
    ----------
    samples : np.ndarray
        1-D waveform at ``config.sample_rate`` Hz, full scale 1.
    config : FeatureConfig
        Frame and band settings (see ``power_spectrum`` and ``mel_filterbank``).

    Returns
    -------
    np.ndarray
        float32 ``(frames, n_mels)``: natural log (nepers; 1 = 4.34 dB) of each band's
        energy plus ``LOG_FLOOR``, one frame every ``hop_length / sample_rate`` seconds.

    Raises
    ------
    FeatureError
        If ``samples`` is not a non-empty 1-D waveform.
    """
    bank = _band_filterbank(config)
    mel = power_spectrum(samples, config=config, num_bins=len(bank)) @ bank
    return np.asarray(np.log(mel + LOG_FLOOR).astype(np.float32))


def mfcc(log_mel_frames: np.ndarray, *, n_mfcc: int) -> np.ndarray:
    """Mel-frequency cepstral coefficients: orthonormal DCT-II of log-mel frames (as librosa).

    Parameters
    ----------
    log_mel_frames : np.ndarray
        ``(frames, n_mels)`` natural-log energies, as from ``log_mel``.
    n_mfcc : int
        Coefficients kept, from the 0th; at most ``n_mels``.

    Returns
    -------
    np.ndarray
        ``(frames, n_mfcc)`` coefficients in the log units of the input (nepers).
    """
    from scipy import fft as sp_fft

    return np.asarray(sp_fft.dct(log_mel_frames, type=2, norm="ortho", axis=1)[:, :n_mfcc])


def deltas(frames: np.ndarray, *, half_width: int = DELTA_HALF_WIDTH) -> np.ndarray:
    """Regression deltas along time (HTK formula, edge frames repeated).

    Parameters
    ----------
    frames : np.ndarray
        ``(frames, features)`` sequence.
    half_width : int
        Frames each side of the regression window.

    Returns
    -------
    np.ndarray
        Same shape: each feature's local slope, in its units per frame.
    """
    padded = np.pad(frames, ((half_width, half_width), (0, 0)), mode="edge")
    total = np.zeros_like(frames)
    n = len(frames)
    for k in range(1, half_width + 1):
        lead = padded[half_width + k : half_width + k + n]
        lag = padded[half_width - k : half_width - k + n]
        total += k * (lead - lag)
    return total / (2 * sum(k * k for k in range(1, half_width + 1)))


def feature_sequence(samples: np.ndarray, *, config: FeatureConfig) -> np.ndarray:
    """The per-frame features of one recording (``logmel`` and ``mfcc`` kinds).

    Parameters
    ----------
    samples : np.ndarray
        1-D waveform at ``config.sample_rate`` Hz, full scale 1.
    config : FeatureConfig
        The features to compute.

    Returns
    -------
    np.ndarray
        float32 ``(frames, num_features)``, one frame every ``hop_length / sample_rate``
        seconds: log-mel energies or MFCCs (nepers), relative to the recording's own
        reference when ``recording_mean_norm``, then their deltas (per frame).

    Raises
    ------
    FeatureError
        If ``samples`` is not a non-empty 1-D waveform.
    """
    sequence = log_mel(samples, config=config)
    if config.kind == "mfcc":
        sequence = mfcc(sequence, n_mfcc=config.n_mfcc)
    if config.recording_mean_norm:
        # Removes the stationary channel response (stethoscope, gain), which
        # otherwise lets a model learn the recording site instead of the heart.
        sequence = normalise_bands(sequence, reference=config.norm_reference)
    if config.deltas:
        first = deltas(sequence)
        sequence = np.concatenate([sequence, first, deltas(first)], axis=1)
    return sequence.astype(np.float32, copy=False)


def normalise_bands(sequence: np.ndarray, *, reference: str) -> np.ndarray:
    """Each band relative to its mean or its loud frames over the recording.

    ``peak``: relative to the band's 90th percentile over the recording and
    floored ``PEAK_FLOOR`` below it. Heart sounds then sit near 0 whatever the
    device, and what fills the gaps between them (murmurs) is measured against
    the heart sounds of the same recording, which held up better on sites a
    model never saw than the mean reference did (docs/models.md).

    Parameters
    ----------
    sequence : np.ndarray
        ``(frames, bands)`` log energies (nepers).
    reference : str
        One of ``NORM_REFERENCES``: ``mean`` or ``peak``.

    Returns
    -------
    np.ndarray
        Same shape, in nepers above (positive) or below the reference; ``peak`` values
        are at least ``-PEAK_FLOOR``.

    Raises
    ------
    FeatureError
        If ``reference`` is not one of ``NORM_REFERENCES``.
    """
    if reference not in NORM_REFERENCES:
        raise FeatureError(f"reference must be one of {NORM_REFERENCES}, not {reference!r}")
    if reference == "mean":
        return np.asarray(sequence - sequence.mean(axis=0, keepdims=True))
    loud = column_percentile(sequence, PEAK_PERCENTILE)
    return np.asarray(np.maximum(sequence - loud, -PEAK_FLOOR))


def column_percentile(values: np.ndarray, percentile: float) -> np.ndarray:
    """``np.percentile(values, percentile, axis=0, keepdims=True)``, the same bits, for a 2-D array.

    numpy's general routine spends more on its set-up than a 10-s recording's 401 frames
    cost to partition (about 0.06 of the 0.1 ms); the interpolation is its 'linear' one,
    which counts down from the upper neighbour past the midpoint.
    """
    position = percentile / 100.0 * (len(values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(values) - 1)
    parted = np.partition(values, (below, above), axis=0)
    low, high = parted[below : below + 1], parted[above : above + 1]
    fraction = position - below
    step = high - low
    if fraction >= 0.5:
        return np.asarray(high - step * (1 - fraction))
    return np.asarray(low + step * fraction)


def window_starts(num_frames: int, *, config: FeatureConfig) -> np.ndarray:
    """Where the model windows over a sequence start.

    Parameters
    ----------
    num_frames : int
        Length of the sequence, frames (beats, for ``cycles``).
    config : FeatureConfig
        Window length and step (``frames_per_window``, ``frames_per_hop``).

    Returns
    -------
    np.ndarray
        int64 start frames, every ``frames_per_hop`` frames, plus one more so that the
        last window ends at the sequence's end; ``[0]`` when one window covers it all.
    """
    width, hop = config.frames_per_window, config.frames_per_hop
    if num_frames <= width:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, num_frames - width + 1, hop)
    if starts[-1] + width < num_frames:
        starts = np.append(starts, num_frames - width)
    return starts


def sequence_windows(sequence: np.ndarray, *, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Slice a feature sequence into overlapping model windows.

    A sequence shorter than one window is repeated to fill it (a heart-sound
    recording is quasi-periodic, so this keeps its statistics unlike zero padding).

    Parameters
    ----------
    sequence : np.ndarray
        ``(frames, features)`` feature sequence, at least one frame.
    config : FeatureConfig
        Window length and step, frames.

    Returns
    -------
    windows : np.ndarray
        ``(n, frames_per_window, features)`` views into ``sequence``.
    start_frames : np.ndarray
        int64 ``(n,)`` first frame of each window.

    Raises
    ------
    FeatureError
        If ``sequence`` is not 2-D or has no frame.
    """
    if sequence.ndim != 2 or len(sequence) == 0:
        raise FeatureError(f"need a (frames, features) sequence with frames, not shape {sequence.shape}")
    width = config.frames_per_window
    if len(sequence) < width:
        sequence = sequence[np.arange(width) % len(sequence)]
    starts = window_starts(len(sequence), config=config)
    view = sliding_window_view(sequence, (width, sequence.shape[1]))[:, 0]
    return view[starts], starts


def batch_windows(recordings: Sequence[np.ndarray], *, config: FeatureConfig) -> WindowBatch:
    """The model windows of many recordings in one batch.

    Parameters
    ----------
    recordings : sequence of np.ndarray
        1-D waveforms at ``config.sample_rate`` Hz, full scale 1, of any length.
    config : FeatureConfig
        The features; ``cycles`` goes through ``beat_batch``.

    Returns
    -------
    WindowBatch
        Every recording's windows in input order, with their recording index and their
        bounds in seconds (the last window of a recording ends at its end).

    Raises
    ------
    FeatureError
        If a recording is not a non-empty 1-D waveform (``logmel`` and ``mfcc``).
    """
    if config.kind == "cycles":
        return beat_batch(recordings, config=config)
    seconds_per_frame = config.hop_length / config.sample_rate
    parts, owners, starts_s, ends_s = [], [], [], []
    for index, samples in enumerate(recordings):
        windows, starts = sequence_windows(feature_sequence(samples, config=config), config=config)
        duration_s = len(samples) / config.sample_rate
        parts.append(windows)
        owners.append(np.full(len(windows), index, dtype=np.int64))
        starts_s.append(starts * seconds_per_frame)
        ends_s.append(np.minimum(starts * seconds_per_frame + config.window_s, duration_s))
    if not parts:
        empty = np.zeros((0, *config.window_shape), dtype=np.float32)
        return WindowBatch(empty, np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    return WindowBatch(
        windows=np.ascontiguousarray(np.concatenate(parts), dtype=np.float32),
        recording_index=np.concatenate(owners),
        start_s=np.concatenate(starts_s),
        end_s=np.concatenate(ends_s),
    )


def beat_batch(recordings: Sequence[np.ndarray], *, config: FeatureConfig) -> WindowBatch:
    """Windows of consecutive heart beats of many recordings (``cycles`` features).

    Parameters
    ----------
    recordings : sequence of np.ndarray
        1-D waveforms at ``config.sample_rate`` Hz, full scale 1.
    config : FeatureConfig
        ``beats_per_window`` and ``beats_hop`` (beats), and the optional beat measures.

    Returns
    -------
    WindowBatch
        ``(n, beats_per_window, num_features)`` windows of ``ml.cycles`` beat measures;
        ``start_s``/``end_s`` are the first beat's start and the last beat's end, seconds,
        and ``beats`` holds each recording's measures.
    """
    from ml import cycles

    parts, owners, starts_s, ends_s, beats = [], [], [], [], []
    every = cycles.beat_measures_batch(
        recordings, sample_rate=config.sample_rate, spreads=config.beat_spreads, profile=config.beat_profile
    )
    for index, measures in enumerate(every):
        windows, starts = cycles.beat_windows(
            measures, beats_per_window=config.beats_per_window, hop=config.beats_hop
        )
        last = np.minimum(starts + config.beats_per_window, len(measures.values)) - 1
        parts.append(windows)
        owners.append(np.full(len(windows), index, dtype=np.int64))
        starts_s.append(measures.start_s[starts])
        ends_s.append(measures.end_s[last])
        beats.append(measures)
    if not parts:
        empty = np.zeros((0, *config.window_shape), dtype=np.float32)
        return WindowBatch(empty, np.zeros(0, np.int64), np.zeros(0), np.zeros(0), beats=())
    return WindowBatch(
        windows=np.ascontiguousarray(np.concatenate(parts), dtype=np.float32),
        recording_index=np.concatenate(owners),
        start_s=np.concatenate(starts_s),
        end_s=np.concatenate(ends_s),
        beats=tuple(beats),
    )
