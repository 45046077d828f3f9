"""Forms for the pages: filters for lists, the upload form, sites and their calibrations."""

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db.models import F, QuerySet
from django.db.models.expressions import OrderBy

from jobs.models import Batch, ModelVersion, Organisation, Site, SiteCalibration
from jobs.services import access, defaults
from jobs.services.results import filter_rows
from jobs.services.reviews import CONFIRM, NOTE_MAX_LENGTH, REVIEW_FILTERS, filter_reviews
from ml.calibration import UNCERTAIN


class BatchFilterForm(forms.Form):
    name = forms.CharField(required=False, max_length=200, label="Name contains")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Batch.Status.choices])
    created_from = forms.DateField(
        required=False, label="Created from", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label="Created until", widget=forms.DateInput(attrs={"type": "date"})
    )

    def filter(self, batches: QuerySet[Batch]) -> QuerySet[Batch]:
        if not self.is_valid():
            return batches
        data = self.cleaned_data
        if data["name"]:
            batches = batches.filter(name__icontains=data["name"])
        if data["status"]:
            batches = batches.filter(status=data["status"])
        if data["created_from"]:
            batches = batches.filter(created_at__date__gte=data["created_from"])
        if data["created_to"]:
            batches = batches.filter(created_at__date__lte=data["created_to"])
        return batches


