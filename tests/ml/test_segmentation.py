"""Heart-cycle segmentation on synthetic beat trains with known onsets and on annotated real recordings."""

from __future__ import annotations

import numpy as np
import pytest

from ml import segmentation
from ml.audio import decode_audio, prepare_samples
from ml.segmentation import S1, S2
from ml.segmenter_training import read_annotation
from tests.ml.conftest import ROOT
from tests.ml.synthetic_beats import heart_sounds

RATE = 2000
CIRCOR = ROOT / "samples" / "circor"


def _f1(detected: np.ndarray, truth: np.ndarray, span: tuple[float, float]) -> float:
    tp, fp, fn = segmentation.onset_scores(detected, truth, span=span)
    return 2 * tp / max(2 * tp + fp + fn, 1)


def _segment(samples: np.ndarray) -> segmentation.Segmentation:
    audio = prepare_samples(samples, source_rate=RATE)
    return segmentation.segment(audio.samples, sample_rate=RATE)


@pytest.mark.parametrize(
    "case",
    [
        {"bpm": 50.0},
        {"bpm": 72.0},
        {"bpm": 120.0},
        {"bpm": 160.0},  # systole longer than diastole
        {"bpm": 72.0, "jitter": 0.1},  # irregular rhythm
        {"bpm": 72.0, "missing": (4,)},  # a dropped beat
        {"bpm": 72.0, "snr_db": 3.0},  # noise
    ],
)
def test_it_finds_s1_and_s2_onsets_within_60_ms(case: dict) -> None:
    samples, s1, s2 = heart_sounds(duration_s=12.0, seed=3, **case)
    found = _segment(samples)
    assert _f1(found.onsets_s(S1), s1, (0.0, 12.0)) >= 0.9
    assert _f1(found.onsets_s(S2), s2, (0.0, 12.0)) >= 0.9


@pytest.mark.parametrize("bpm", [50.0, 72.0, 120.0, 160.0])
def test_it_reads_the_heart_rate_from_the_cycles(bpm: float) -> None:
    samples, _, _ = heart_sounds(bpm=bpm, duration_s=12.0, seed=1)
    summary = _segment(samples).summary()
    assert summary["heart_rate_bpm"] == pytest.approx(bpm, rel=0.05)
    assert summary["cycles"] >= int(12.0 * bpm / 60) - 3


def test_it_reports_rate_variability_for_an_irregular_rhythm() -> None:
    regular = _segment(heart_sounds(bpm=72.0, seed=2)[0]).summary()
    irregular = _segment(heart_sounds(bpm=72.0, jitter=0.15, seed=2)[0]).summary()
    assert irregular["heart_rate_sd_bpm"] > 2 * max(regular["heart_rate_sd_bpm"], 0.5)


def test_it_keeps_the_states_in_their_cyclic_order() -> None:
    found = _segment(heart_sounds(bpm=80.0, jitter=0.05, snr_db=10.0, seed=4)[0])
    kinds = [kind for kind, _, _ in found.segments]
    assert all((after - before) % 4 == 1 for before, after in zip(kinds, kinds[1:], strict=False))
    assert all(row[0] < row[1] < row[2] < row[3] < row[4] for row in found.cycles)


def test_it_ignores_the_device_gain() -> None:
    samples, _, _ = heart_sounds(bpm=72.0, snr_db=15.0, seed=5)
    quiet = segmentation.segment(samples * 0.01, sample_rate=RATE)
    loud = segmentation.segment(samples * 10.0, sample_rate=RATE)
    np.testing.assert_array_equal(quiet.states, loud.states)


def test_it_summarises_without_a_complete_beat() -> None:
    found = _segment(heart_sounds(bpm=60.0, duration_s=1.6, seed=6)[0])
    summary = found.summary()
    assert summary["cycles"] <= 1
    assert summary["segments"]  # the states it saw are still drawn


