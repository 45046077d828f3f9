"""What the API says about batches, recordings, predictions and reports."""

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.api.strict import StrictJsonSerializer
from jobs.models import (
    Batch,
    ModelVersion,
    Prediction,
    Recording,
    Report,
    Review,
    Site,
    SiteCalibration,
    WebhookDelivery,
)
from jobs.services import reviews, verdicts
from jobs.services.progress import batch_progress
from jobs.services.verdicts import Verdict


def _absolute(context: dict[str, Any], path: str) -> str:
    request = context.get("request")
    return request.build_absolute_uri(path) if request else path


class ModelVersionSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(read_only=True)
    organisation = serializers.SlugRelatedField(
        slug_field="slug",
        read_only=True,
        allow_null=True,
        help_text="the registering researcher's organisation; null: registered by staff or the platform",
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "slug",
            "name",
            "version",
            "architecture",
            "classes",
            "metrics",
            "is_default",
            "status",
            "published",
            "organisation",
        ]
        extra_kwargs = {
            "is_default": {"help_text": "the global default: organisations without one of their own use it"},
            "published": {"help_text": "visible to every organisation; otherwise to its own and staff"},
        }


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    expected_total = serializers.IntegerField(
        allow_null=True,
        help_text="files the upload holds, from the archive's listing before its rows are written; "
        "null until ingest has read it",
    )
    rejected = serializers.IntegerField()
    pending = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    percent = serializers.IntegerField()
    eta_seconds = serializers.FloatField(allow_null=True)
    finished = serializers.BooleanField()


class SiteBriefSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Site
        fields = ["id", "name", "url"]

    def get_url(self, site: Site) -> str:
        return _absolute(self.context, reverse("api:site-detail", args=[site.pk]))


class SiteCalibrationBriefSerializer(serializers.ModelSerializer):
    site = serializers.CharField(source="site.name")

    class Meta:
        model = SiteCalibration
        fields = ["id", "version", "site", "threshold"]


class BatchSerializer(serializers.ModelSerializer):
    organisation = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model_version = serializers.CharField(source="model_version.slug", read_only=True)
    site = SiteBriefSerializer(read_only=True, allow_null=True)
    progress = serializers.SerializerMethodField()
    urls = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "id", "name", "organisation", "kind", "status", "priority", "model_version", "site",
            "upload_name", "upload_size", "progress", "error_code", "error_message",
            "shift_warning", "report_error_code", "report_error", "report_retry_at",
            "requeued_count", "requeued_at", "created_at", "started_at", "finished_at", "urls",
        ]  # fmt: skip

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, batch: Batch) -> dict[str, Any]:
        found = batch_progress(batch)
        return ProgressSerializer(found).data

    @extend_schema_field(serializers.DictField(child=serializers.URLField()))
    def get_urls(self, batch: Batch) -> dict[str, str]:
        paths = {
            "self": reverse("api:batch-detail", args=[batch.pk]),
            "recordings": reverse("api:batch-recordings", args=[batch.pk]),
            "reports": reverse("api:batch-reports", args=[batch.pk]),
            "cancel": reverse("api:batch-cancel", args=[batch.pk]),
        }
        return {name: _absolute(self.context, path) for name, path in paths.items()}


# The counts cost a grouped query per batch, so only the detail has them, not the lists.
class BatchDetailSerializer(BatchSerializer):
    """One batch, with its recordings counted by decision (the batch lists leave the counts out)."""

    decision_counts = serializers.SerializerMethodField(
        help_text="Recordings by decision, of the predictions of the batch's model version so far: each "
        "class, 'uncertain', 're-record' (unusable recording); a prediction made before decisions counts "
        "under its label."
    )

    class Meta(BatchSerializer.Meta):
        fields = [*BatchSerializer.Meta.fields, "decision_counts"]

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_decision_counts(self, batch: Batch) -> dict[str, int]:
        return verdicts.batch_counts(batch).by_decision


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="One audio file (WAV, FLAC, ...) or a zip archive of them.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    model = serializers.CharField(
        required=False, allow_blank=True, help_text="Model version; default if empty."
    )
    priority = serializers.ChoiceField(choices=Batch.Priority.choices, required=False)
    organisation = serializers.SlugField(required=False, help_text="Needed when you belong to several.")
    site = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Site id or name in the organisation; its default site if empty.",
    )
    webhook_url = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Posted a signed summary when the batch finishes; the organisation's default if empty.",
    )


