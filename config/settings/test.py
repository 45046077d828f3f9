"""Test settings: the real services from the environment, kept apart from a
running development stack (own Redis database, bucket and media folder)."""

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from config.settings.base import *  # noqa: F403
from config.settings.base import BASE_DIR, REDIS_URL, STORAGES, USE_S3
from config.settings.env import env_bool, env_int, env_str


def _redis_database(url: str, number: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{number}"))


PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Test runs sharing one Redis would take each other's tasks: give each its own database.
REDIS_URL = _redis_database(REDIS_URL, env_int("LUBDUB_TEST_REDIS_DB", 15))
CELERY_BROKER_URL = REDIS_URL
# A worker a test starts on filesystem storage may be given a folder of its own.
MEDIA_ROOT = Path(env_str("LUBDUB_TEST_MEDIA_ROOT", str(BASE_DIR / "var" / "test-media")))
S3_BUCKET = "lubdub-test"
# Tests make their own bucket; a worker started for a lost-bucket test is told not to.
S3_CREATE_BUCKET = env_bool("LUBDUB_TEST_S3_CREATE_BUCKET", default=True)
LUBDUB_MODEL_CACHE = BASE_DIR / "var" / "test-models"
if USE_S3:
    STORAGES = {
        **STORAGES,
        "default": {
            **STORAGES["default"],
            "OPTIONS": {**STORAGES["default"]["OPTIONS"], "bucket_name": S3_BUCKET},
        },
    }
else:
    STORAGES = {
        **STORAGES,
        "default": {**STORAGES["default"], "OPTIONS": {"location": str(MEDIA_ROOT), "allow_overwrite": True}},
    }
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
# Static files are served by Django's test client from the app folders.
MIDDLEWARE = [entry for entry in MIDDLEWARE if "whitenoise" not in entry]  # noqa: F405
