from typing import Any

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Screening jobs"

    def ready(self) -> None:
        from django.test.signals import setting_changed

        setting_changed.connect(_storage_setting_changed, dispatch_uid="jobs.storage.clients")


def _storage_setting_changed(*, setting: str, **_: Any) -> None:
    # The S3 clients are built once per process from these settings; a test
    # that overrides them must not keep talking to the old endpoint.
    if setting == "STORAGES" or setting.startswith("LUBDUB_STORAGE_"):
        from jobs import storage

        storage.forget_clients()
