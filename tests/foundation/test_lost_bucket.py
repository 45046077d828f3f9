"""A bucket lost from the object store (an in-memory server restarted, a bucket
deleted by mistake) is created again where S3_CREATE_BUCKET allows, and named
as the problem where it does not."""

import subprocess
from typing import Any

import pytest
from django.test import Client

from jobs import storage
from tests.faults import lose_everything


def test_it_creates_a_lost_bucket_again_when_it_writes(
    private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    lose_everything(settings)

    storage.put_bytes("reports/after-restart.csv", b"path,status\n")

    assert storage.read_bytes("reports/after-restart.csv") == b"path,status\n"


def test_it_reads_a_lost_object_as_missing_once_the_bucket_is_back(
    private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    storage.put_bytes("recordings/lost", b"RIFF")
    lose_everything(settings)

    with pytest.raises(FileNotFoundError):
        storage.read_bytes("recordings/lost")
    assert not storage.exists("recordings/lost")


def test_it_names_the_missing_bucket_when_it_may_not_create_it(
    private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    lose_everything(settings)
    settings.S3_CREATE_BUCKET = False

    with pytest.raises(
        storage.BucketMissing, match='bucket "lubdub-private" does not exist.*S3_CREATE_BUCKET'
    ):
        storage.put_bytes("reports/after-restart.csv", b"path,status\n")
    with pytest.raises(storage.BucketMissing):
        storage.check()


@pytest.mark.django_db
def test_it_answers_healthy_after_a_lost_bucket_is_created_again(
    client: Client, private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    lose_everything(settings)

    health = client.get("/healthz")

    assert health.status_code == 200, health.json()
    assert health.json()["checks"]["storage"] == "ok"
    storage.put_bytes("after-health", b"x")  # the bucket is really there


@pytest.mark.django_db
def test_it_answers_503_naming_the_missing_bucket_when_it_may_not_create_it(
    client: Client, private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    lose_everything(settings)
    settings.S3_CREATE_BUCKET = False

    health = client.get("/healthz")

    assert health.status_code == 503
    assert health.json()["failing"] == ["storage"]
    assert health.json()["checks"]["storage"] == "error: BucketMissing"
