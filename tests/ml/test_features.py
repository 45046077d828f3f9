"""Feature configuration, windowing and spectral features on known signals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ml import features
from ml.errors import FeatureError
from ml.features import (
    FeatureConfig,
    batch_windows,
    column_percentile,
    feature_sequence,
    log_mel,
    power_spectrum,
    window_starts,
)

CONFIG = FeatureConfig()
RATE = CONFIG.sample_rate


def test_it_round_trips_the_config_and_keeps_its_fingerprint() -> None:
    restored = FeatureConfig.from_dict(CONFIG.to_dict())
    assert restored == CONFIG
    assert restored.fingerprint() == CONFIG.fingerprint()
    assert len(CONFIG.fingerprint()) == 16


def test_it_changes_the_fingerprint_with_any_setting() -> None:
    assert dataclasses.replace(CONFIG, n_mels=32).fingerprint() != CONFIG.fingerprint()


def test_it_rejects_unknown_or_invalid_settings() -> None:
    with pytest.raises(ValueError, match="unknown"):
        FeatureConfig.from_dict({**CONFIG.to_dict(), "colour": "blue"})
    with pytest.raises(ValueError):
        FeatureConfig(band_low_hz=500.0, band_high_hz=400.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "chroma"}, "feature kind"),
        ({"norm_reference": "median"}, "norm_reference"),
        ({"band_high_hz": 1200.0}, "band"),  # above the 1 kHz Nyquist frequency
        ({"hop_length": 0}, "hop_length"),
        ({"n_fft": 32}, "hop_length <= n_fft"),
        ({"window_hop_s": 0.0}, "positive"),
        ({"n_mels": 0}, "mel band"),
        ({"kind": "mfcc", "n_mfcc": 30}, "n_mfcc <= n_mels"),
        ({"kind": "cycles", "beats_hop": 0}, "beats_hop"),
        ({"window_s": 0.01}, "holds no frame"),  # 20 samples, under one 50-sample hop
    ],
)
def test_it_refuses_settings_that_describe_no_features(settings: dict[str, object], message: str) -> None:
    with pytest.raises(FeatureError, match=message) as refused:
        FeatureConfig(**settings)  # type: ignore[arg-type]
    assert isinstance(refused.value, ValueError)  # callers catching ValueError still do


def test_it_refuses_unknown_settings_in_a_stored_config() -> None:
    with pytest.raises(FeatureError, match="unknown feature settings: \\['colour'\\]"):
        FeatureConfig.from_dict({**CONFIG.to_dict(), "colour": "blue"})


def test_it_refuses_inputs_without_samples_or_frames() -> None:
    with pytest.raises(FeatureError, match="1-D waveform"):
        log_mel(np.zeros(0), config=CONFIG)
    with pytest.raises(FeatureError, match="1-D waveform"):
        batch_windows([np.zeros((RATE, 2))], config=CONFIG)  # stereo
    with pytest.raises(FeatureError, match="sequence with frames"):
        features.sequence_windows(np.zeros((0, CONFIG.n_mels)), config=CONFIG)
    with pytest.raises(FeatureError, match="reference"):
        features.normalise_bands(np.zeros((4, 2)), reference="median")


def test_it_covers_a_ten_second_recording_with_overlapping_windows() -> None:
    frames = 1 + 10 * RATE // CONFIG.hop_length
    starts = window_starts(frames, config=CONFIG)
    assert starts[0] == 0
    assert starts[-1] + CONFIG.frames_per_window == frames  # the tail is covered
    assert np.all(np.diff(starts) <= CONFIG.frames_per_hop)


def test_it_fills_a_short_recording_into_one_window() -> None:
    batch = batch_windows([np.random.default_rng(0).standard_normal(RATE)], config=CONFIG)
    assert batch.windows.shape == (1, *CONFIG.window_shape)
    assert batch.end_s[0] == pytest.approx(1.0)


def test_it_batches_recordings_of_any_length() -> None:
    rng = np.random.default_rng(1)
    lengths_s = [2.5, 10.0, 31.0]
    batch = batch_windows([rng.standard_normal(int(s * RATE)) for s in lengths_s], config=CONFIG)
    assert batch.windows.dtype == np.float32
    assert batch.windows.shape[1:] == CONFIG.window_shape
    assert sorted(set(batch.recording_index.tolist())) == [0, 1, 2]
    assert batch.end_s.max() == pytest.approx(31.0)


def test_it_puts_a_tone_in_the_right_mel_band() -> None:
    t = np.arange(4 * RATE) / RATE
    mel = log_mel(np.sin(2 * np.pi * 200.0 * t), config=CONFIG).mean(axis=0)
    centres = features.mel_filterbank(CONFIG).argmax(axis=0) * RATE / CONFIG.n_fft
    assert abs(centres[int(np.argmax(mel))] - 200.0) < 20.0


def test_it_matches_librosa_mfcc_on_the_same_log_mel() -> None:
    import librosa

    frames = log_mel(np.random.default_rng(2).standard_normal(4 * RATE), config=CONFIG)
    expected = librosa.feature.mfcc(S=frames.T, n_mfcc=13).T
    assert np.allclose(features.mfcc(frames, n_mfcc=13), expected, atol=1e-4)


def test_it_gives_the_slope_as_delta_of_a_ramp() -> None:
    ramp = np.outer(np.arange(20, dtype=np.float64), [1.0, 2.0])
    assert np.allclose(features.deltas(ramp)[3:-3], [1.0, 2.0])


def test_it_removes_a_constant_gain_with_recording_mean_normalisation() -> None:
    wave = np.random.default_rng(4).standard_normal(5 * RATE)
    assert np.allclose(
        feature_sequence(wave, config=CONFIG), feature_sequence(7 * wave, config=CONFIG), atol=1e-3
    )


PEAK = FeatureConfig(n_mels=8, norm_reference="peak")


def test_it_keeps_earlier_fingerprints_and_stores_the_peak_reference() -> None:
    assert "norm_reference" not in CONFIG.to_dict()  # bundles made before the option still match
    assert FeatureConfig.from_dict(PEAK.to_dict()) == PEAK
    assert PEAK.fingerprint() != dataclasses.replace(PEAK, norm_reference="mean").fingerprint()
    with pytest.raises(ValueError, match="norm_reference"):
        FeatureConfig(norm_reference="median")


def test_it_measures_each_band_against_its_loud_frames_with_a_floor() -> None:
    # Bursts (heart sounds) every 0.8 s over a faint background, in every band.
    rng = np.random.default_rng(6)
    wave = 1e-3 * rng.standard_normal(10 * RATE)
    for start in range(0, len(wave) - 200, int(0.8 * RATE)):
        wave[start : start + 200] += rng.standard_normal(200)
    sequence = feature_sequence(wave, config=PEAK)
    assert np.allclose(np.percentile(sequence, 90, axis=0), 0.0, atol=1e-5)
    assert sequence.min() == pytest.approx(-features.PEAK_FLOOR)  # the ~70 dB quieter gaps are floored
    above_floor = sequence > -features.PEAK_FLOOR + 2
    assert np.allclose(sequence[above_floor], feature_sequence(7 * wave, config=PEAK)[above_floor], atol=1e-3)
    # A murmur fills the gaps: the median frame rises towards the heart sounds.
    murmur = wave + 0.05 * rng.standard_normal(len(wave))
    assert np.median(feature_sequence(murmur, config=PEAK)) > np.median(sequence) + 2


def test_it_builds_mfcc_with_deltas() -> None:
    config = FeatureConfig(kind="mfcc", deltas=True)
    sequence = feature_sequence(np.random.default_rng(5).standard_normal(5 * RATE), config=config)
    assert sequence.shape[1] == config.num_features == 39


def test_it_builds_the_same_mel_filterbank_as_librosa() -> None:
    import librosa

    expected = librosa.filters.mel(
        sr=RATE, n_fft=CONFIG.n_fft, n_mels=CONFIG.n_mels, fmin=CONFIG.band_low_hz, fmax=CONFIG.band_high_hz
    ).T
    assert np.allclose(features.mel_filterbank(CONFIG), expected, atol=1e-7)


@pytest.mark.parametrize("frames", [1, 2, 7, 40, 401, 402, 555])
@pytest.mark.parametrize("percentile", [10.0, 50.0, 90.0, 95.0])
def test_column_percentile_gives_numpys_bits(frames: int, percentile: float) -> None:
    rng = np.random.default_rng(frames)
    values = (3 * rng.standard_normal((frames, 8))).astype(np.float32)
    values[:, 3] = 1.25  # a constant band: ties everywhere
    expected = np.percentile(values, percentile, axis=0, keepdims=True)
    found = column_percentile(values, percentile)
    assert found.dtype == expected.dtype and found.shape == expected.shape
    np.testing.assert_array_equal(found, expected)


@pytest.mark.parametrize("length", [5, 128, 129, 300, 20000])
def test_the_power_spectrum_is_that_of_reflect_padded_hann_frames(length: int) -> None:
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy import fft

    samples = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    half = CONFIG.n_fft // 2
    frames = sliding_window_view(np.pad(samples, half, mode="reflect"), CONFIG.n_fft)[:: CONFIG.hop_length]
    spectrum = fft.rfft(frames * np.hanning(CONFIG.n_fft + 1)[:-1].astype(np.float32), axis=1)
    expected = np.square(spectrum.real) + np.square(spectrum.imag)
    np.testing.assert_array_equal(power_spectrum(samples, config=CONFIG), expected)