class VerdictFields(serializers.Serializer):
    """The fields a clinician acts on, as jobs.services.verdicts shows them (null without a prediction).

    A recording whose quality is `unusable` gets no diagnosis: `decision` is
    "re-record" with the quality reasons, and `label`, `confidence` and
    `heart_rate_bpm` are null (the probabilities stay).
    """

    label = serializers.SerializerMethodField(
        help_text="The model's class; null for a recording to re-record."
    )
    decision = serializers.SerializerMethodField(
        help_text="The label, 'uncertain' or 're-record' (unusable recording); blank before decisions."
    )
    decision_reasons = serializers.SerializerMethodField(
        help_text="Why it is uncertain, or the quality reasons to re-record."
    )
    decision_text = serializers.SerializerMethodField(
        help_text="How it was decided, e.g. 'p(abnormal) 0.42, threshold 0.39 → abnormal'."
    )
    threshold = serializers.SerializerMethodField(
        help_text="The threshold the decision used: a site calibration's when one decided, else the model's."
    )
    confidence = serializers.SerializerMethodField(help_text="Probability of `label`.")
    heart_rate_bpm = serializers.SerializerMethodField()
    heart_rate_flag = serializers.SerializerMethodField(
        help_text="'' when plausible, else 'out_of_range' (outside 30-220 bpm), 'doubled' or 'halved' "
        "(against the segmented beat intervals)."
    )
    heart_rate_note = serializers.SerializerMethodField(help_text="Why the heart rate is flagged.")

    _verdict: Verdict | None = None

    def verdict_of(self, instance: Any) -> Verdict | None:
        raise NotImplementedError

    def to_representation(self, instance: Any) -> Any:
        self._verdict = self.verdict_of(instance)
        return super().to_representation(instance)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_label(self, instance: Any) -> str | None:
        return self._verdict.label if self._verdict else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decision(self, instance: Any) -> str | None:
        return self._verdict.decision if self._verdict else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField(), allow_null=True))
    def get_decision_reasons(self, instance: Any) -> list[str] | None:
        return self._verdict.reasons if self._verdict else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decision_text(self, instance: Any) -> str | None:
        return self._verdict.text if self._verdict else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_threshold(self, instance: Any) -> float | None:
        return self._verdict.threshold if self._verdict else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_confidence(self, instance: Any) -> float | None:
        return self._verdict.confidence if self._verdict else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_heart_rate_bpm(self, instance: Any) -> float | None:
        return self._verdict.heart_rate.bpm if self._verdict else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_heart_rate_flag(self, instance: Any) -> str | None:
        return self._verdict.heart_rate.flag if self._verdict else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_heart_rate_note(self, instance: Any) -> str | None:
        return self._verdict.heart_rate.note if self._verdict else None


class ReviewBriefSerializer(serializers.Serializer):
    """A recording's latest review, as listed with its batch's rows."""

    label = serializers.CharField(help_text="The clinician's label: a class, or 're-record' confirmed.")
    action = serializers.ChoiceField(choices=Review.Action.choices)
    model_decision = serializers.CharField(help_text="What the model said when it was reviewed.")
    note = serializers.CharField()
    reviewed_by = serializers.CharField()
    reviewed_at = serializers.DateTimeField()


class ReviewSerializer(serializers.ModelSerializer):
    """One review action; the model's prediction is never changed by it."""

    model_version = serializers.CharField(source="model_version.slug")
    reviewed_by = serializers.CharField(source="reviewed_by.get_username")
    recording = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Review
        fields = [
            "id", "recording", "label", "action", "model_version", "model_decision", "note",
            "reviewed_by", "reviewed_at",
        ]  # fmt: skip
        extra_kwargs = {
            "action": {
                "help_text": "confirmed: the model's outcome; overridden: another class than the "
                "model's; labelled: a class where the model gave none (uncertain, re-record)"
            }
        }


class ReviewRequestSerializer(StrictJsonSerializer):
    label = serializers.CharField(
        required=False, max_length=50, help_text="One of the model's classes; or send confirm."
    )
    confirm = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Take the model's result ('re-record' included) as the label.",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=reviews.NOTE_MAX_LENGTH)
    batch = serializers.UUIDField(
        required=False,
        help_text="The batch whose model's reading is reviewed (a re-analysis); else the recording's own.",
    )


class FileRowSerializer(VerdictFields, serializers.ModelSerializer):
    """A recording as a row of its batch (annotations from services.results)."""

    status = serializers.CharField(source="file_status", allow_null=True)
    probabilities = serializers.DictField(child=serializers.FloatField(), allow_null=True)
    quality = serializers.CharField(allow_null=True)
    site_probability = serializers.FloatField(
        allow_null=True, help_text="The site calibration's probability; null when the model's rule decided."
    )
    site_calibration = serializers.IntegerField(source="site_calibration_id", allow_null=True)
    error_code = serializers.CharField(source="error_code_value", allow_null=True)
    error = serializers.CharField(allow_null=True)
    truth = serializers.CharField(source="label")
    review = serializers.SerializerMethodField(help_text="The latest clinician's review; null if none.")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Recording
        fields = [
            "id", "path", "status", "label", "decision", "decision_reasons", "decision_text", "threshold",
            "confidence", "probabilities", "quality", "heart_rate_bpm", "heart_rate_flag",
            "heart_rate_note", "site_probability", "site_calibration", "duration_s", "sample_rate",
            "channels", "sha256", "truth", "patient_id", "location", "error_code", "error", "review", "url",
        ]  # fmt: skip

    def verdict_of(self, instance: Any) -> Verdict | None:
        return verdicts.for_row(instance)

    @extend_schema_field(ReviewBriefSerializer(allow_null=True))
    def get_review(self, recording: Recording) -> dict[str, Any] | None:
        found = reviews.row_review(recording)
        return ReviewBriefSerializer(found).data if found else None

    def get_url(self, recording: Recording) -> str:
        return _absolute(self.context, reverse("api:recording-detail", args=[recording.pk]))


class PredictionSerializer(VerdictFields, serializers.ModelSerializer):
    """`decision` and `site_probability` are the site calibration's when `site_calibration` is set;
    `model_label` and `probabilities` are always the model bundle's."""

    model_version = serializers.CharField(source="model_version.slug")
    model_label = serializers.CharField(
        source="label", help_text="The model's class, also for a recording to re-record."
    )
    site_calibration = SiteCalibrationBriefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Prediction
        fields = [
            "model_version", "label", "model_label", "decision", "decision_reasons", "decision_text",
            "threshold", "confidence", "probabilities", "raw_probability", "site_calibration",
            "site_probability", "quality", "quality_reasons", "heart_rate_bpm", "heart_rate_flag",
            "heart_rate_note", "segments", "timeline", "timings", "input_sha256", "feature_fingerprint",
            "batch", "created_at",
        ]  # fmt: skip

    def verdict_of(self, instance: Any) -> Verdict | None:
        return verdicts.for_prediction(instance)


class RecordingSerializer(serializers.ModelSerializer):
    predictions = PredictionSerializer(many=True, read_only=True)
    analyses = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField(help_text="The latest clinician's review; null if none.")
    reviews = serializers.SerializerMethodField(help_text="Every review, newest first (the audit trail).")
    audio_url = serializers.SerializerMethodField()

    class Meta:
        model = Recording
        fields = [
            "id", "batch", "path", "status", "sha256", "size_bytes", "sample_rate", "channels",
            "duration_s", "label", "patient_id", "location", "error_code", "error_message", "created_at",
            "predictions", "analyses", "review", "reviews", "audio_url",
        ]  # fmt: skip

    @extend_schema_field(ReviewSerializer(allow_null=True))
    def get_review(self, recording: Recording) -> dict[str, Any] | None:
        found = reviews.history(recording).first()
        return ReviewSerializer(found).data if found else None

    @extend_schema_field(ReviewSerializer(many=True))
    def get_reviews(self, recording: Recording) -> list[dict[str, Any]]:
        return list(ReviewSerializer(reviews.history(recording), many=True).data)

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_analyses(self, recording: Recording) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in recording.analyses.values(
                "batch_id", "status", "attempts", "error_code", "error_message", "finished_at"
            )
        ]

    def get_audio_url(self, recording: Recording) -> str | None:
        if not recording.storage_key:
            return None
        return _absolute(self.context, reverse("api:recording-audio", args=[recording.pk]))


class ReportSerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.slug")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Report
        fields = ["format", "model_version", "size_bytes", "created_at", "url"]

    def get_url(self, report: Report) -> str:
        path = reverse("api:batch-report", args=[report.batch_id, report.format])
        return _absolute(self.context, path)


class SiteCalibrationSerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.slug")
    created_by = serializers.CharField(source="created_by.get_username", allow_null=True, default=None)
    method = serializers.SerializerMethodField()

    class Meta:
        model = SiteCalibration
        fields = [
            "id", "version", "model_version", "is_active", "created_at", "created_by", "source_batch",
            "n_normal", "n_abnormal", "target", "target_value", "method", "slope", "intercept", "threshold",
            "sensitivity", "sensitivity_low", "sensitivity_high", "specificity", "specificity_low",
            "specificity_high", "roc_auc", "confusion_matrix", "roc_points",
        ]  # fmt: skip

    def get_method(self, profile: SiteCalibration) -> str:
        return "platt" if profile.is_platt else "threshold"


class SiteSerializer(serializers.ModelSerializer):
    organisation = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    active_calibrations = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Site
        fields = [
            "id", "name", "organisation", "stethoscope", "notes", "is_default", "created_at",
            "active_calibrations", "url",
        ]  # fmt: skip

    @extend_schema_field(SiteCalibrationSerializer(many=True))
    def get_active_calibrations(self, site: Site) -> list[dict[str, Any]]:
        active = site.calibrations.filter(is_active=True).select_related("model_version", "created_by")
        return list(SiteCalibrationSerializer(active, many=True).data)

    def get_url(self, site: Site) -> str:
        return _absolute(self.context, reverse("api:site-detail", args=[site.pk]))


class SiteCreateSerializer(StrictJsonSerializer):
    name = serializers.CharField(max_length=200)
    stethoscope = serializers.CharField(required=False, allow_blank=True, max_length=200)
    notes = serializers.CharField(required=False, allow_blank=True)
    is_default = serializers.BooleanField(required=False, default=False)
    organisation = serializers.SlugField(required=False, help_text="Needed when you belong to several.")


class CalibrationRequestSerializer(StrictJsonSerializer):
    batch = serializers.UUIDField(help_text="A finished batch of this site's organisation with labels.")
    target = serializers.ChoiceField(choices=SiteCalibration.Target.choices)
    value = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0.0,
        max_value=1.0,
        help_text="target 'sensitivity': the sensitivity to reach; 'macc': an optional least sensitivity.",
    )


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "attempt", "url", "attempted_at", "status_code", "delivered", "error", "duration_ms",
            "next_attempt_at",
        ]  # fmt: skip


class OrganisationWebhookSerializer(serializers.Serializer):
    url = serializers.CharField(
        allow_blank=True, max_length=500, help_text="The default webhook of new batches; blank: none."
    )
    secret = serializers.CharField(read_only=True, help_text="Signs every delivery (HMAC-SHA256).")
    signature_header = serializers.CharField(read_only=True)
    rotate_secret = serializers.BooleanField(
        write_only=True, required=False, default=False, help_text="Replace the secret with a new one."
    )
