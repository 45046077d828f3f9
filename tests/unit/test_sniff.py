"""What a file is from its first bytes (jobs.services.sniff)."""

import io
import zipfile

import numpy as np
import pytest
import soundfile as sf

from jobs.services import sniff


def encoded(format: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(400), 2000, format=format, subtype=subtype)
    return buffer.getvalue()


def zipped() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.wav", b"RIFF")
    return buffer.getvalue()


def empty_zip() -> bytes:
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    return buffer.getvalue()


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(encoded("WAV", "PCM_16"), id="wav"),
        pytest.param(b"RF64\xff\xff\xff\xffWAVEds64", id="rf64"),
        pytest.param(encoded("FLAC"), id="flac"),
        pytest.param(encoded("OGG", "VORBIS"), id="ogg"),
        pytest.param(encoded("AIFF", "PCM_16"), id="aiff"),
        pytest.param(encoded("AU", "PCM_16"), id="au"),
        pytest.param(b"ID3\x04\x00" + b"\0" * 11, id="mp3-with-id3-tag"),
        pytest.param(b"\xff\xfb\x90\x64" + b"\0" * 12, id="mp3-frame"),
    ],
)
def test_it_takes_audio_containers_for_audio(head: bytes) -> None:
    assert sniff.looks_like_audio(head[: sniff.HEAD_BYTES])
    assert not sniff.is_zip(head[: sniff.HEAD_BYTES])


@pytest.mark.parametrize("head", [zipped(), empty_zip()], ids=["zip", "empty-zip"])
def test_it_takes_zip_archives_for_zips_not_audio(head: bytes) -> None:
    assert sniff.is_zip(head[: sniff.HEAD_BYTES])
    assert not sniff.looks_like_audio(head[: sniff.HEAD_BYTES])


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xff",  # one byte: not enough for an MPEG frame header
        b"\xff\x1f\x00\x00",  # 0xFF without the frame-sync bits that follow
        b"path,label\na.wav,normal\n",
        b"%PDF-1.7\n",
        b"\x89PNG\r\n\x1a\n",
        b"riff" + b"\0" * 12,  # magic numbers are case-sensitive
        b"PK\x01\x02",  # a central-directory header is not the start of a zip
    ],
)
def test_it_takes_anything_else_for_neither(head: bytes) -> None:
    assert not sniff.looks_like_audio(head)
    assert not sniff.is_zip(head)
