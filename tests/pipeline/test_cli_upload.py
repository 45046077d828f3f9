"""The body `lubdub submit` sends: a zip streamed with its length known before the first byte."""

import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from lubdub_client.errors import CliError
from lubdub_client.upload import CHANGED, MultipartBody, upload_body
from tests.conftest import SAMPLES

LUBDUB = Path(sys.executable).with_name("lubdub")


def _zip_of(body: MultipartBody, sent: bytes) -> bytes:
    tail = f"\r\n--{body.boundary}--\r\n".encode()
    assert sent.endswith(tail)
    end = len(sent) - len(tail)
    return sent[end - body.file_size : end]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "ward round"
    (root / "bed 2").mkdir(parents=True)
    shutil.copy(SAMPLES / "a0033.wav", root / "a0033.wav")
    shutil.copy(SAMPLES / "a0071.wav", root / "bed 2" / "a0071.wav")
    (root / "labels.csv").write_text("path,label\na0033.wav,normal\nbed 2/a0071.wav,abnormal\n")
    (root / ".DS_Store").write_bytes(b"hidden")
    (root / "elsewhere.wav").symlink_to(SAMPLES / "d0001.wav")
    return root


def test_it_streams_a_folder_as_a_zip_exactly_as_long_as_announced(folder: Path) -> None:
    body = upload_body([folder], {"name": "ward round"})

    sent = b"".join(body)
    again = b"".join(body)  # a retry after a 503 sends the body a second time

    assert len(sent) == len(body)
    assert again == sent
    archive = zipfile.ZipFile(io.BytesIO(_zip_of(body, sent)))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["a0033.wav", "bed 2/a0071.wav", "labels.csv"]
    assert archive.read("bed 2/a0071.wav") == (SAMPLES / "a0071.wav").read_bytes()
    assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    assert b'name="name"\r\n\r\nward round\r\n' in sent
    assert b'filename="ward round.zip"' in sent


def test_it_zips_several_files_as_recordings_zip(folder: Path) -> None:
    body = upload_body([folder / "a0033.wav", folder / "labels.csv"], {})

    sent = b"".join(body)

    assert len(sent) == len(body) and b'filename="recordings.zip"' in sent
    assert sorted(zipfile.ZipFile(io.BytesIO(_zip_of(body, sent))).namelist()) == ["a0033.wav", "labels.csv"]


@pytest.mark.parametrize("change", [b"more audio", None], ids=["grew", "shrank"])
def test_it_stops_the_upload_when_a_file_changes_after_it_was_measured(
    folder: Path, change: bytes | None
) -> None:
    body = upload_body([folder], {})
    recording = folder / "bed 2" / "a0071.wav"
    if change is None:
        recording.write_bytes(recording.read_bytes()[:100])
    else:
        with recording.open("ab") as handle:
            handle.write(change)

    with pytest.raises(CliError, match=CHANGED):
        b"".join(body)


def test_it_names_an_unreadable_file_inside_a_folder() -> None:
    # As in test_cli_errors: root reads every file, so as root the client runs as nobody.
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="lubdub-unreadable-"))
    try:
        folder.chmod(0o755)
        (folder / "a0001.wav").write_bytes(b"RIFF")
        (folder / "a0001.wav").chmod(0o644)
        secret = folder / "a0002.wav"
        secret.write_bytes(b"RIFF")
        secret.chmod(0)
        env = {**os.environ, "LUBDUB_URL": "http://127.0.0.1:9", "LUBDUB_TOKEN": "not-a-token"}

        result = subprocess.run(
            [*user, str(LUBDUB), "-q", "submit", str(folder)],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )

        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.splitlines() == [f"lubdub: error: {secret}: Permission denied"]
    finally:
        shutil.rmtree(folder)
