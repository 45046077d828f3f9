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


@pytest.mark.parametrize(
    ("order", "low_hz", "high_hz", "sample_rate"),
    [(4, 25.0, 400.0, 2000), (1, None, 8.0, 50), (4, 25.0, 800.0, 2000), (2, 30.0, 200.0, 1000)],
)
def test_stored_and_computed_filter_designs_are_scipys(
    order: int, low_hz: float | None, high_hz: float, sample_rate: int
) -> None:
    from scipy import signal

    from ml import filters

    if low_hz is None:
        sos = signal.butter(order, high_hz, btype="lowpass", fs=sample_rate, output="sos")
    else:
        sos = signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    design = filters.butterworth(order, low_hz, high_hz, sample_rate)
    np.testing.assert_array_equal(design[0], sos)
    # sosfilt_zi solves a linear system: its last bits follow the BLAS build and CPU.
    np.testing.assert_allclose(design[1], signal.sosfilt_zi(sos), rtol=1e-12, atol=1e-15)
    noise = np.random.default_rng(order).standard_normal(3000)
    np.testing.assert_allclose(filters.filtfilt(noise, design), signal.sosfiltfilt(sos, noise), atol=1e-12)


def test_decoding_a_recording_at_the_bundle_rate_does_not_import_slow_scipy_modules() -> None:
    import subprocess
    import sys

    # scipy.signal costs about a second at start-up, more than predict spends on
    # a thousand recordings; only rate conversion and training need it.
    code = (
        "import sys, numpy as np, ml.audio, ml.quality, ml.segmentation;"
        "wave = np.sin(np.arange(8000) / 3.0) * np.hanning(8000);"
        "audio = ml.audio.prepare_samples(wave, source_rate=2000);"
        "ml.quality.assess(audio); ml.segmentation.homomorphic_envelope(np.exp(wave[:500]));"
        "print(any(name in sys.modules for name in ('scipy.signal', 'scipy.ndimage')))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


def _with_list_chunk(wav: bytes, text: bytes) -> bytes:
    # A LIST chunk of odd length (padded to even) between fmt and data, as recorders write them.
    fmt_end = 12 + 8 + int.from_bytes(wav[16:20], "little")
    chunk = b"LIST" + len(text).to_bytes(4, "little") + text + b"\0" * (len(text) % 2)
    body = wav[12:fmt_end] + chunk + wav[fmt_end:]
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WAVE" + body


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("list_chunk", [b"", b"INFOsoftware"])
def test_plain_pcm16_wavs_read_directly_give_libsndfiles_samples(channels: int, list_chunk: bytes) -> None:
    import io

    import soundfile as sf

    from ml import audio

    wave = np.random.default_rng(channels).uniform(-1, 1, size=(3001, channels))
    wav = encode(wave if channels > 1 else wave[:, 0], sample_rate=4000, subtype="PCM_16")
    if list_chunk:
        wav = _with_list_chunk(wav, list_chunk)
    direct = audio._plain_pcm16_wav(wav)
    assert direct is not None
    expected, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(direct[0], expected)
    assert (direct[1], direct[2].format, direct[2].subtype) == (rate, "WAV", "PCM_16")


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_U8"])
def test_other_wav_encodings_go_through_libsndfile(subtype: str) -> None:
    from ml import audio

    wav = encode(np.sin(np.arange(4000) / 7.0) * 0.5, sample_rate=2000, subtype=subtype)
    assert audio._plain_pcm16_wav(wav) is None
    decoded = decode_audio(wav)
    assert decoded.subtype == subtype and decoded.duration_s == pytest.approx(2.0)


def test_designs_of_up_to_four_sections_filter_as_the_general_loop_does() -> None:
    from ml import filters

    # Sections that pass samples through unchanged push a design past the unrolled
    # four-section loop without changing its output.
    identity = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]] * 4)
    noise = np.random.default_rng(5).standard_normal(4000)
    for design in (filters.butterworth(4, 25.0, 400.0, 2000), filters.butterworth(1, None, 8.0, 50)):
        sos, initial = design
        longer = (np.concatenate([sos, identity]), np.concatenate([initial, np.zeros((4, 2))]))
        assert len(longer[0]) > 4
        pad = filters.pad_length(sos)
        general = filters._compiled()(noise, longer[0], longer[1], pad)
        np.testing.assert_array_equal(filters.filtfilt(noise, design), general)
