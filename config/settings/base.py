"""Settings shared by every environment; all values come from the environment."""

from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import (
    env_bool,
    env_fraction,
    env_int,
    env_list,
    env_origins,
    env_seconds,
    env_str,
    origin_of,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI and Redoc served as static files, so /api/docs/ needs no CDN.
    "drf_spectacular_sidecar",
    "jobs",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it sees a view's exception before any other middleware.
    "jobs.outages.DependencyOutageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "jobs" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL"), conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60)
    )
}
# libpq waits forever for a server that accepts the connection and never answers.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
    "DATABASE_CONNECT_TIMEOUT_S", 5, minimum=1
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# --- object storage -------------------------------------------------------
# Local filesystem unless an S3 endpoint or bucket is configured.
S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL", "")
S3_BUCKET = env_str("S3_BUCKET", "")
S3_REGION = env_str("S3_REGION", "us-east-1")
S3_CREATE_BUCKET = env_bool("S3_CREATE_BUCKET", default=DEBUG)
MEDIA_ROOT = Path(env_str("LUBDUB_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
USE_S3 = bool(S3_ENDPOINT_URL or S3_BUCKET)
SIGNED_URL_SECONDS = env_int("LUBDUB_SIGNED_URL_SECONDS", 300)
# Every storage call gives up in bounded time: with boto3's defaults (60 s per
# read, retried) one hung object store held every web worker for minutes.
LUBDUB_STORAGE_CONNECT_TIMEOUT_S = env_seconds("LUBDUB_STORAGE_CONNECT_TIMEOUT_S", 2.0)
LUBDUB_STORAGE_READ_TIMEOUT_S = env_seconds("LUBDUB_STORAGE_READ_TIMEOUT_S", 10.0)
LUBDUB_STORAGE_MAX_ATTEMPTS = env_int("LUBDUB_STORAGE_MAX_ATTEMPTS", 3, minimum=1)

_default_storage: dict[str, Any]
if USE_S3:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET or "lubdub",
            "endpoint_url": S3_ENDPOINT_URL or None,
            "region_name": S3_REGION,
            "access_key": env_str("AWS_ACCESS_KEY_ID", "") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY", "") or None,
            "addressing_style": "path",
            "signature_version": "s3v4",
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": SIGNED_URL_SECONDS,
            "file_overwrite": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "allow_overwrite": True},
    }

STORAGES: dict[str, dict[str, Any]] = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- uploads --------------------------------------------------------------
# Bodies above this size go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = env_str("LUBDUB_UPLOAD_TMP", "") or None
LUBDUB_MAX_UPLOAD_BYTES = env_int("LUBDUB_MAX_UPLOAD_BYTES", 2 * 1024**3)
# Resumable uploads (jobs.services.resumable): parts of this size (S3 wants 5 MiB
# at least for every part but the last), presigned part links valid this long,
# and an upload with no request for LUBDUB_UPLOAD_EXPIRY_SECONDS is abandoned.
LUBDUB_UPLOAD_PART_BYTES = env_int("LUBDUB_UPLOAD_PART_BYTES", 16 * 1024**2, minimum=5 * 1024**2)
LUBDUB_UPLOAD_PART_URL_SECONDS = env_int("LUBDUB_UPLOAD_PART_URL_SECONDS", 3600, minimum=60)
LUBDUB_UPLOAD_EXPIRY_SECONDS = env_int("LUBDUB_UPLOAD_EXPIRY_SECONDS", 24 * 3600, minimum=60)
LUBDUB_MAX_ARCHIVE_MEMBERS = env_int("LUBDUB_MAX_ARCHIVE_MEMBERS", 50_000)
LUBDUB_MAX_UNCOMPRESSED_BYTES = env_int("LUBDUB_MAX_UNCOMPRESSED_BYTES", 8 * 1024**3)
LUBDUB_MAX_MEMBER_BYTES = env_int("LUBDUB_MAX_MEMBER_BYTES", 200 * 1024**2)
LUBDUB_MAX_COMPRESSION_RATIO = env_int("LUBDUB_MAX_COMPRESSION_RATIO", 100)
LUBDUB_ANALYSIS_CHUNK = env_int("LUBDUB_ANALYSIS_CHUNK", 64)
# Pending work with no activity for this long (a lost message, an ingest that never
# ran, reports never written) is queued again by the sweeper.
LUBDUB_CLAIM_TIMEOUT_SECONDS = env_int("LUBDUB_CLAIM_TIMEOUT_SECONDS", 600)
# A chunk being analysed renews its claims every heartbeat. Claims not renewed for
# three beats belong to a worker that stopped: the sweeper re-queues them then,
# instead of after the claim timeout, while a slow chunk on a live worker keeps them.
LUBDUB_CLAIM_HEARTBEAT_SECONDS = env_seconds("LUBDUB_CLAIM_HEARTBEAT_SECONDS", 10.0)
LUBDUB_CLAIM_LEASE_SECONDS = 3 * LUBDUB_CLAIM_HEARTBEAT_SECONDS
# Reports that could not be written are tried again by the sweeper this long after.
LUBDUB_REPORT_RETRY_SECONDS = env_int("LUBDUB_REPORT_RETRY_SECONDS", 300, minimum=1)
LUBDUB_MODEL_CACHE = Path(env_str("LUBDUB_MODEL_CACHE", str(BASE_DIR / "var" / "models")))

