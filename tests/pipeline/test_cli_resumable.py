"""`lubdub submit` of a large file in parts against a live server: cut off, then resumed."""

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from jobs import storage
from jobs.models import Batch, ResumableUpload
from jobs.services import resumable as server_side
from lubdub_client import resumable
from lubdub_client.errors import CliError
from lubdub_client.main import build_parser
from lubdub_client.server import Client
from lubdub_client.submit import submit
from tests.conftest import SAMPLES
from tests.pipeline.test_resumable_uploads import MIB, PART, archive_of, hold_ingest

PART_NUMBER = re.compile(r"partNumber=(\d+)|/parts/(\d+)/")


@pytest.fixture(params=["s3", "filesystem"])
def either_storage(request: pytest.FixtureRequest) -> str:
    if request.param == "filesystem":
        request.getfixturevalue("filesystem_storage")
    return str(request.param)


@pytest.fixture
def client(
    live_server: Any, member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Any
) -> Iterator[Client]:
    settings.LUBDUB_UPLOAD_PART_BYTES = PART
    monkeypatch.setenv("LUBDUB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LUBDUB_RESUMABLE_ABOVE", str(MIB))
    monkeypatch.setattr(resumable, "FIRST_PART_BACKOFF_SECONDS", 0.01)
    client = Client(live_server.url, Token.objects.create(user=member).key)
    yield client
    # Closed as the command's process would be: the live server's request threads then end.
    client.session.close()


def _number(url: str) -> int:
    found = PART_NUMBER.search(url)
    assert found, url
    return int(found[1] or found[2])


def test_it_resumes_a_cut_off_submit_without_sending_finished_parts_again(
    client: Client, default_model: Any, either_storage: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    queued = hold_ingest(monkeypatch)
    archive = tmp_path / "night shift.zip"
    archive.write_bytes(archive_of(16 * MIB))  # parts of 5, 5, 5 and 1 MiB
    sent: list[int] = []
    cut = {"done": False}
    real_put = resumable.put_part

    def cut_at_the_second_part(session: Any, url: str, body: bytes, progress: Any) -> str:
        number = _number(url)
        if number == 2 and not cut["done"]:
            cut["done"] = True
            raise resumable.PartFailed("ConnectionError")
        sent.append(number)
        return real_put(session, url, body, progress)

    received: list[int] = []  # at the server: parts through the app (filesystem storage)
    real_receive = server_side.receive_part

    def counted(upload: Any, number: int, body: Any, length: Any) -> Any:
        received.append(number)
        return real_receive(upload, number, body, length)

    monkeypatch.setattr(resumable, "put_part", cut_at_the_second_part)
    monkeypatch.setattr(resumable, "PART_ATTEMPTS", 1)  # the link stays down for the rest of the run
    monkeypatch.setattr(server_side, "receive_part", counted)
    args = build_parser().parse_args(["-q", "submit", str(archive), "--name", "night shift"])

    with pytest.raises(CliError, match="run the same command again"):
        submit(client, args)
    first_run, held_after_cut = sorted(sent), _held(ResumableUpload.objects.get())
    sent.clear()
    received.clear()
    rerun = submit(client, args)

    # Parts 1 and 3 at least went up before the cut (4 too, unless it was still queued
    # when the run gave up); everything sent then is stored, part 2 is not.
    assert {1, 3} <= set(first_run) and 2 not in first_run
    assert held_after_cut == first_run
    missing = [n for n in (1, 2, 3, 4) if n not in held_after_cut]
    assert sorted(sent) == missing  # the rerun sent the missing parts only
    if either_storage == "filesystem":
        assert sorted(received) == missing
    assert rerun == 0
    batch = Batch.objects.get()
    assert (batch.name, batch.upload_name) == ("night shift", "night shift.zip")
    assert storage.read_bytes(batch.upload_key) == archive.read_bytes()
    assert queued == [str(batch.pk)]
    assert list((tmp_path / "cache" / "uploads").iterdir()) == []  # the state file is gone once done


def _held(upload: ResumableUpload) -> list[int]:
    return [
        part.number for part in storage.list_parts(upload.storage_key, upload.multipart_id, _folder(upload))
    ]


def _folder(upload: ResumableUpload) -> str:
    return storage.parts_folder(upload.pk)


def test_it_zips_a_large_folder_into_the_cache_and_sends_it_in_parts(
    client: Client,
    default_model: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LUBDUB_RESUMABLE_ABOVE", "1000")
    folder = tmp_path / "ward"
    folder.mkdir()
    for name in ("a0033.wav", "a0071.wav"):
        shutil.copy(SAMPLES / name, folder / name)
    args = build_parser().parse_args(["-q", "submit", str(folder)])

    assert submit(client, args) == 0

    batch = Batch.objects.get()
    assert capsys.readouterr().out.strip() == str(batch.pk)
    assert batch.upload_name == "ward.zip"
    assert ResumableUpload.objects.get().status == ResumableUpload.Status.COMPLETED
    assert list((tmp_path / "cache" / "uploads").iterdir()) == []  # zip and state deleted


def test_it_says_so_when_there_is_nothing_to_resume(
    client: Client, default_model: Any, tmp_path: Path
) -> None:
    archive = tmp_path / "ward.zip"
    archive.write_bytes(archive_of(2 * MIB))
    args = build_parser().parse_args(["-q", "submit", str(archive), "--resume"])

    with pytest.raises(CliError, match="no interrupted upload"):
        submit(client, args)
    assert not ResumableUpload.objects.exists()


def test_it_keeps_small_files_on_the_single_request_path(
    client: Client, default_model: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "a0033.wav"
    shutil.copy(SAMPLES / "a0033.wav", recording)

    assert submit(client, build_parser().parse_args(["-q", "submit", str(recording)])) == 0

    assert Batch.objects.count() == 1
    assert not ResumableUpload.objects.exists()