class UploadForm(forms.Form):
    file = forms.FileField(
        label="Recording or zip archive",
        help_text="One audio file (WAV, FLAC, …) or a zip of many, optionally with a labels.csv.",
    )
    name = forms.CharField(required=False, max_length=200, label="Batch name")
    model = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        label="Model version",
        empty_label=None,
        to_field_name="pk",
    )
    site = forms.ModelChoiceField(
        queryset=Site.objects.none(),
        required=False,
        label="Site",
        empty_label="No site",
        help_text="Where the recordings were made: its calibration, if any, makes the decisions.",
    )
    webhook_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        label="Webhook URL",
        help_text="Posted a signed summary when the batch finishes; blank: the organisation's default.",
    )

    def __init__(
        self, *args: object, user: User, organisation: Organisation | None = None, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        site_field = self.fields["site"]
        assert isinstance(site_field, forms.ModelChoiceField)
        site_field.queryset = organisation.sites.order_by("name") if organisation else Site.objects.none()
        default_site = organisation.sites.filter(is_default=True).first() if organisation else None
        if default_site is not None:
            # A default site is chosen whenever none is named, so "no site" is not offered.
            site_field.initial = default_site.pk
            site_field.empty_label = None
        # Another organisation's unpublished versions are neither offered nor accepted.
        versions = access.visible_models(user).filter(status=ModelVersion.Status.ACTIVE)
        if organisation is not None:
            versions = versions & access.usable_models(organisation)
        versions = versions.order_by("-is_default", "-created_at")
        default = defaults.default_for(organisation)
        default_pk = default.pk if default is not None else None
        field = self.fields["model"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = versions
        field.label_from_instance = lambda version: (  # type: ignore[method-assign,assignment]
            f"{version.slug} ({version.architecture})" + (" · default" if version.pk == default_pk else "")
        )
        initial = default if default is not None and versions.filter(pk=default.pk).exists() else None
        initial = initial or versions.first()
        if initial is not None:
            field.initial = initial.pk


RECORDING_STATUSES = [
    ("", "Any status"),
    ("done", "Done"),
    ("failed", "Failed"),
    ("rejected", "Rejected"),
    ("pending", "Pending"),
    ("running", "Running"),
    ("skipped", "Skipped"),
    ("cancelled", "Cancelled"),
]
QUALITIES = [("", "Any quality"), ("good", "Good"), ("poor", "Poor"), ("unusable", "Unusable")]
# Sort keys the recordings table accepts, and the annotated columns behind them.
RECORDING_SORTS = {
    "path": "path",
    "status": "file_status",
    "label": "predicted_label",
    "decision": "decision",
    "confidence": "confidence",
    "quality": "quality",
    "heart_rate": "heart_rate_bpm",
    "duration": "duration_s",
}


class RecordingFilterForm(forms.Form):
    path = forms.CharField(required=False, max_length=200, label="File name contains")
    patient = forms.CharField(required=False, max_length=100, label="Patient")
    status = forms.ChoiceField(required=False, choices=RECORDING_STATUSES)
    label = forms.ChoiceField(required=False, label="Predicted label")
    quality = forms.ChoiceField(required=False, choices=QUALITIES)
    review = forms.ChoiceField(required=False, label="Review", choices=[("", "Any"), *REVIEW_FILTERS.items()])
    sort = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(
        self, *args: object, classes: list[str], positive: str | None = None, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.classes = classes
        self.positive = positive
        field = self.fields["label"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "Any label"), *[(name, name) for name in classes]]

    def filter(self, recordings: QuerySet[Any]) -> QuerySet[Any]:
        if not self.is_valid():
            return recordings.order_by("path", "id")
        data = self.cleaned_data
        recordings = filter_rows(
            recordings,
            status=data["status"],
            label=data["label"],
            quality=data["quality"],
            patient=data["patient"],
        )
        if data["path"]:
            recordings = recordings.filter(path__icontains=data["path"])
        recordings = filter_reviews(recordings, data["review"], classes=self.classes, positive=self.positive)
        return recordings.order_by(*self.ordering())

    def query(self) -> dict[str, str]:
        """The filter and sort as given, to carry to the recording pages and back."""
        if not self.is_bound:
            return {}
        return {name: str(self.data[name]) for name in self.fields if self.data.get(name)}

    def ordering(self) -> list[OrderBy | str]:
        sort = (self.cleaned_data.get("sort") if self.is_valid() else "") or "path"
        column = F(RECORDING_SORTS.get(sort.lstrip("-"), "path"))
        # Recordings without a prediction go last whichever way the column is sorted.
        first = column.desc(nulls_last=True) if sort.startswith("-") else column.asc(nulls_last=True)
        return [first, "path", "id"]


class ReanalysisForm(forms.Form):
    """Re-analyse stored recordings with one model version (the page's half of the API)."""

    SCOPES = [
        ("all", "All stored recordings of my organisations"),
        ("analysed_by", "Recordings read by another version"),
        ("dates", "Recordings uploaded between two dates"),
    ]
    scope = forms.ChoiceField(choices=SCOPES, initial="all", widget=forms.RadioSelect, label="Recordings")
    analysed_by = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), required=False, label="Read by", to_field_name="pk"
    )
    since = forms.DateField(
        required=False, label="Uploaded from", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="Uploaded until", widget=forms.DateInput(attrs={"type": "date"})
    )
    run_at = forms.DateTimeField(
        required=False,
        label="Run at",
        help_text="Empty: start now.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    name = forms.CharField(required=False, max_length=200, label="Batch name")

    def __init__(self, *args: Any, version: ModelVersion, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["analysed_by"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = (
            access.visible_models(user)
            .exclude(pk=version.pk)
            .filter(status__in=[ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED])
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        scope = data.get("scope")
        if scope == "analysed_by" and not data.get("analysed_by"):
            self.add_error("analysed_by", "Choose the version whose recordings to read again.")
        if scope == "dates" and not (data.get("since") or data.get("until")):
            self.add_error("since", "Give a first or a last upload date.")
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The last date is before the first.")
        return data


class SiteForm(forms.Form):
    name = forms.CharField(max_length=200)
    stethoscope = forms.CharField(required=False, max_length=200, label="Stethoscope model")
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    is_default = forms.BooleanField(
        required=False, label="Default site", help_text="Uploads that name no site go to this one."
    )


class SiteCalibrationForm(forms.Form):
    """Fit a site's calibration on one of its organisation's finished, labelled batches."""

    batch = forms.ModelChoiceField(
        queryset=Batch.objects.none(),
        label="Labelled batch",
        help_text="A finished batch from this site whose archive had a labels.csv.",
    )
    target = forms.ChoiceField(choices=SiteCalibration.Target.choices, initial=SiteCalibration.Target.MACC)
    value = forms.FloatField(
        required=False,
        min_value=0.01,
        max_value=1.0,
        label="Sensitivity",
        help_text="For “sensitivity at least”: the one to reach (0.90). For best MAcc: an optional floor.",
    )

    BATCH_CHOICES = 100

    def __init__(self, *args: Any, site: Site, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["batch"]
        assert isinstance(field, forms.ModelChoiceField)
        labelled = Batch.objects.filter(
            organisation=site.organisation_id,
            status__in=[Batch.Status.COMPLETED, Batch.Status.COMPLETED_WITH_ERRORS],
            recordings__label__gt="",
        ).distinct()
        recent = labelled.order_by("-created_at").values_list("pk", flat=True)[: self.BATCH_CHOICES]
        field.queryset = Batch.objects.filter(pk__in=list(recent)).select_related("model_version", "site")
        field.label_from_instance = lambda batch: (  # type: ignore[method-assign,assignment]
            f"{batch} · {batch.model_version.slug} · {batch.created_at:%d %b %Y}"
            + (f" · site {batch.site}" if batch.site_id else "")
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("target") == SiteCalibration.Target.SENSITIVITY and data.get("value") is None:
            self.add_error("value", "Give the sensitivity to reach, for example 0.90.")
        return data


class ReviewForm(forms.Form):
    """A clinician's review on the recording page: confirm the model's outcome, or choose a class."""

    verdict = forms.ChoiceField(widget=forms.RadioSelect, label="Your reading")
    note = forms.CharField(
        required=False,
        max_length=NOTE_MAX_LENGTH,
        label="Note",
        help_text="Kept with the review, and shown in the reports.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args: Any, outcome: str, classes: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        word = "Override with" if outcome in classes else "Label as"
        choices = [] if outcome == UNCERTAIN else [(CONFIRM, f"Confirm the model's result: {outcome}")]
        choices += [(name, f"{word} {name}") for name in classes if name != outcome]
        field = self.fields["verdict"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices
