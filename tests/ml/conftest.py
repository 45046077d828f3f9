"""Fixtures for the ml package: synthetic heart sounds and encoded audio files.

These tests need no database, queue or storage service, so the suite-wide
storage fixture is replaced by a no-op here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "physionet"
S1_HZ = 60.0
S2_HZ = 90.0
SOUND_S = 0.06
SYSTOLE_FRACTION = 0.35


@pytest.fixture(scope="session", autouse=True)
def _bucket() -> None:
    """No object storage is needed by ml tests."""
    return None


def beat_train(*, bpm: float, duration_s: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Synthetic phonocardiogram: an S1 and a quieter S2 burst per beat, faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    out = 0.001 * rng.standard_normal(len(t))
    period = 60.0 / bpm
    burst_t = np.arange(int(SOUND_S * sample_rate)) / sample_rate
    shape = np.hanning(len(burst_t))
    for onset in np.arange(0.1, duration_s - period, period):
        for offset, freq, amp in ((0.0, S1_HZ, 0.5), (SYSTOLE_FRACTION * period, S2_HZ, 0.3)):
            start = int((onset + offset) * sample_rate)
            out[start : start + len(burst_t)] += amp * shape * np.sin(2 * np.pi * freq * burst_t)
    return out


def encode(samples: np.ndarray, *, sample_rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    """Encode samples (frames or frames x channels, full scale 1) into file bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def heart_wav() -> bytes:
    """Ten seconds of synthetic heart sounds at 72 bpm, 4 kHz, 16-bit WAV."""
    return encode(beat_train(bpm=72, duration_s=10, sample_rate=4000), sample_rate=4000)


def beat_model_of(composite: Path, target: Path) -> Path:
    """The first model of a composite bundle as a bundle of its own (its members left out)."""
    import json
    import shutil

    from ml.bundle import MANIFEST_FILE, read_manifest

    manifest = read_manifest(composite)
    shutil.copytree(composite, target, ignore=shutil.ignore_patterns(*(m["path"] for m in manifest.members)))
    values = json.loads((target / MANIFEST_FILE).read_text())
    values["members"] = []
    (target / MANIFEST_FILE).write_text(json.dumps(values))
    return target
