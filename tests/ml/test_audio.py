"""Decoding, resampling, band-pass and the error for each kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ml import errors
from ml.audio import bandpass, decode_audio, resample
from ml.errors import AudioError
from tests.ml.conftest import SAMPLES, beat_train, encode


def _tone(freq_hz: float, *, rate: int, duration_s: float = 4.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq_hz * np.arange(int(duration_s * rate)) / rate)


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("source_rate", [4000, 8000, 44100, 192000, 7999])
def test_it_resamples_keeping_frequency_and_duration(source_rate: int) -> None:
    out = resample(_tone(100.0, rate=source_rate), source_rate=source_rate, target_rate=2000)
    assert abs(len(out) - 8000) <= 1
    assert _peak_hz(out, 2000) == pytest.approx(100.0, abs=0.5)


def test_it_removes_aliasing_when_downsampling() -> None:
    out = resample(_tone(1500.0, rate=8000), source_rate=8000, target_rate=2000)
    assert np.sqrt(np.mean(out**2)) < 0.01  # 1500 Hz would alias to 500 Hz without the filter


@pytest.mark.parametrize(("freq_hz", "kept"), [(5.0, False), (100.0, True), (250.0, True), (800.0, False)])
def test_it_band_passes_the_heart_sound_band(freq_hz: float, kept: bool) -> None:
    tone = _tone(freq_hz, rate=2000)
    gain = np.std(bandpass(tone, sample_rate=2000)[500:-500]) / np.std(tone)
    assert (gain > 0.9) if kept else (gain < 0.1)


@pytest.mark.parametrize(
    ("subtype", "fmt"),
    [
        ("PCM_U8", "WAV"),
        ("PCM_16", "WAV"),
        ("PCM_24", "WAV"),
        ("PCM_32", "WAV"),
        ("FLOAT", "WAV"),
        ("PCM_16", "FLAC"),
    ],
)
def test_it_decodes_every_sample_format_alike(subtype: str, fmt: str) -> None:
    wave = beat_train(bpm=72, duration_s=5, sample_rate=4000)
    reference = decode_audio(encode(wave, sample_rate=4000, subtype="FLOAT"))
    audio = decode_audio(encode(wave, sample_rate=4000, subtype=subtype, fmt=fmt))
    assert audio.subtype == subtype
    assert audio.sample_rate == 2000 and audio.source_rate == 4000
    assert audio.samples.dtype == np.float32
    assert np.sqrt(np.mean(audio.samples**2)) == pytest.approx(1.0, abs=1e-3)
    tolerance = 0.1 if subtype == "PCM_U8" else 1e-3
    assert np.max(np.abs(audio.samples - reference.samples)) < tolerance


def test_it_downmixes_stereo() -> None:
    wave = beat_train(bpm=72, duration_s=5, sample_rate=4000)
    audio = decode_audio(encode(np.stack([wave, wave], axis=1), sample_rate=4000))
    assert audio.channels == 2
    assert audio.samples.ndim == 1 and len(audio.samples) == 10000


def test_it_reads_paths_and_file_objects() -> None:
    path = SAMPLES / "a0035.wav"
    with path.open("rb") as handle:
        from_handle = decode_audio(handle)
    from_path = decode_audio(path)
    assert np.array_equal(from_handle.samples, from_path.samples)
    assert from_path.duration_s > 5


def _bad_format_code() -> bytes:
    data = bytearray(encode(beat_train(bpm=72, duration_s=3, sample_rate=4000), sample_rate=4000))
    data[20:22] = b"\x34\x12"  # fmt chunk: an audio format code no decoder knows
    return bytes(data)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", errors.EMPTY),
        (b"just some text, not a recording", errors.NOT_AUDIO),
        (b"%PDF-1.4 binary junk \x00\x01\x02", errors.NOT_AUDIO),
        (encode(np.zeros(0), sample_rate=4000), errors.EMPTY),
        (
            _truncated(encode(beat_train(bpm=72, duration_s=5, sample_rate=4000), sample_rate=4000)),
            errors.TRUNCATED,
        ),
        (_bad_format_code(), errors.UNDECODABLE),
        (b"fLaC" + b"\x00" * 40, errors.UNDECODABLE),
        (encode(beat_train(bpm=72, duration_s=0.6, sample_rate=4000), sample_rate=4000), errors.TOO_SHORT),
        (encode(np.zeros(20000), sample_rate=4000), errors.SILENT),
        (encode(beat_train(bpm=72, duration_s=8, sample_rate=400), sample_rate=400), errors.UNSUPPORTED_RATE),
    ],
)
def test_it_raises_a_coded_error_for_bad_input(payload: bytes, code: str) -> None:
    with pytest.raises(AudioError) as raised:
        decode_audio(payload)
    assert raised.value.code == code
    assert raised.value.message


def test_it_accepts_a_custom_minimum_duration() -> None:
    short = encode(beat_train(bpm=72, duration_s=0.7, sample_rate=4000), sample_rate=4000)
    assert decode_audio(short, min_duration_s=0.5).duration_s == pytest.approx(0.7)


def test_it_measures_clipping_before_filtering() -> None:
    wave = np.clip(3 * beat_train(bpm=72, duration_s=5, sample_rate=4000), -1, 1)
    audio = decode_audio(encode(wave, sample_rate=4000, subtype="FLOAT"))
    assert audio.clipping_fraction > 0.01


def test_it_band_passes_exactly_like_sosfiltfilt() -> None:
    from scipy import signal

    noise = np.random.default_rng(0).standard_normal(5000)
    sos = signal.butter(4, [25.0, 400.0], btype="bandpass", fs=2000, output="sos")
    assert np.allclose(bandpass(noise, sample_rate=2000), signal.sosfiltfilt(sos, noise), atol=1e-10)
