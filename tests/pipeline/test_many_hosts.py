"""More than one machine: a worker on another host shares a batch through the services
alone, and a worker whose filesystem storage is not the web's refuses to start."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.core.management import call_command

from config.celery_app import app
from jobs.models import Analysis, Batch, MediaFolder, Prediction
from jobs.services import ingest, media_folder, queue
from tests.conftest import ROOT, wait_for_worker, worker_command
from tests.conftest import test_database_url as database_url  # as test_*, pytest would collect it
from tests.faults import assert_batch_ended_well
from tests.pipeline.conftest import (
    kill_worker,
    launch_worker,
    only_own_consumers,
    sample_archive,
    upload,
    wait_for_batch,
)
from tests.polling import poll_until

# What another host is given: the services' URLs and credentials, nothing else.
SERVICE_VARIABLES = (
    "REDIS_URL",
    "S3_ENDPOINT_URL",
    "S3_BUCKET",
    "S3_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "DJANGO_SECRET_KEY",
    "LUBDUB_TEST_REDIS_DB",
)
# The packages a worker image holds; the other host gets its own copy of them.
PACKAGES = ("config", "jobs", "workers", "ml")
CHUNK = 8
SUCCEEDED = re.compile(r"Task lubdub\.analyze_chunk\[[^\]]+\] succeeded in [0-9.]+s: (\d+)")
# A queue no task is sent to: a worker started only to see whether it starts takes no work.
IDLE_QUEUE = "media-folder-check"


class OtherHost:
    """A worker as a second machine would run it: its own copy of the code (so its
    own var/ and model cache), working directory, HOME and TMPDIR, and an
    environment holding only the service URLs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.app = root / "app"
        for package in PACKAGES:
            shutil.copytree(ROOT / package, self.app / package, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(ROOT / "manage.py", self.app / "manage.py")
        for folder in ("home", "tmp"):
            (root / folder).mkdir()
        self.log = root / "worker.log"
        self.name = f"other-{os.getpid()}@host-b"

    def environment(self) -> dict[str, str]:
        given = {name: os.environ[name] for name in SERVICE_VARIABLES if name in os.environ}
        return {
            **given,
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.root / "tmp"),
            "LANG": "C.UTF-8",
            "DATABASE_URL": database_url(),
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }

    def start(self, *, queues: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            worker_command(self.log, queues=queues, name=self.name),
            cwd=self.app,
            env=self.environment(),
            start_new_session=True,
        )
        wait_for_worker(self.log, process)
        return process


@contextlib.contextmanager
def analyses_locked(batch: Batch) -> Iterator[None]:
    """Hold the batch's analysis rows, from a connection of the test's own, until the
    block ends: a worker that takes a chunk then waits in its claim and holds the
    chunk's message, so the next message can only go to the other worker."""
    held = psycopg2.connect(database_url())
    try:
        with held.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {Analysis._meta.db_table} WHERE batch_id = %s FOR UPDATE",  # noqa: S608
                [str(batch.pk)],
            )
        yield
    finally:
        held.rollback()
        held.close()


def busy_with_a_chunk(names: list[str]) -> bool:
    active = app.control.inspect(destination=names, timeout=2).active() or {}
    return all(any(task["name"] == queue.ANALYSE_TASK for task in active.get(name, [])) for name in names)


def claimed_by(log: Path) -> int:
    """Recordings the worker writing `log` claimed, from its task results."""
    return sum(int(found) for found in SUCCEEDED.findall(log.read_text()))


