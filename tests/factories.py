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
