"""Decode heart-sound recordings into band-passed, normalised mono waveforms.

Everything libsndfile reads is accepted (WAV 8/16/24/32-bit integer and float,
FLAC, OGG, AIFF, ...). Stereo is downmixed, the rate is converted with a
polyphase resampler, the heart-sound band is kept with a zero-phase Butterworth
band-pass and each recording is scaled to unit RMS. Bad input raises
:class:`ml.errors.AudioError` with a stable ``code``.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import soundfile as sf

from ml import errors, filters, sniff
from ml.errors import AudioError

DEFAULT_RATE_HZ = 2000
DEFAULT_MIN_DURATION_S = 1.0
DEFAULT_BAND_HZ = (25.0, 400.0)
MIN_SOURCE_RATE_HZ = 500
MAX_SOURCE_RATE_HZ = 384_000
BANDPASS_ORDER = 4
CLIP_LEVEL = 0.999  # fraction of full scale counted as a clipped sample
DIGITAL_SILENCE_LEVEL = 1e-6  # peak below this (full scale = 1) is digital silence
MAX_POLYPHASE_FACTOR = 1000  # beyond this up/down factor use FFT resampling

AudioSource = bytes | str | os.PathLike[str] | BinaryIO


@dataclass(frozen=True, eq=False)
class Audio:
    """A decoded recording ready for feature extraction.

    ``samples`` is float32 mono at ``sample_rate`` Hz, band-passed and scaled to
    unit RMS; ``duration_s`` is in seconds; ``clipping_fraction`` is the share of
    source samples at full scale, measured before any filtering.
    """

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    channels: int
    duration_s: float
    subtype: str
    clipping_fraction: float = 0.0
    source_format: str = field(default="")


def decode_audio(
    source: AudioSource,
    *,
    target_rate: int = DEFAULT_RATE_HZ,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    band_hz: tuple[float, float] = DEFAULT_BAND_HZ,
) -> Audio:
    """Decode ``source`` (bytes, path or binary file) into an :class:`Audio`.

    Raises :class:`AudioError` with code ``empty``, ``not_audio``, ``undecodable``,
    ``truncated``, ``unsupported_rate``, ``too_short`` or ``silent``.
    """
    payload = _read_payload(source)
    raw, source_rate, info = _decode_payload(payload)
    return prepare_samples(
        raw,
        source_rate=source_rate,
        target_rate=target_rate,
        min_duration_s=min_duration_s,
        band_hz=band_hz,
        subtype=info.subtype,
        source_format=info.format,
    )


def prepare_samples(
    raw: np.ndarray,
    *,
    source_rate: int,
    target_rate: int = DEFAULT_RATE_HZ,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    band_hz: tuple[float, float] = DEFAULT_BAND_HZ,
    subtype: str = "FLOAT",
    source_format: str = "",
) -> Audio:
    """Turn raw samples (frames, or frames x channels; full scale = 1) into an Audio."""
    frames = raw if raw.ndim == 2 else raw.reshape(-1, 1)
    _check_rate(source_rate)
    if frames.shape[0] == 0:
        raise AudioError(errors.EMPTY, "the recording contains no samples")
    duration_s = frames.shape[0] / source_rate
    if duration_s < min_duration_s:
        raise AudioError(
            errors.TOO_SHORT,
            f"the recording lasts {duration_s:.2f} s, less than the {min_duration_s:.1f} s minimum",
        )
    # One channel's mean is the channel itself: the copy is cheaper than the reduction.
    mono = frames[:, 0].astype(np.float64) if frames.shape[1] == 1 else frames.astype(np.float64).mean(axis=1)
    clipping = float(np.mean(np.abs(frames) >= CLIP_LEVEL))
    if float(np.ptp(mono)) < DIGITAL_SILENCE_LEVEL:
        raise AudioError(errors.SILENT, "the recording is digital silence")
    resampled = resample(mono, source_rate=source_rate, target_rate=target_rate)
    filtered = bandpass(resampled, sample_rate=target_rate, band_hz=band_hz)
    return Audio(
        samples=normalise(filtered),
        sample_rate=target_rate,
        source_rate=source_rate,
        channels=frames.shape[1],
        duration_s=duration_s,
        subtype=subtype,
        clipping_fraction=clipping,
        source_format=source_format,
    )


def resample(samples: np.ndarray, *, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D signal from ``source_rate`` to ``target_rate`` Hz (anti-aliased)."""
    if source_rate == target_rate:
        return samples
    divisor = math.gcd(source_rate, target_rate)
    up, down = target_rate // divisor, source_rate // divisor
    from scipy import signal  # slow to import; most recordings need no rate conversion

    if max(up, down) <= MAX_POLYPHASE_FACTOR:
        return np.asarray(signal.resample_poly(samples, up, down))
    out_length = max(1, round(len(samples) * target_rate / source_rate))
    return np.asarray(signal.resample(samples, out_length))