# --- Webhooks (finished batches posted to the uploader's receiver) --------------
# Links in the posted summary start with this (e.g. https://lubdub.example.org); empty: paths only.
LUBDUB_PUBLIC_URL = env_str("LUBDUB_PUBLIC_URL", "").rstrip("/")
# Hosts (names or addresses) a webhook may reach over plain http and on private,
# loopback or link-local addresses; every other host needs https and public addresses.
LUBDUB_WEBHOOK_ALLOWED_HOSTS = [host.lower() for host in env_list("LUBDUB_WEBHOOK_ALLOWED_HOSTS")]
# Any host may be private or http: only for a closed network where every receiver is trusted.
LUBDUB_WEBHOOK_ALLOW_PRIVATE = env_bool("LUBDUB_WEBHOOK_ALLOW_PRIVATE", default=False)
LUBDUB_WEBHOOK_ATTEMPTS = env_int("LUBDUB_WEBHOOK_ATTEMPTS", 6, minimum=1)
# Attempt n waits BACKOFF * 2**(n-1) seconds after the one before, at most BACKOFF_MAX.
LUBDUB_WEBHOOK_BACKOFF_SECONDS = env_seconds("LUBDUB_WEBHOOK_BACKOFF_SECONDS", 30.0)
LUBDUB_WEBHOOK_BACKOFF_MAX_SECONDS = env_seconds("LUBDUB_WEBHOOK_BACKOFF_MAX_SECONDS", 900.0)
LUBDUB_WEBHOOK_TIMEOUT_SECONDS = env_seconds("LUBDUB_WEBHOOK_TIMEOUT_SECONDS", 5.0)

# Origins whose pages send resumable-upload parts straight to the S3 bucket:
# `manage.py prepare_storage` puts them in the bucket's CORS rule. Unset: the
# trusted origins and LUBDUB_PUBLIC_URL's.
LUBDUB_STORAGE_CORS_ORIGINS = env_origins("LUBDUB_STORAGE_CORS_ORIGINS") or [
    origin
    for origin in dict.fromkeys([*map(origin_of, CSRF_TRUSTED_ORIGINS), origin_of(LUBDUB_PUBLIC_URL)])
    if origin
]

# --- REST API -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "jobs.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every error body is {"detail", "code"}, as the schema says (jobs.api.errors).
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"user": env_str("LUBDUB_API_RATE", "600/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LubDub API",
    "DESCRIPTION": "Batch screening of heart-sound recordings.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Separate request components: uploads are binary files there, not the URL strings
    # of the response side, and required text fields say they may not be empty.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "jobs.api.schema.add_common_errors",
    ],
    # The batch status is in the list's and the detail's components: one name for it.
    "ENUM_NAME_OVERRIDES": {"BatchStatusEnum": "jobs.models.Batch.Status"},
}

# --- Celery ---------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL
# Postgres is the record of truth; results are never read back from Celery.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
# A message not acknowledged within this window is delivered again; it must
# exceed the longest task or a healthy task would run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 2}
if LUBDUB_WEBHOOK_BACKOFF_MAX_SECONDS >= CELERY_TASK_TIME_LIMIT * 2:
    # A retry waiting longer than the visibility timeout would be delivered twice.
    raise ImproperlyConfigured("LUBDUB_WEBHOOK_BACKOFF_MAX_SECONDS must be below 2 * CELERY_TASK_TIME_LIMIT.")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# Queues, routes and the default queue: config.celery_app, from jobs.services.queue.
# Often enough that a stopped worker's claims are back in the queue within about
# a minute (lease + one sweep); each sweep is a handful of indexed queries.
CELERY_BEAT_SWEEP_SECONDS = env_int("LUBDUB_SWEEP_SECONDS", 20, minimum=1)

FLOWER_BASIC_AUTH = env_str("FLOWER_BASIC_AUTH", "")
# Bearer token a scraper sends to /metrics; without one the endpoint is off (404), never open.
LUBDUB_METRICS_TOKEN = env_str("LUBDUB_METRICS_TOKEN", "")
if LUBDUB_METRICS_TOKEN and len(LUBDUB_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("LUBDUB_METRICS_TOKEN must be 16+ characters, or empty to turn /metrics off.")

# --- Error reporting (optional) -------------------------------------------
# A Sentry DSN (https://<key>@<host>/<project>): the web's request errors and
# the workers' task failures are sent there too, without personal data. Empty: off.
SENTRY_DSN = env_str("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "")
SENTRY_RELEASE = env_str("SENTRY_RELEASE", "")
SENTRY_TRACES_SAMPLE_RATE = env_fraction("SENTRY_TRACES_SAMPLE_RATE", 0.0)
if SENTRY_DSN:
    from config.sentry import init_sentry

    init_sentry(
        SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )

# Everything goes to stderr: gunicorn's --capture-output puts it in its error
# log (var/log/web.log under `make up`), compose in the container's log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"}
    },
    "root": {"handlers": ["console"], "level": env_str("LUBDUB_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Unhandled exceptions (500s) with their tracebacks, whatever LUBDUB_LOG_LEVEL says.
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
