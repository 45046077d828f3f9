"""Settings for image builds only (collectstatic): no services, no secrets."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "build-only-not-used-at-run-time")
os.environ.setdefault("DATABASE_URL", "postgres://build@localhost/build")
os.environ.setdefault("REDIS_URL", "redis://localhost:6379/0")

from config.settings.base import *  # noqa: F403