def bandpass(
    samples: np.ndarray, *, sample_rate: int, band_hz: tuple[float, float] = DEFAULT_BAND_HZ
) -> np.ndarray:
    """Zero-phase Butterworth band-pass of ``samples`` between ``band_hz`` (Hz).

    Same result as ``scipy.signal.sosfiltfilt`` (odd extension at the edges), with
    the filter designed once per band (``ml.filters``).
    """
    design = filters.butterworth(BANDPASS_ORDER, band_hz[0], min(band_hz[1], 0.45 * sample_rate), sample_rate)
    return filters.filtfilt(samples, design)


def normalise(samples: np.ndarray) -> np.ndarray:
    """Scale to unit RMS and return float32; a flat signal stays zero."""
    rms = float(np.sqrt(np.mean(np.square(samples))))
    if rms <= 0.0:
        return np.zeros(len(samples), dtype=np.float32)
    return (samples / rms).astype(np.float32)


def _check_rate(source_rate: int) -> None:
    if not MIN_SOURCE_RATE_HZ <= source_rate <= MAX_SOURCE_RATE_HZ:
        raise AudioError(
            errors.UNSUPPORTED_RATE,
            f"sample rate {source_rate} Hz is outside {MIN_SOURCE_RATE_HZ}-{MAX_SOURCE_RATE_HZ} Hz",
        )


def _read_payload(source: AudioSource) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return handle.read()
    return source.read()


@dataclass(frozen=True)
class _Format:
    format: str  # libsndfile's major format name, e.g. WAV, FLAC
    subtype: str  # its sample encoding, e.g. PCM_16


def _decode_payload(payload: bytes) -> tuple[np.ndarray, int, _Format]:
    if not payload:
        raise AudioError(errors.EMPTY, "the file is empty (0 bytes)")
    if not sniff.looks_like_audio(payload):
        raise AudioError(errors.NOT_AUDIO, "the file is not a recognised audio format")
    if payload.startswith((b"RIFF", b"RIFX")):
        _check_wav_chunks(payload)
        plain = _plain_pcm16_wav(payload)
        if plain is not None:
            return plain
    try:
        with sf.SoundFile(io.BytesIO(payload)) as handle:
            info = _Format(handle.format, handle.subtype)
            raw = handle.read(dtype="float32", always_2d=True)
            source_rate = handle.samplerate
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(errors.UNDECODABLE, f"the audio could not be decoded ({exc})") from exc
    if raw.shape[0] == 0:
        raise AudioError(errors.EMPTY, "the recording contains no samples")
    return raw, int(source_rate), info


def _plain_pcm16_wav(payload: bytes) -> tuple[np.ndarray, int, _Format] | None:
    """The samples of a little-endian 16-bit PCM WAV read straight from its data chunk.

    Most recordings are such files, and libsndfile's set-up costs more than their
    samples; the values are libsndfile's (sample / 32768). Anything else (other
    encodings, extensible headers, a data chunk that is not whole frames) returns
    None and goes through libsndfile.
    """
    if not payload.startswith(b"RIFF"):
        return None
    offset, fmt = 12, None
    while offset + 8 <= len(payload):
        chunk_id = payload[offset : offset + 4]
        (size,) = struct.unpack("<I", payload[offset + 4 : offset + 8])
        body = offset + 8
        if chunk_id == b"fmt " and size >= 16:
            fmt = struct.unpack("<HHIIHH", payload[body : body + 16])
        elif chunk_id == b"data":
            if fmt is None:
                return None
            tag, channels, rate, _, block_align, bits = fmt
            whole = size > 0 and size != 0xFFFFFFFF and size <= len(payload) - body
            if tag != 1 or bits != 16 or not 1 <= channels <= 8 or block_align != 2 * channels:
                return None
            if not whole or size % block_align:
                return None
            samples = np.frombuffer(payload, dtype="<i2", count=size // 2, offset=body)
            raw = samples.reshape(-1, channels).astype(np.float32) * np.float32(1.0 / 32768.0)
            return raw, rate, _Format("WAV", "PCM_16")
        offset = body + size + (size % 2)
    return None


def _check_wav_chunks(payload: bytes) -> None:
    """Raise ``truncated`` when a WAV's data chunk claims more bytes than the file holds."""
    endian = "<" if payload.startswith(b"RIFF") else ">"
    if len(payload) < 12:
        raise AudioError(errors.TRUNCATED, "the file ends inside its RIFF header")
    if payload[8:12] != b"WAVE":
        raise AudioError(errors.UNDECODABLE, "the RIFF header does not describe a WAVE file")
    offset = 12
    while offset + 8 <= len(payload):
        chunk_id = payload[offset : offset + 4]
        (size,) = struct.unpack(endian + "I", payload[offset + 4 : offset + 8])
        available = len(payload) - offset - 8
        if chunk_id == b"data":
            if size == 0 and available == 0:
                raise AudioError(errors.EMPTY, "the WAV data chunk holds no samples")
            if available < size and size not in (0, 0xFFFFFFFF):
                raise AudioError(
                    errors.TRUNCATED,
                    f"the WAV data chunk declares {size} bytes but only {available} are present",
                )
            return
        offset += 8 + size + (size % 2)
    raise AudioError(errors.TRUNCATED, "the WAV file ends before its data chunk")
