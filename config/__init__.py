"""The Django project (the design card's `platform/`; see README for the name)."""

from config.celery_app import app as celery_app

__all__ = ("celery_app",)
