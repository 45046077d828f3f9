"""Per-beat measures: what cancels the device and what a murmur moves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from ml import cycles, features, segmentation
from ml.audio import prepare_samples
from ml.bundle import DEFAULT_SCREENING_BUNDLE
from ml.inference import Engine
from tests.ml.conftest import SAMPLES, encode
from tests.ml.synthetic_beats import heart_sounds

RATE = 2000
NAMES = cycles.CYCLE_FEATURE_NAMES


def _measures(samples: np.ndarray, *, spreads: bool = False, profile: bool = False) -> cycles.BeatMeasures:
    audio = prepare_samples(samples, source_rate=RATE)
    return cycles.beat_measures(audio.samples, sample_rate=RATE, spreads=spreads, profile=profile)


def _median(samples: np.ndarray, name: str) -> float:
    return float(np.median(_measures(samples).values[:, NAMES.index(name)]))


def test_the_feature_count_matches_what_the_feature_config_declares() -> None:
    assert len(NAMES) == cycles.NUM_CYCLE_FEATURES == features.NUM_CYCLE_FEATURES
    config = features.FeatureConfig(kind="cycles")
    assert config.window_shape == (config.beats_per_window, cycles.NUM_CYCLE_FEATURES)


def test_it_measures_one_row_per_complete_beat() -> None:
    samples, s1, _ = heart_sounds(bpm=75.0, duration_s=12.0, snr_db=20.0, seed=1)
    measures = _measures(samples)
    assert not measures.whole
    assert len(measures.values) == pytest.approx(len(s1) - 1, abs=1)
    assert np.all(np.diff(measures.start_s) > 0.6)


def test_a_systolic_murmur_raises_systole_against_s1_and_diastole() -> None:
    clean, _, _ = heart_sounds(bpm=72.0, snr_db=25.0, seed=2)
    murmur, _, _ = heart_sounds(bpm=72.0, snr_db=25.0, murmur=0.25, seed=2)
    for name in ("systole_vs_s1_3", "systole_vs_diastole_3", "systole_mid_vs_s1_3"):
        assert _median(murmur, name) > _median(clean, name) + 1.0


def test_it_does_not_move_with_the_device_gain() -> None:
    samples, _, _ = heart_sounds(bpm=72.0, snr_db=20.0, seed=3)
    np.testing.assert_allclose(_measures(samples).values, _measures(samples * 50.0).values, atol=1e-3)


def test_a_device_response_moves_the_measures_far_less_than_a_murmur() -> None:
    clean, _, _ = heart_sounds(bpm=72.0, snr_db=25.0, seed=4)
    murmur, _, _ = heart_sounds(bpm=72.0, snr_db=25.0, murmur=0.25, seed=4)
    # A stethoscope that boosts the high band by about 12 dB relative to the low one.
    sos = signal.butter(1, 150.0, btype="high", fs=RATE, output="sos")
    tilted = clean + 3.0 * signal.sosfilt(sos, clean)
    name = "systole_vs_diastole_3"
    device_shift = abs(_median(tilted, name) - _median(clean, name))
    murmur_shift = abs(_median(murmur, name) - _median(clean, name))
    assert device_shift < murmur_shift / 3


def test_a_recording_without_a_complete_beat_gives_one_row() -> None:
    samples, _, _ = heart_sounds(bpm=100.0, duration_s=1.2, snr_db=20.0, seed=5)
    measures = _measures(samples)
    assert measures.values.shape == (1, cycles.NUM_CYCLE_FEATURES)
    assert np.all(np.isfinite(measures.values))


def test_beat_windows_repeat_a_short_sequence_and_cover_the_last_beats() -> None:
    samples, _, _ = heart_sounds(bpm=90.0, duration_s=20.0, snr_db=20.0, seed=6)
    measures = _measures(samples)
    windows, starts = cycles.beat_windows(measures, beats_per_window=8, hop=4)
    assert windows.shape[1:] == (8, cycles.NUM_CYCLE_FEATURES)
    assert starts[-1] + 8 == len(measures.values)
    few = cycles.BeatMeasures(
        measures.values[:3],
        measures.start_s[:3],
        measures.end_s[:3],
        measures.segmentation,
        False,
        measures.gap_fill,
    )
    windows, _ = cycles.beat_windows(few, beats_per_window=8, hop=4)
    np.testing.assert_array_equal(windows[0, 3:6], measures.values[:3])


def _spreads(samples: np.ndarray) -> np.ndarray:
    return _measures(samples, spreads=True).values


def _spread_median(samples: np.ndarray, name: str) -> float:
    index = cycles.NUM_CYCLE_FEATURES + cycles.SPREAD_FEATURE_NAMES.index(name)
    return float(np.median(_spreads(samples)[:, index]))


def test_spreads_follow_the_beat_measures_and_their_count_matches_the_config() -> None:
    samples, _, _ = heart_sounds(bpm=72.0, snr_db=20.0, seed=8)
    plain, spread = _measures(samples).values, _spreads(samples)
    assert spread.shape == (len(plain), cycles.NUM_CYCLE_FEATURES + cycles.NUM_SPREAD_FEATURES)
    np.testing.assert_array_equal(spread[:, : cycles.NUM_CYCLE_FEATURES], plain)
    assert cycles.NUM_SPREAD_FEATURES == features.NUM_SPREAD_FEATURES
    config = features.FeatureConfig(kind="cycles", beat_spreads=True)
    assert config.window_shape == (config.beats_per_window, spread.shape[1])
    # Bundles made before the option keep their fingerprints.
    assert "beat_spreads" not in features.FeatureConfig(kind="cycles").to_dict()


def test_a_murmur_fills_systole_close_to_s1() -> None:
    clean, _, _ = heart_sounds(bpm=72.0, snr_db=25.0, seed=9)
    murmur, _, _ = heart_sounds(bpm=72.0, snr_db=25.0, murmur=0.25, seed=9)
    assert _spread_median(murmur, "systole_near_s1") > _spread_median(clean, "systole_near_s1") + 0.2
    # Diastole stays silent in both: its measures do not follow the systolic murmur.
    assert abs(_spread_median(murmur, "diastole_near_s2") - _spread_median(clean, "diastole_near_s2")) < 0.2


def test_spreads_do_not_move_with_the_device_gain() -> None:
    samples, _, _ = heart_sounds(bpm=72.0, snr_db=20.0, seed=10)
    np.testing.assert_allclose(_spreads(samples), _spreads(samples * 50.0), atol=1e-3)


def test_spreads_of_a_recording_without_a_complete_beat_are_finite() -> None:
    samples, _, _ = heart_sounds(bpm=100.0, duration_s=1.2, snr_db=20.0, seed=5)
    values = _spreads(samples)
    assert values.shape == (1, cycles.NUM_CYCLE_FEATURES + cycles.NUM_SPREAD_FEATURES)
    assert np.all(np.isfinite(values))


def test_recording_statistics_have_their_names() -> None:
    samples, _, _ = heart_sounds(bpm=72.0, snr_db=20.0, seed=7)
    statistics = cycles.recording_statistics(_measures(samples))
    assert statistics.shape == (len(cycles.RECORDING_STATISTIC_NAMES),)
    assert np.all(np.isfinite(statistics))


def test_it_analyses_a_one_second_recording_and_flags_it() -> None:
    engine = Engine.load(DEFAULT_SCREENING_BUNDLE)
    audio, rate = _first_sample_cut(1.2)
    result = engine.classify([engine.decode(encode(audio, sample_rate=rate))])[0]
    assert result.label in engine.classes
    assert result.quality == "poor"
    assert any("under 5 s" in reason for reason in result.quality_reasons)
    assert result.decision == "uncertain"
    assert result.segments is not None and result.segments["segments"]


def _first_sample_cut(seconds: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    samples, rate = sf.read(sorted(SAMPLES.glob("*.wav"))[0])
    return samples[: int(seconds * rate)], rate


def _profile(samples: np.ndarray) -> np.ndarray:
    return _measures(samples, profile=True).values


def _profile_median(samples: np.ndarray, state: str, index: int, channel: str) -> float:
    column = cycles.NUM_CYCLE_FEATURES + cycles.PROFILE_FEATURE_NAMES.index(f"{state}_{index}_{channel}")
    return float(np.median(_profile(samples)[:, column]))


def test_the_profile_follows_the_beat_measures_and_its_count_matches_the_config() -> None:
    samples, _, _ = heart_sounds(bpm=72.0, snr_db=20.0, seed=11)
    plain, profile = _measures(samples).values, _profile(samples)
    assert profile.shape == (len(plain), cycles.NUM_CYCLE_FEATURES + cycles.NUM_PROFILE_FEATURES)
    np.testing.assert_array_equal(profile[:, : cycles.NUM_CYCLE_FEATURES], plain)
    assert cycles.NUM_PROFILE_FEATURES == features.NUM_PROFILE_FEATURES
    config = features.FeatureConfig(kind="cycles", beat_profile=True)
    assert config.window_shape == (config.beats_per_window, profile.shape[1])
    assert "beat_profile" not in features.FeatureConfig(kind="cycles").to_dict()


def test_a_systolic_murmur_raises_the_middle_of_the_systole_profile_more_than_diastole() -> None:
    clean, _, _ = heart_sounds(bpm=72.0, snr_db=25.0, seed=12)
    murmur, _, _ = heart_sounds(bpm=72.0, snr_db=25.0, murmur=0.25, seed=12)

    def rise(state: str, index: int, channel: str) -> float:
        return _profile_median(murmur, state, index, channel) - _profile_median(clean, state, index, channel)

    for index in (2, 3):
        assert rise("systole", index, "band_3") > 2.0
        assert rise("systole", index, "peak") > 0.5
    assert abs(rise("diastole", 4, "band_3")) < rise("systole", 3, "band_3") / 2


def test_the_profile_does_not_move_with_the_device_gain() -> None:
    samples, _, _ = heart_sounds(bpm=72.0, snr_db=20.0, seed=13)
    np.testing.assert_allclose(_profile(samples), _profile(samples * 50.0), atol=1e-3)


def test_the_profile_of_a_recording_without_a_complete_beat_is_finite() -> None:
    samples, _, _ = heart_sounds(bpm=100.0, duration_s=1.2, snr_db=20.0, seed=5)
    values = _profile(samples)
    assert values.shape == (1, cycles.NUM_CYCLE_FEATURES + cycles.NUM_PROFILE_FEATURES)
    assert np.all(np.isfinite(values))


def _batch_inputs() -> list[np.ndarray]:
    """Recordings of several lengths and rates, a silent one, a few frames and a
    1.2-s one without a complete beat, band-passed as when decoded."""
    rng = np.random.default_rng(3)
    raw = [
        heart_sounds(bpm=bpm, duration_s=seconds, snr_db=snr, murmur=murmur, seed=seed)[0]
        for bpm, seconds, snr, murmur, seed in (
            (60.0, 10.0, 20.0, 0.0, 1),
            (72.0, 10.0, 10.0, 0.3, 2),
            (130.0, 7.3, 25.0, 0.0, 3),
            (45.0, 12.0, 15.0, 0.1, 4),
            (90.0, 10.0, 5.0, 0.0, 5),
            (100.0, 1.2, 20.0, 0.0, 6),
        )
    ]
    raw.append(0.01 * rng.standard_normal(RATE * 2))
    recordings = [prepare_samples(samples, source_rate=RATE, min_duration_s=0.0).samples for samples in raw]
    # Shorter than the batched frame stages take: these go through segment() one by one.
    return [*recordings, np.zeros(RATE * 3, dtype=np.float32), recordings[0][:700], recordings[1][:90]]


def test_the_batched_measures_equal_those_of_one_recording_at_a_time() -> None:
    recordings = _batch_inputs()
    batched = cycles.beat_measures_batch(recordings, sample_rate=RATE)
    assert len(batched) == len(recordings)
    for samples, together in zip(recordings, batched, strict=True):
        alone = cycles.beat_measures(samples, sample_rate=RATE)
        np.testing.assert_array_equal(together.segmentation.states, alone.segmentation.states)
        np.testing.assert_array_equal(together.segmentation.cycles, alone.segmentation.cycles)
        assert together.segmentation.segments == alone.segmentation.segments
        assert together.segmentation.heart_rate_bpm == alone.segmentation.heart_rate_bpm
        assert together.segmentation.systolic_interval_s == alone.segmentation.systolic_interval_s
        assert together.whole == alone.whole
        for name in ("values", "start_s", "end_s", "gap_fill"):
            np.testing.assert_array_equal(getattr(together, name), getattr(alone, name))


def test_batched_energies_equal_band_energies() -> None:
    recordings = _batch_inputs()[:5]
    batch = segmentation.band_energies_batch(recordings, sample_rate=RATE)
    for index, samples in enumerate(recordings):
        alone = segmentation.band_energies(samples, sample_rate=RATE)
        np.testing.assert_array_equal(batch.energies[batch.rows(index)], alone)


def test_batched_measures_with_spreads_and_profile_equal_one_at_a_time() -> None:
    recordings = _batch_inputs()[:3]
    batched = cycles.beat_measures_batch(recordings, sample_rate=RATE, spreads=True, profile=True)
    for samples, together in zip(recordings, batched, strict=True):
        alone = cycles.beat_measures(samples, sample_rate=RATE, spreads=True, profile=True)
        np.testing.assert_array_equal(together.values, alone.values)
