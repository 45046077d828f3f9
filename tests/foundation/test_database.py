import pytest
from django.db import connection

from jobs.models import Batch, Prediction
from tests.factories import BatchFactory, ModelVersionFactory, RecordingFactory


@pytest.mark.django_db
def test_it_runs_on_postgresql() -> None:
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_it_round_trips_a_batch_with_its_recordings() -> None:
    batch = BatchFactory(name="clinic week 12")
    RecordingFactory.create_batch(3, batch=batch)

    loaded = Batch.objects.get(pk=batch.pk)

    assert loaded.name == "clinic week 12"
    assert loaded.recordings.count() == 3
    assert loaded.status == Batch.Status.PENDING


@pytest.mark.django_db
def test_it_keeps_one_prediction_per_recording_and_version() -> None:
    from django.db import IntegrityError, transaction

    recording = RecordingFactory()
    version = ModelVersionFactory()
    fields = dict(
        label="normal", confidence=0.9, quality="good", input_sha256="a" * 64, feature_fingerprint="f"
    )
    Prediction.objects.create(recording=recording, model_version=version, **fields)

    with pytest.raises(IntegrityError), transaction.atomic():
        Prediction.objects.create(recording=recording, model_version=version, **fields)


@pytest.mark.django_db
def test_it_allows_only_one_default_model() -> None:
    from django.db import IntegrityError, transaction

    ModelVersionFactory(is_default=True)

    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersionFactory(is_default=True)