@pytest.mark.slow
def test_it_splits_a_batch_between_a_worker_here_and_one_on_another_host(
    tmp_path: Path, default_model: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test ingests the batch itself and queues its chunks while the rows are
    # held, so each worker is known to take one whatever the machine's speed.
    monkeypatch.setattr(queue, "send_ingest", lambda batch: None)
    other_host = OtherHost(tmp_path / "host-b")
    here_log = tmp_path / "here.log"
    here_name = f"here-{os.getpid()}@{socket.gethostname()}"
    with only_own_consumers("analyze"):
        here = launch_worker(here_log, queues="analyze", name=here_name)
        there = other_host.start(queues="analyze")
        try:
            created = upload(api, sample_archive(copies=4), "two-hosts.zip")
            ids = ingest.ingest_batch(created["id"], queue_analysis=False)
            batch = Batch.objects.get(pk=created["id"])
            with analyses_locked(batch):
                chunks = queue.send_analysis(batch, ids, chunk_size=CHUNK)
                poll_until(lambda: busy_with_a_chunk([here_name, other_host.name]), timeout=120)
            finished = wait_for_batch(batch.pk, timeout=300)
            # The batch ends when the last chunk's results are committed; the worker logs that
            # chunk's success only after its task returns, so wait for the line before stopping it.
            with contextlib.suppress(TimeoutError):
                poll_until(lambda: claimed_by(here_log) + claimed_by(other_host.log) >= len(ids), timeout=30)
        finally:
            kill_worker(here)
            kill_worker(there)

    assert_batch_ended_well(finished)
    assert (chunks, finished.status, finished.done_count) == (
        len(ids) // CHUNK,
        Batch.Status.COMPLETED,
        len(ids),
    )
    assert Prediction.objects.filter(batch=finished).count() == len(ids) == 96
    shares = {"here": claimed_by(here_log), "host-b": claimed_by(other_host.log)}
    assert shares["here"] >= CHUNK and shares["host-b"] >= CHUNK, shares
    assert sum(shares.values()) == len(ids), shares
    # The other host read the model from storage into a cache of its own.
    cache = other_host.app / "var" / "test-models" / default_model.bundle_sha256
    assert (cache / "manifest.json").is_file()
    assert set(Analysis.objects.filter(batch=finished).values_list("attempts", flat=True)) == {1}


@pytest.mark.django_db(transaction=True)
def test_it_marks_the_web_media_folder_once(filesystem_storage: Path) -> None:
    call_command("prepare_storage", stdout=open(os.devnull, "w"))
    first = MediaFolder.objects.get()
    call_command("prepare_storage", stdout=open(os.devnull, "w"))

    again = MediaFolder.objects.get()
    marker = (filesystem_storage / media_folder.MARKER_NAME).read_text()
    assert again.marker == first.marker and str(first.marker) in marker
    assert again.path == str(filesystem_storage)
    media_folder.check()


@pytest.mark.django_db(transaction=True)
def test_it_adopts_the_folder_marker_when_the_database_is_new(filesystem_storage: Path) -> None:
    media_folder.mark()
    kept = MediaFolder.objects.get().marker
    MediaFolder.objects.all().delete()

    media_folder.mark()

    assert MediaFolder.objects.get().marker == kept


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_media_folder_that_is_not_the_webs(filesystem_storage: Path, settings: Any) -> None:
    with pytest.raises(media_folder.MediaFolderMismatch, match="no web has marked its media folder"):
        media_folder.check()
    media_folder.mark()
    web_marker = MediaFolder.objects.get().marker

    settings.MEDIA_ROOT = filesystem_storage.parent / "elsewhere"
    with pytest.raises(media_folder.MediaFolderMismatch, match="has no marker"):
        media_folder.check()

    settings.MEDIA_ROOT.mkdir()
    foreign = uuid.uuid4()
    (settings.MEDIA_ROOT / media_folder.MARKER_NAME).write_text(f'{{"marker": "{foreign}"}}\n')
    with pytest.raises(media_folder.MediaFolderMismatch, match=f"marker of another folder \\({foreign}\\)"):
        media_folder.check()

    (settings.MEDIA_ROOT / media_folder.MARKER_NAME).write_text("junk")
    with pytest.raises(media_folder.MediaFolderMismatch, match="is not a LubDub media marker"):
        media_folder.check()

    (settings.MEDIA_ROOT / media_folder.MARKER_NAME).unlink()
    (settings.MEDIA_ROOT / media_folder.MARKER_NAME).mkdir()
    with pytest.raises(media_folder.MediaFolderMismatch, match="cannot be read"):
        media_folder.check()
    assert MediaFolder.objects.get().marker == web_marker


@pytest.mark.django_db(transaction=True)
def test_it_checks_nothing_on_s3_storage(settings: Any) -> None:
    assert settings.USE_S3
    settings.MEDIA_ROOT = Path("/nonexistent/media")

    media_folder.check()

    assert media_folder.mark() is None and not MediaFolder.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_start_a_worker_on_filesystem_storage_without_the_webs_uploads(
    filesystem_storage: Path, tmp_path: Path
) -> None:
    media_folder.mark()  # the web's folder, as prepare_storage leaves it
    on_filesystem = {"S3_ENDPOINT_URL": "", "S3_BUCKET": "", "DATABASE_URL": database_url()}
    elsewhere = tmp_path / "another-host-media"

    refused = subprocess.run(
        worker_command(tmp_path / "refused.log", queues=IDLE_QUEUE, name=f"refused-{os.getpid()}@%h"),
        cwd=ROOT,
        env={**os.environ, **on_filesystem, "LUBDUB_TEST_MEDIA_ROOT": str(elsewhere)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert refused.returncode != 0
    assert f"LUBDUB_MEDIA_ROOT={elsewhere} has no marker" in refused.stderr
    assert f"the web's uploads are in {filesystem_storage}" in refused.stderr
    assert "refusing to start" in (tmp_path / "refused.log").read_text()
    assert " ready." not in (tmp_path / "refused.log").read_text()

    log = tmp_path / "accepted.log"
    accepted = subprocess.Popen(
        worker_command(log, queues=IDLE_QUEUE, name=f"accepted-{os.getpid()}@%h"),
        cwd=ROOT,
        env={**os.environ, **on_filesystem, "LUBDUB_TEST_MEDIA_ROOT": str(filesystem_storage)},
        start_new_session=True,
    )
    try:
        wait_for_worker(log, accepted)
    finally:
        kill_worker(accepted)
