"""Per-beat measures that cancel the stethoscope: each state of a beat against the heart
sounds of the same beat.

A device's gain and frequency response multiply every frame of a recording alike,
so in log energy they add the same constant to each band of S1, systole, S2 and
diastole of a beat; differences between states of one beat remove it, and so
does stationary noise's share only partly (it fills systole and diastole alike,
which is why systole is also measured against diastole). A murmur raises the
energy of the gap it fills against the sounds around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from ml import segmentation
from ml.segmentation import DIASTOLE, FRAME_RATE_HZ, S1, S2, SEGMENT_BANDS_HZ, SYSTOLE, Segmentation

BANDS = len(SEGMENT_BANDS_HZ)
# Murmurs differ in where they sit in the gap (ejection: mid-systole; regurgitation:
# all of it), so each gap is also measured in its early, middle and late third.
THIRDS = ("early", "mid", "late")
CYCLE_FEATURE_NAMES = (
    *(f"systole_vs_s1_{b}" for b in range(BANDS)),
    *(f"diastole_vs_s2_{b}" for b in range(BANDS)),
    *(f"systole_vs_diastole_{b}" for b in range(BANDS)),
    *(f"s2_vs_s1_{b}" for b in range(BANDS)),
    "systole_peak_vs_s1",
    "diastole_peak_vs_s2",
    "systole_share",
    "cycle_vs_median",
    *(f"systole_{third}_vs_s1_{b}" for third in THIRDS for b in range(BANDS)),
    *(f"diastole_{third}_vs_s2_{b}" for third in THIRDS for b in range(BANDS)),
)
NUM_CYCLE_FEATURES = len(CYCLE_FEATURE_NAMES)
# Optional measures of how a gap's energy moves within the beat (FeatureConfig.beat_spreads):
# the spread of the log envelope and of the two upper bands inside systole and diastole,
# and the share of each gap's frames within NEAR_SOUND nats of the loudest frame of the
# heart sound before it. A murmur fills its gap evenly (a small spread, many frames
# near the sound), an empty gap decays and rises; in log energy neither depends on the
# stethoscope's gain, and the response enters each band's spread only through its slope
# over the band.
SPREAD_BANDS = (2, 3)
SPREAD_FEATURE_NAMES = (
    "systole_envelope_spread",
    "diastole_envelope_spread",
    *(f"systole_spread_{b}" for b in SPREAD_BANDS),
    *(f"diastole_spread_{b}" for b in SPREAD_BANDS),
    "systole_near_s1",
    "diastole_near_s2",
)
NUM_SPREAD_FEATURES = len(SPREAD_FEATURE_NAMES)
# Optional time profile of every beat (FeatureConfig.beat_profile): each state cut into
# equal bins (S1, systole, S2, diastole), each bin's log band energies and envelope peak
# against the same beat's S1. Where in the gap the energy sits and what shape it has
# (a mid-systolic click, a crescendo, an early or late diastolic sound: S3, S4) is what
# the thirds only hint at; against S1 of the same beat the device still cancels.
PROFILE_BINS = (2, 6, 2, 8)
PROFILE_FEATURE_NAMES = tuple(
    f"{state}_{index}_{channel}"
    for state, bins in zip(("s1", "systole", "s2", "diastole"), PROFILE_BINS, strict=True)
    for index in range(bins)
    for channel in (*(f"band_{b}" for b in range(BANDS)), "peak")
)
NUM_PROFILE_FEATURES = len(PROFILE_FEATURE_NAMES)
NEAR_SOUND = 3.0
LOUD_PERCENTILE = 90.0
# Log-energy differences are clipped here (about 87 dB): beyond it a state is silent,
# and the exact depth of the silence is the recorder's noise floor, not the heart.
MAX_LOG_RATIO = 20.0


@dataclass(frozen=True)
class BeatMeasures:
    """Per-beat measures of one recording: ``values`` ``(beats, NUM_CYCLE_FEATURES)``,
    ``start_s``/``end_s`` per beat, and the segmentation they came from. ``whole``
    is true when no complete beat was found and the whole recording stands for one."""

    values: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    segmentation: Segmentation
    whole: bool
    gap_fill: np.ndarray


def _vector(
    level: list[np.ndarray], peak: list[np.ndarray], thirds: list[np.ndarray], extra: list[np.ndarray]
) -> np.ndarray:
    """Assemble beat measures ``(beats, NUM_CYCLE_FEATURES)`` from per-state log levels ``(beats, bands)``."""
    parts = [
        level[SYSTOLE] - level[S1],
        level[DIASTOLE] - level[S2],
        level[SYSTOLE] - level[DIASTOLE],
        level[S2] - level[S1],
        (peak[SYSTOLE] - peak[S1])[:, np.newaxis],
        (peak[DIASTOLE] - peak[S2])[:, np.newaxis],
        *(column[:, np.newaxis] for column in extra),
        *(third - level[S1] for third in thirds[:3]),
        *(third - level[S2] for third in thirds[3:]),
    ]
    return np.asarray(
        np.clip(np.nan_to_num(np.concatenate(parts, axis=1), nan=0.0), -MAX_LOG_RATIO, MAX_LOG_RATIO)
    )


def _run_means(cumulative: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Log mean power per band over frames ``[lo, hi)`` of each beat (at least one frame)."""
    hi = np.maximum(hi, lo + 1)
    return np.asarray(np.log((cumulative[hi] - cumulative[lo]) / (hi - lo)[:, np.newaxis] + 1e-12))


def _profile_runs(bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame runs ``(lo, hi)`` of the profile bins, ``(bins, beats)`` each, bins in beat order."""
    los, his = [], []
    for state, bins in enumerate(PROFILE_BINS):
        lo, hi = bounds[:, state], bounds[:, state + 1]
        length = hi - lo
        for index in range(bins):
            los.append(lo + (length * index) // bins)
            his.append(lo + (length * (index + 1)) // bins)
    return np.stack(los), np.stack(his)


def _beat_profile(energies: np.ndarray, bounds: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """The ``PROFILE_FEATURE_NAMES`` of each complete beat.

    ``cumulative`` is the running sum of the band powers (any common scale, as in
    `_beats_vector`: only ratios are kept); a bin shorter than a frame takes its first frame.
    """
    los, his = _profile_runs(bounds)
    bins, beats = los.shape
    levels = _run_means(cumulative, los.ravel(), his.ravel()).reshape(bins, beats, BANDS)
    envelope = np.append(energies[:, BANDS].astype(np.float64), 0.0)
    # One reduceat over (lo, hi) pairs: every even result is a bin's maximum.
    pairs = np.stack([los.T.ravel(), np.maximum(his.T.ravel(), los.T.ravel())], axis=1).ravel()
    peaks = np.maximum.reduceat(envelope, pairs)[::2].reshape(beats, bins)
    s1_level = (
        levels[0] if PROFILE_BINS[0] == 1 else np.log(np.mean(np.exp(levels[: PROFILE_BINS[0]]), axis=0))
    )
    s1_peak = peaks[:, : PROFILE_BINS[0]].max(axis=1, keepdims=True)
    band_parts = np.transpose(levels - s1_level[np.newaxis], (1, 0, 2))
    profile = np.concatenate([band_parts, (peaks - s1_peak)[:, :, np.newaxis]], axis=2).reshape(beats, -1)
    return np.asarray(np.clip(np.nan_to_num(profile, nan=0.0), -MAX_LOG_RATIO, MAX_LOG_RATIO))


def _beats_vector(
    energies: np.ndarray, bounds: np.ndarray, *, spreads: bool = False, profile: bool = False
) -> np.ndarray:
    """Measures of complete beats with frame ``bounds`` ``(beats, 5)`` (state starts, then the end)."""
    bands = energies[:, :BANDS].astype(np.float64)
    # Ratios do not depend on the offset; it keeps exp() in range.
    power = np.exp(bands - bands.max(axis=0, keepdims=True))
    cumulative = np.concatenate([np.zeros((1, BANDS)), np.cumsum(power, axis=0)])
    # Every run whose mean is needed, as (lo, hi) frame pairs: the four states, then
    # the thirds of systole and of diastole; one pass over all of them.
    los, his = [bounds[:, k] for k in range(4)], [bounds[:, k + 1] for k in range(4)]
    for state in (SYSTOLE, DIASTOLE):
        lo, hi = bounds[:, state], bounds[:, state + 1]
        length = hi - lo
        for index in range(len(THIRDS)):
            los.append(lo + (length * index) // len(THIRDS))
            his.append(lo + (length * (index + 1)) // len(THIRDS))
    means = _run_means(cumulative, np.concatenate(los), np.concatenate(his))
    runs = means.reshape(len(los), len(bounds), BANDS)
    level, thirds = list(runs[:4]), list(runs[4:])
    envelope = energies[: bounds[-1, 4], BANDS]
    peaks = np.maximum.reduceat(envelope, bounds[:, :4].ravel()).reshape(-1, 4)
    cycle = (bounds[:, 4] - bounds[:, 0]).astype(np.float64)
    extra = [(bounds[:, 2] - bounds[:, 1]) / cycle, np.log(cycle / np.median(cycle))]
    values = _vector(level, [peaks[:, k] for k in range(4)], thirds, extra)
    parts = [values]
    if spreads:
        parts.append(_beat_spreads(energies, bounds, peaks))
    if profile:
        parts.append(_beat_profile(energies, bounds, cumulative))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else values


def _run_spreads(signal: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Standard deviation of ``signal`` ``(frames, k)`` over frames ``[lo, hi)`` of each beat.

    0 for a single frame.
    """
    hi = np.maximum(hi, lo + 1)
    centred = signal - signal.mean(axis=0)
    first = np.concatenate([np.zeros((1, signal.shape[1])), np.cumsum(centred, axis=0)])
    second = np.concatenate([np.zeros((1, signal.shape[1])), np.cumsum(centred**2, axis=0)])
    count = (hi - lo)[:, np.newaxis]
    mean = (first[hi] - first[lo]) / count
    return np.asarray(np.sqrt(np.maximum((second[hi] - second[lo]) / count - mean**2, 0.0)))


def _share_above(envelope: np.ndarray, lo: np.ndarray, hi: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Share of the frames ``[lo, hi)`` of each beat whose envelope exceeds that beat's threshold."""
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(len(lo))
    owner = np.repeat(np.arange(len(lo)), lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    above = envelope[np.repeat(lo, lengths) + offsets] > threshold[owner]
    return np.asarray(np.bincount(owner, weights=above, minlength=len(lo)) / np.maximum(lengths, 1))


def _beat_spreads(energies: np.ndarray, bounds: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """The ``SPREAD_FEATURE_NAMES`` of each complete beat."""
    signal = energies[:, [BANDS, *SPREAD_BANDS]].astype(np.float64)
    envelope = signal[:, 0]
    sys_lo, sys_hi = bounds[:, SYSTOLE], bounds[:, SYSTOLE + 1]
    dia_lo, dia_hi = bounds[:, DIASTOLE], bounds[:, DIASTOLE + 1]
    systole = _run_spreads(signal, sys_lo, sys_hi)
    diastole = _run_spreads(signal, dia_lo, dia_hi)
    near = [
        _share_above(envelope, sys_lo, sys_hi, peaks[:, S1] - NEAR_SOUND),
        _share_above(envelope, dia_lo, dia_hi, peaks[:, S2] - NEAR_SOUND),
    ]
    return np.column_stack([systole[:, 0], diastole[:, 0], systole[:, 1:], diastole[:, 1:], *near])


def _whole_spreads(energies: np.ndarray, states: np.ndarray) -> np.ndarray:
    """The ``SPREAD_FEATURE_NAMES`` of a recording without a complete beat, each state's frames pooled."""
    signal = energies[:, [BANDS, *SPREAD_BANDS]].astype(np.float64)
    envelope = signal[:, 0]

    def spread(state: int) -> np.ndarray:
        frames = signal[states == state]
        return frames.std(axis=0) if len(frames) > 1 else np.zeros(signal.shape[1])

    def near(state: int, sound: int) -> float:
        gap, loud = envelope[states == state], envelope[states == sound]
        return float(np.mean(gap > loud.max() - NEAR_SOUND)) if len(gap) and len(loud) else 0.0

    systole, diastole = spread(SYSTOLE), spread(DIASTOLE)
    return np.concatenate(
        [systole[:1], diastole[:1], systole[1:], diastole[1:], [near(SYSTOLE, S1), near(DIASTOLE, S2)]]
    )[np.newaxis]


def _pooled_level(frames: np.ndarray) -> np.ndarray:
    if len(frames) == 0:
        return np.full((1, BANDS), np.nan)
    top = frames.max(axis=0)
    return np.asarray((top + np.log(np.mean(np.exp(frames - top), axis=0)))[np.newaxis])


def _whole_vector(energies: np.ndarray, states: np.ndarray) -> np.ndarray:
    """One row of measures for a recording without a complete beat: each state's frames pooled."""
    bands, envelope = energies[:, :BANDS].astype(np.float64), energies[:, BANDS]
    levels = [_pooled_level(bands[states == state]) for state in range(4)]
    peaks = [
        np.array([envelope[states == state].max() if np.any(states == state) else np.nan])
        for state in range(4)
    ]
    thirds = []
    for state in (SYSTOLE, DIASTOLE):
        frames = bands[states == state]
        edges = np.linspace(0, len(frames), len(THIRDS) + 1).astype(int)
        thirds += [
            _pooled_level(frames[lo : max(hi, lo + 1)]) for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        ]
    extra = [np.array([np.mean(states == SYSTOLE)]), np.zeros(1)]
    return _vector(levels, peaks, thirds, extra)


def _whole_profile(energies: np.ndarray, states: np.ndarray) -> np.ndarray:
    """The ``PROFILE_FEATURE_NAMES`` of a recording without a complete beat, each state's frames pooled."""
    bands, envelope = energies[:, :BANDS].astype(np.float64), energies[:, BANDS].astype(np.float64)
    levels, peaks = [], []
    for state, bins in enumerate(PROFILE_BINS):
        frames, loud = bands[states == state], envelope[states == state]
        edges = np.linspace(0, len(frames), bins + 1).astype(int)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            hi = max(hi, lo + 1)
            levels.append(_pooled_level(frames[lo:hi])[0])
            peaks.append(loud[lo:hi].max() if len(loud[lo:hi]) else np.nan)
    level, peak = np.array(levels), np.array(peaks)
    first = PROFILE_BINS[0]
    top = np.nanmax(level[:first], axis=0)
    s1_level = top + np.log(np.nanmean(np.exp(level[:first] - top), axis=0))
    profile = np.concatenate([level - s1_level, (peak - np.nanmax(peak[:first]))[:, np.newaxis]], axis=1)
    return np.asarray(np.clip(np.nan_to_num(profile.reshape(1, -1), nan=0.0), -MAX_LOG_RATIO, MAX_LOG_RATIO))


def beat_measures(
    samples: np.ndarray,
    *,
    sample_rate: int,
    classifier: segmentation.FrameClassifier | None = None,
    spreads: bool = False,
    profile: bool = False,
) -> BeatMeasures:
    """Segment a band-passed recording and measure each of its complete beats.

    With ``spreads`` every beat also carries the ``SPREAD_FEATURE_NAMES`` after the
    ``CYCLE_FEATURE_NAMES``, and with ``profile`` the ``PROFILE_FEATURE_NAMES`` after those.
    """
    energies = segmentation.band_energies(samples, sample_rate=sample_rate)
    found = segmentation.segment(samples, sample_rate=sample_rate, classifier=classifier, energies=energies)
    cycles = found.cycles
    fill = gap_fill(energies)
    if len(cycles) == 0:
        duration = len(samples) / sample_rate
        values = _whole_vector(energies, found.states)
        if spreads:
            values = np.concatenate([values, _whole_spreads(energies, found.states)], axis=1)
        if profile:
            values = np.concatenate([values, _whole_profile(energies, found.states)], axis=1)
        values = values.astype(np.float32)
        return BeatMeasures(values, np.zeros(1), np.array([duration]), found, whole=True, gap_fill=fill)
    return BeatMeasures(
        values=_beats_vector(energies, cycles, spreads=spreads, profile=profile).astype(np.float32),
        start_s=cycles[:, 0] / FRAME_RATE_HZ,
        end_s=cycles[:, 4] / FRAME_RATE_HZ,
        segmentation=found,
        whole=False,
        gap_fill=fill,
    )


def gap_fill(energies: np.ndarray) -> np.ndarray:
    """Per band, the median and the 10th-percentile frame against the loud (90th) frames.

    What fills the gaps between heart sounds, measured against the heart sounds of
    the same recording (a cue that kept its direction on every PhysioNet site).
    """
    if len(energies) == 0:
        return np.zeros(2 * BANDS, dtype=np.float32)
    percentiles = segmentation.column_percentiles(energies[:, :BANDS], [10.0, 50.0, LOUD_PERCENTILE])
    return _gap_fill_from(np.asarray(percentiles).T)


def beat_windows(measures: BeatMeasures, *, beats_per_window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n, beats_per_window, features)`` of consecutive beats and each window's first beat.

    Fewer beats than a window are repeated to fill it (a heart-sound recording is
    quasi-periodic); the last beats are always covered.
    """
    values = measures.values
    count = len(values)
    if count < beats_per_window:
        return values[np.arange(beats_per_window) % count][np.newaxis], np.zeros(1, dtype=np.int64)
    starts = np.arange(0, count - beats_per_window + 1, hop)
    if starts[-1] + beats_per_window < count:
        starts = np.append(starts, count - beats_per_window)
    windows = np.stack([values[s : s + beats_per_window] for s in starts])
    return windows, starts


def recording_statistics(measures: BeatMeasures) -> np.ndarray:
    """Median and inter-quartile spread of every beat measure, then the beat-length spread."""
    values = measures.values
    q25, median, q75 = segmentation.column_percentiles(values, [25.0, 50.0, 75.0])
    lengths = measures.end_s - measures.start_s
    spread = float(np.std(lengths) / np.mean(lengths)) if len(lengths) > 1 and np.mean(lengths) > 0 else 0.0
    return np.concatenate([median, q75 - q25, [spread], measures.gap_fill]).astype(np.float32)


RECORDING_STATISTIC_NAMES = (
    *(f"median_{name}" for name in CYCLE_FEATURE_NAMES),
    *(f"iqr_{name}" for name in CYCLE_FEATURE_NAMES),
    "beat_length_spread",
    *(f"median_vs_loud_{b}" for b in range(BANDS)),
    *(f"quiet_vs_loud_{b}" for b in range(BANDS)),
)


# ---------------------------------------------------------------------------
# Many recordings at once: the measures of _beats_vector for every beat of a chunk,
# the run means and peaks gathered in compiled loops and each log and exp run once
# over the chunk; the same float operations in the same order, so the same values.


@njit(cache=True)
def _shifted_bands(energies, offsets):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # Each recording's band log energies less their maximum, float64 (_beats_vector's exp argument).
    out = np.empty((energies.shape[0], BANDS))
    for r in range(offsets.shape[0] - 1):
        a, b = offsets[r], offsets[r + 1]
        for c in range(BANDS):
            top = np.float64(energies[a, c])
            for i in range(a + 1, b):
                top = max(top, np.float64(energies[i, c]))
            for i in range(a, b):
                out[i, c] = np.float64(energies[i, c]) - top
    return out


@njit(cache=True)
def _run_arguments(power, energies, offsets, bounds, owners, thirds):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # Per beat: the mean power of its ten runs (four states, the thirds of systole and
    # diastole) plus 1e-12 (_run_means' log argument), the envelope peak of each state
    # and the systolic share. Beats of a recording are consecutive rows of bounds.
    beats = bounds.shape[0]
    runs = 4 + 2 * thirds
    arguments = np.empty((runs, beats, BANDS))
    peaks = np.empty((beats, 4), dtype=energies.dtype)
    share = np.empty(beats)
    cumulative = np.zeros((energies.shape[0] + offsets.shape[0], BANDS))
    for r in range(offsets.shape[0] - 1):
        a, b = offsets[r], offsets[r + 1]
        base = a + r  # recording r's cumulative sums: rows base .. base + (b - a)
        for c in range(BANDS):
            cumulative[base, c] = 0.0
            for i in range(a, b):
                cumulative[base + i - a + 1, c] = cumulative[base + i - a, c] + power[i, c]
    for m in range(beats):
        r = owners[m]
        base = offsets[r] + r
        start = offsets[r]
        for k in range(runs):
            if k < 4:
                lo, hi = bounds[m, k], bounds[m, k + 1]
            else:
                state = SYSTOLE if k < 4 + thirds else DIASTOLE
                index = (k - 4) % thirds
                first, length = bounds[m, state], bounds[m, state + 1] - bounds[m, state]
                lo = first + (length * index) // thirds
                hi = first + (length * (index + 1)) // thirds
            hi = max(hi, lo + 1)
            for c in range(BANDS):
                arguments[k, m, c] = (cumulative[base + hi, c] - cumulative[base + lo, c]) / (hi - lo) + 1e-12
        for k in range(4):
            top = energies[start + bounds[m, k], BANDS]
            for i in range(bounds[m, k] + 1, bounds[m, k + 1]):
                top = max(top, energies[start + i, BANDS])
            peaks[m, k] = top
        share[m] = (bounds[m, 2] - bounds[m, 1]) / np.float64(bounds[m, 4] - bounds[m, 0])
    return arguments, peaks, share


def beat_measures_batch(
    recordings: Sequence[np.ndarray],
    *,
    sample_rate: int,
    classifier: segmentation.FrameClassifier | None = None,
    spreads: bool = False,
    profile: bool = False,
) -> list[BeatMeasures]:
    """:func:`beat_measures` of every recording, computed over all of them at once."""
    if spreads or profile:
        return [
            beat_measures(
                samples, sample_rate=sample_rate, classifier=classifier, spreads=spreads, profile=profile
            )
            for samples in recordings
        ]
    found, energies, loudness = segmentation._segment_many(
        recordings, sample_rate=sample_rate, classifier=classifier
    )
    fills = [gap_fill(e) if q is None else _gap_fill_from(q) for e, q in zip(energies, loudness, strict=True)]
    with_beats = [index for index, seg in enumerate(found) if len(seg.cycles)]
    values: dict[int, np.ndarray] = {}
    if with_beats:
        stacked = np.concatenate([energies[index] for index in with_beats])
        counts = np.array([len(energies[index]) for index in with_beats], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        bounds = np.concatenate([found[index].cycles for index in with_beats])
        beats = np.array([len(found[index].cycles) for index in with_beats], dtype=np.int64)
        owners = np.repeat(np.arange(len(with_beats)), beats)
        power = np.exp(_shifted_bands(stacked, offsets))
        arguments, peaks, share = _run_arguments(power, stacked, offsets, bounds, owners, len(THIRDS))
        level = np.log(arguments.reshape(-1, BANDS)).reshape(arguments.shape)
        cycle = (bounds[:, 4] - bounds[:, 0]).astype(np.float64)
        medians = np.repeat([np.median(part) for part in np.split(cycle, np.cumsum(beats)[:-1])], beats)
        # _vector over every beat of the chunk at once, as _beats_vector does per recording
        vectors = _vector(
            list(level[:4]),
            [peaks[:, k] for k in range(4)],
            list(level[4:]),
            [share, np.log(cycle / medians)],
        ).astype(np.float32)
        for index, part in zip(with_beats, np.split(vectors, np.cumsum(beats)[:-1]), strict=True):
            values[index] = part
    results = []
    for index, samples in enumerate(recordings):
        seg, fill = found[index], fills[index]
        if index not in values:
            duration = len(samples) / sample_rate
            whole = _whole_vector(energies[index], seg.states).astype(np.float32)
            results.append(
                BeatMeasures(whole, np.zeros(1), np.array([duration]), seg, whole=True, gap_fill=fill)
            )
            continue
        results.append(
            BeatMeasures(
                values=values[index],
                start_s=seg.cycles[:, 0] / FRAME_RATE_HZ,
                end_s=seg.cycles[:, 4] / FRAME_RATE_HZ,
                segmentation=seg,
                whole=False,
                gap_fill=fill,
            )
        )
    return results


def _gap_fill_from(percentiles: np.ndarray) -> np.ndarray:
    """:func:`gap_fill` from the 10th, 50th and 90th percentile of each band ``(bands, 3)``."""
    low, median, loud = percentiles[:, 0], percentiles[:, 1], percentiles[:, 2]
    return np.asarray(
        np.clip(np.concatenate([median - loud, low - loud]), -MAX_LOG_RATIO, 0).astype(np.float32)
    )
