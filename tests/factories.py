"""Row builders for tests (factory_boy)."""

import factory
from django.contrib.auth import get_user_model

from jobs import models


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    password = factory.django.Password("correct horse battery staple")


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Organisation
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Screening program {n}")
    slug = factory.Sequence(lambda n: f"program-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = models.Membership.Role.UPLOADER


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ModelVersion

    name = "screening"
    version = factory.Sequence(lambda n: f"0.{n}")
    architecture = "gru"
    classes = ["abnormal", "normal"]


class BatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Batch

    organisation = factory.SubFactory(OrganisationFactory)
    created_by = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"batch {n}")
    model_version = factory.SubFactory(ModelVersionFactory)


class RecordingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Recording

    batch = factory.SubFactory(BatchFactory)
    organisation = factory.LazyAttribute(lambda recording: recording.batch.organisation)
    path = factory.Sequence(lambda n: f"recording-{n}.wav")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    storage_key = factory.LazyAttribute(lambda recording: f"recordings/{recording.sha256}")


class PredictionFactory(factory.django.DjangoModelFactory):
    """A prediction of a screening model (positive class `abnormal`) with a chosen raw score."""

    class Meta:
        model = models.Prediction

    recording = factory.SubFactory(RecordingFactory)
    batch = factory.LazyAttribute(lambda prediction: prediction.recording.batch)
    model_version = factory.LazyAttribute(lambda prediction: prediction.recording.batch.model_version)
    raw_probability = 0.5
    label = factory.LazyAttribute(
        lambda prediction: "abnormal" if prediction.raw_probability >= 0.5 else "normal"
    )
    decision = factory.LazyAttribute(lambda prediction: prediction.label)
    probabilities = factory.LazyAttribute(
        lambda prediction: {"abnormal": prediction.raw_probability, "normal": 1 - prediction.raw_probability}
    )
    confidence = factory.LazyAttribute(lambda prediction: prediction.probabilities[prediction.label])
    quality = "good"
    input_sha256 = factory.LazyAttribute(lambda prediction: prediction.recording.sha256)
    feature_fingerprint = "f" * 64


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Site

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Ward {n}")
    stethoscope = "Littmann CORE"


class SiteCalibrationFactory(factory.django.DjangoModelFactory):
    """An active threshold-only calibration; give slope and intercept for a Platt one."""

    class Meta:
        model = models.SiteCalibration

    site = factory.SubFactory(SiteFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    version = factory.Sequence(lambda n: n + 1)
    n_normal = 12
    n_abnormal = 12
    target = models.SiteCalibration.Target.MACC
    threshold = 0.5
    sensitivity = 0.9
    specificity = 0.8
    sensitivity_low = 0.7
    sensitivity_high = 1.0
    specificity_low = 0.6
    specificity_high = 0.95
    roc_auc = 0.9
    roc_points = factory.LazyFunction(lambda: [[0.0, 0.0, None], [0.2, 0.9, 0.5], [1.0, 1.0, 0.01]])
    confusion_matrix = factory.LazyFunction(
        lambda: {"classes": ["normal", "abnormal"], "rows_truth_columns_predicted": [[10, 2], [1, 11]]}
    )
    is_active = True