def _circor_counts(name: str) -> np.ndarray:
    audio = decode_audio(CIRCOR / f"{name}.wav")
    annotation = read_annotation(CIRCOR / f"{name}.tsv", duration_s=audio.duration_s)
    found = segmentation.segment(audio.samples, sample_rate=audio.sample_rate)
    return np.array(
        [
            segmentation.onset_scores(found.onsets_s(s), annotation.onsets_s(s), span=annotation.span)
            for s in (S1, S2)
        ]
    )


@pytest.mark.parametrize("name", ["23625_AV", "24160_MV"])
def test_it_segments_annotated_normal_recordings(name: str) -> None:
    for tp, fp, fn in _circor_counts(name):
        assert 2 * tp / (2 * tp + fp + fn) >= 0.9


def test_it_segments_annotated_recordings_with_murmurs_less_well_but_usefully() -> None:
    pooled = sum(_circor_counts(name) for name in ("9979_PV", "14241_AV"))
    for tp, fp, fn in pooled:
        assert 2 * tp / (2 * tp + fp + fn) >= 0.6


def test_it_counts_onset_matches_once_each() -> None:
    truth = np.array([1.0, 2.0, 3.0])
    detected = np.array([1.03, 1.05, 2.2, 3.0])
    assert segmentation.onset_scores(detected, truth, span=(0.0, 4.0)) == (2, 2, 1)


def test_it_skips_onsets_outside_the_annotated_span() -> None:
    truth = np.array([5.0, 6.0])
    detected = np.array([1.0, 5.01, 6.02, 9.0])
    assert segmentation.onset_scores(detected, truth, span=(4.5, 6.5)) == (2, 0, 0)


def test_it_gives_each_state_a_duration_window_around_its_mean() -> None:
    low, high, table = segmentation.duration_tables(0.8, 0.32)
    assert np.all(low >= 1) and np.all(high > low)
    for state in range(4):
        assert np.exp(table[state, low[state] : high[state] + 1]).sum() == pytest.approx(1.0)
    # diastole is the longest state at 75 bpm
    assert np.argmax(table[3]) > np.argmax(table[1]) > np.argmax(table[0])


def test_the_classifier_round_trips_through_json() -> None:
    model = segmentation.load_classifier()
    again = segmentation.FrameClassifier.from_json(model.to_json())
    features = np.random.default_rng(0).standard_normal((40, len(segmentation.SEGMENT_BANDS_HZ) + 1))
    np.testing.assert_allclose(model.log_emissions(features), again.log_emissions(features), rtol=1e-6)


@pytest.mark.parametrize("rows", [1, 2, 7, 500])
def test_column_percentiles_match_numpy(rows: int) -> None:
    values = np.random.default_rng(rows).normal(size=(rows, 5)).astype(np.float32)
    wanted = [10.0, 50.0, 90.0, 95.0]
    np.testing.assert_allclose(
        segmentation.column_percentiles(values, wanted), np.percentile(values, wanted, axis=0), atol=1e-6
    )


def test_standardise_matches_the_percentile_definition() -> None:
    energies = np.random.default_rng(3).normal(size=(400, 5)).astype(np.float32) * 3
    energies[:50, 0] = -60.0  # gated silence, raised to the floor
    floored = np.maximum(energies, np.percentile(energies, 95, axis=0) - segmentation.FLOOR_NEPERS)
    low, centre, high = np.percentile(floored, [10, 50, 90], axis=0)
    expected = (floored - centre) / (high - low)
    np.testing.assert_allclose(segmentation.standardise(energies), expected, atol=1e-5)


@pytest.mark.parametrize("frames", [7, 8, 60, 1000])
def test_homomorphic_envelope_is_scipys_zero_phase_lowpass(frames: int) -> None:
    from scipy import signal

    power = np.exp(np.random.default_rng(frames).normal(size=frames)).astype(np.float32)
    sos = signal.butter(
        1, segmentation.HOMOMORPHIC_CUTOFF_HZ, btype="low", fs=segmentation.FRAME_RATE_HZ, output="sos"
    )
    expected = signal.sosfiltfilt(sos, np.log(power + 1e-8))
    np.testing.assert_allclose(segmentation.homomorphic_envelope(power), expected, atol=1e-5)
