"""Optional error reporting to Sentry, for the web and the workers alike.

Started from the settings (SENTRY_DSN), so every process that loads them
reports: gunicorn's web processes (request errors, through the Django
integration) and Celery's (task failures, through the Celery integration).
"""

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration


def init_sentry(
    dsn: str, *, environment: str = "", release: str = "", traces_sample_rate: float = 0.0
) -> None:
    """Send errors to the DSN; a malformed DSN fails here, at start-up.

    No personal data (user ids, addresses, cookies, request bodies): uploads are
    patients' recordings. Traces only when a sample rate is set.
    """
    sentry_sdk.init(
        dsn=dsn,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        environment=environment or None,
        release=release or None,
        traces_sample_rate=traces_sample_rate,
    )
