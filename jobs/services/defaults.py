"""Which version reads a new batch that names none: its organisation's default, else the global one.

An organisation's own default counts only while it is active; retiring it is
refused while any organisation uses it (registry.retire), so this is a guard
for rows changed by hand.
"""

from jobs.models import ModelVersion, Organisation

ACTIVE = ModelVersion.Status.ACTIVE


def global_default() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_default=True, status=ACTIVE).first()


def default_for(organisation: Organisation | None) -> ModelVersion | None:
    """The version an organisation's new batches use when they name none."""
    if organisation is not None and organisation.default_model_id is not None:
        own = ModelVersion.objects.filter(pk=organisation.default_model_id, status=ACTIVE).first()
        if own is not None:
            return own
    return global_default()


def organisations_using(version: ModelVersion) -> list[Organisation]:
    """Organisations whose own default is this version."""
    return list(Organisation.objects.filter(default_model=version).order_by("name"))
