"""Batches, recordings, predictions, reports and the model versions behind them.

Postgres is the record of truth for every state the pipeline goes through;
Celery only carries ids.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class Organisation(models.Model):
    """A screening program. Its members see its batches; staff see all."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organisations"
    )
    # New batches that name no version are read with this one (while active), else
    # the global default. PROTECT: deleting it would silently move the
    # organisation's uploads to another model.
    default_model = models.ForeignKey(
        "ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="default_for",
        help_text="The version its new batches use when none is named; empty: the global default.",
    )
    webhook_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Where finished batches are reported when the upload names none.",
    )
    # Kept in clear: the platform signs with it. Made on first use (jobs.services.webhooks).
    webhook_secret = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        UPLOADER = "uploader", "Uploader"
        RESEARCHER = "researcher", "Researcher"
        ADMIN = "admin", "Administrator"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.UPLOADER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organisation"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organisation} ({self.role})"


class ModelVersion(models.Model):
    """A registered model bundle, kept in storage together with its manifest."""

    class Status(models.TextChoices):
        # A bundle uploaded through the API waits in `checking` until a worker's
        # smoke prediction passes; the web process never loads a model itself.
        CHECKING = "checking", "Checking"
        ACTIVE = "active", "Active"
        REJECTED = "rejected", "Rejected"
        RETIRED = "retired", "Retired"

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    architecture = models.CharField(max_length=50, blank=True)
    classes = models.JSONField(default=list)
    manifest = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    model_card = models.TextField(blank=True)
    bundle_key = models.CharField(max_length=500, blank=True)
    bundle_sha256 = models.CharField(max_length=64, blank=True)
    feature_fingerprint = models.CharField(max_length=64, blank=True)
    is_default = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # The smoke prediction on a committed sample: sample, label, probabilities, or the error.
    smoke_test = models.JSONField(default=dict, blank=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # A researcher's registration belongs to their organisation and is seen by
    # other organisations only once staff publish it; staff and the platform's
    # commands register published versions with no organisation.
    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="registered_models",
        help_text="The organisation of the researcher who registered it; empty: staff or the platform.",
    )
    published = models.BooleanField(
        default=True, help_text="Visible to every organisation; otherwise only to its own and to staff."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_version"),
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_model"
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.slug

    @property
    def slug(self) -> str:
        return f"{self.name}-{self.version}"


class Site(models.Model):
    """A place and device an organisation records at; its calibrations adapt the model's threshold."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=200)
    stethoscope = models.CharField(max_length=200, blank=True, help_text="Stethoscope make and model.")
    notes = models.TextField(blank=True)
    # New batches of the organisation go to its default site unless another is named.
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Upload by name must find one site, whatever the case it is typed in.
            models.UniqueConstraint(Lower("name"), "organisation", name="unique_site_name"),
            models.UniqueConstraint(
                fields=["organisation"], condition=Q(is_default=True), name="one_default_site"
            ),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Batch(models.Model):
    class Kind(models.TextChoices):
        UPLOAD = "upload", "Upload"
        REANALYSIS = "reanalysis", "Re-analysis"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SCHEDULED = "scheduled", "Scheduled"
        INGESTING = "ingesting", "Ingesting"
        ANALYSING = "analysing", "Analysing"
        COMPLETED = "completed", "Completed"
        COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Priority(models.TextChoices):
        BULK = "bulk", "Bulk"
        INTERACTIVE = "interactive", "Interactive"

    FINISHED = (
        Status.COMPLETED,
        Status.COMPLETED_WITH_ERRORS,
        Status.FAILED,
        Status.CANCELLED,
    )
    # Statuses whose batch gets reports.
    REPORTED = (Status.COMPLETED, Status.COMPLETED_WITH_ERRORS)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="batches"
    )
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.UPLOAD)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.PENDING)
    priority = models.CharField(max_length=20, choices=Priority.choices, default=Priority.BULK)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="batches")
    # Where the recordings were made: its active calibration for the model version makes the decisions.
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.SET_NULL, related_name="batches")

    upload_key = models.CharField(max_length=500, blank=True)
    upload_name = models.CharField(max_length=255, blank=True)
    upload_size = models.BigIntegerField(default=0)
    # Re-analysis: which recordings, as given by the requester (kept for the record).
    selection = models.JSONField(default=dict, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # The client's Idempotency-Key: a retried upload finds this batch instead of making another.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")

    # Progress, updated in the same statements that change analyses.
    total_count = models.IntegerField(default=0)
    expected_total = models.IntegerField(
        null=True,
        blank=True,
        help_text="Files the upload holds, counted from the archive's listing before any row is written "
        "(1 for a single file); null until ingest has read it.",
    )
    rejected_count = models.IntegerField(default=0)
    pending_count = models.IntegerField(default=0)
    done_count = models.IntegerField(default=0)
    failed_count = models.IntegerField(default=0)
    skipped_count = models.IntegerField(default=0)

    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    # Set when the report is written: the batch's scores are unlike the model's validation sources.
    shift_warning = models.TextField(blank=True)
    report_error_code = models.CharField(
        max_length=50, blank=True, help_text="Why the reports could not be written, as a code; blank if none."
    )
    report_error = models.TextField(
        blank=True, help_text="Why the reports could not be written; blank if none."
    )
    report_retry_at = models.DateTimeField(
        null=True, blank=True, help_text="When the reports are tried again after a failure."
    )
    requeued_count = models.IntegerField(
        default=0, help_text="Recordings re-queued because the worker analysing them stopped (each time)."
    )
    requeued_at = models.DateTimeField(null=True, blank=True, help_text="When that last happened.")
    webhook_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Where the summary is posted when the batch finishes; blank: none.",
    )
    # Set by the one caller that queues the notification (a conditional UPDATE).
    webhook_queued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organisation", "-created_at"]),
            models.Index(fields=["status"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="unique_batch_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return self.name or str(self.id)

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class Recording(models.Model):
    """One member of an uploaded batch: the file's facts and where its audio is.

    Audio is stored once per content and lies at (storage_key, storage_offset,
    size_bytes): an object of its own under `recordings/<sha256>` (offset 0), or
    a span of a pack object holding several recordings (jobs.services.packs).
    Several recordings (in one archive or several) may share it. A member
    rejected at ingest keeps its row, with no audio, so the batch can say why.
    """

    class Status(models.TextChoices):
        STORED = "stored", "Stored"
        REJECTED = "rejected", "Rejected"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="recordings")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="recordings")
    path = models.CharField(max_length=1024)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STORED)
    storage_key = models.CharField(max_length=200, blank=True)
    storage_offset = models.BigIntegerField(
        default=0, help_text="Where the audio starts in the object; it is size_bytes long."
    )
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    size_bytes = models.BigIntegerField(default=0)
    sample_rate = models.IntegerField(null=True, blank=True)
    channels = models.IntegerField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=50, blank=True, help_text="Ground truth, when known.")
    # From labels.csv's patient and location columns, or a file named <patient>_<location>.wav.
    patient_id = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="The patient or subject recorded; blank if not given.",
    )
    location = models.CharField(
        max_length=20,
        blank=True,
        default="",
        help_text=(
            "Where the stethoscope was (auscultation location, e.g. AV, PV, TV, MV); blank if not given."
        ),
    )
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "path"], name="unique_recording_path")]
        indexes = [
            models.Index(
                fields=["batch", "patient_id"], name="recording_patient", condition=~Q(patient_id="")
            ),
            # Batch deletion and the sweep ask which rows still reference a list of
            # objects. Not a partial index: PostgreSQL cannot prove a long IN list
            # non-blank, so it would not use one.
            models.Index(fields=["storage_key"], name="recording_storage_key"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return self.path


class Analysis(models.Model):
    """One unit of work: a recording read by a batch's model.

    Upload batches get one per stored recording; re-analysis batches point at
    recordings of earlier batches, so no audio is uploaded or copied again.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="analyses")
    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="analyses")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "recording"], name="unique_analysis")]
        indexes = [models.Index(fields=["batch", "status"])]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.recording_id} in {self.batch_id}: {self.status}"


class Prediction(models.Model):
    """A model version's reading of a recording: one per (recording, version)."""

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    batch = models.ForeignKey(Batch, null=True, on_delete=models.SET_NULL, related_name="predictions")
    label = models.CharField(max_length=50)
    # `label`, or "uncertain" with readable reasons; blank for predictions made before decisions.
    decision = models.CharField(max_length=50, blank=True, default="")
    decision_reasons = models.JSONField(default=list, blank=True)
    probabilities = models.JSONField(default=dict)
    # The model's own probability of the positive class; `probabilities` are calibrated by the bundle.
    raw_probability = models.FloatField(null=True, blank=True)
    # Set when the recording's site has an active calibration for this model version:
    # `decision` is then the site's, made from `site_probability`; `label` and
    # `probabilities` stay the bundle's.
    site_calibration = models.ForeignKey(
        "SiteCalibration", null=True, blank=True, on_delete=models.PROTECT, related_name="predictions"
    )
    site_probability = models.FloatField(null=True, blank=True)
    confidence = models.FloatField()
    timeline = models.JSONField(default=list, blank=True)
    quality = models.CharField(max_length=10)
    quality_reasons = models.JSONField(default=list, blank=True)
    heart_rate_bpm = models.FloatField(null=True, blank=True)
    # Heart-cycle segmentation: S1/S2 onsets, segments, cycles, heart rate and its spread.
    segments = models.JSONField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # What produced this number, so it can be reproduced.
    input_sha256 = models.CharField(max_length=64)
    feature_fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recording", "model_version"], name="unique_prediction_per_version"
            )
        ]
        indexes = [models.Index(fields=["model_version", "created_at"])]

    def __str__(self) -> str:
        return f"{self.recording_id} by {self.model_version_id}: {self.label}"


class SiteCalibration(models.Model):
    """A site's decision rule for one model version, fitted on a labelled batch from that site.

    The score is the model's own probability (``Prediction.raw_probability``);
    with 20 or more of each class it is Platt-scaled first, with fewer only the
    threshold is set. Versions count up per (site, model version); one is active.
    """

    class Target(models.TextChoices):
        MACC = "macc", "Best MAcc"
        SENSITIVITY = "sensitivity", "Sensitivity at least"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="calibrations")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="site_calibrations"
    )
    version = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    source_batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="site_calibrations"
    )
    n_normal = models.IntegerField()
    n_abnormal = models.IntegerField()
    target = models.CharField(max_length=20, choices=Target.choices)
    # The sensitivity asked for ("sensitivity"), or the least one accepted while maximising MAcc.
    target_value = models.FloatField(null=True, blank=True)
    # Platt parameters on logit(raw score); null when there were too few labels to fit them.
    slope = models.FloatField(null=True, blank=True)
    intercept = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    sensitivity = models.FloatField()
    specificity = models.FloatField()
    sensitivity_low = models.FloatField()
    sensitivity_high = models.FloatField()
    specificity_low = models.FloatField()
    specificity_high = models.FloatField()
    roc_auc = models.FloatField(null=True, blank=True)
    # [false positive rate, true positive rate, threshold] from the highest threshold down.
    roc_points = models.JSONField(default=list)
    confusion_matrix = models.JSONField(default=dict)
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "model_version", "version"], name="unique_site_calibration_version"
            ),
            models.UniqueConstraint(
                fields=["site", "model_version"],
                condition=Q(is_active=True),
                name="one_active_site_calibration",
            ),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.site} v{self.version} for {self.model_version_id}"

    @property
    def is_platt(self) -> bool:
        return self.slope is not None and self.intercept is not None


class Report(models.Model):
    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSON = "json", "JSON"
        HTML = "html", "HTML"
        PDF = "pdf", "PDF"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="reports")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="reports")
    format = models.CharField(max_length=10, choices=Format.choices)
    storage_key = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "model_version", "format"], name="unique_report_format")
        ]

    def __str__(self) -> str:
        return f"{self.format} report of {self.batch_id}"


class WorkerHeartbeat(models.Model):
    """When each worker last answered: a cheap 'is anyone working' signal."""

    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField()
    queues = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return self.hostname


class MediaFolder(models.Model):
    """The folder the web keeps filesystem storage in, as it last marked it (one row).

    A marker file with the same id lies in that folder. A worker on filesystem
    storage compares the marker in its own LUBDUB_MEDIA_ROOT with this row and
    refuses to start when they differ: on another host, or with another folder,
    it would not see the web's uploads.
    """

    marker = models.UUIDField()
    path = models.CharField(max_length=1024)
    hostname = models.CharField(max_length=255)
    marked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.path} on {self.hostname}"


class Review(models.Model):
    """A clinician's reading of a recording: the model's outcome confirmed, or another label given.

    Every review action is a new row and no row is ever changed (a database
    trigger refuses updates): the latest is the recording's review, the earlier
    ones its history. The prediction reviewed keeps its own label; the review
    notes what the model said then (``model_version``, ``model_decision``).
    """

    class Action(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed"
        OVERRIDDEN = "overridden", "Overridden"
        # The model gave no class to confirm or override (uncertain, re-record).
        LABELLED = "labelled", "Labelled"

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="reviews")
    # PROTECT rather than SET_NULL: nulling would be an update, and versions are retired, not deleted.
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="reviews")
    model_decision = models.CharField(
        max_length=50, help_text="The model's outcome when reviewed: a class, 'uncertain' or 're-record'."
    )
    label = models.CharField(
        max_length=50, help_text="The clinician's label: a class of the model, or the outcome confirmed."
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    note = models.TextField(blank=True)
    # An audit trail names its reviewers: a user who reviewed is deactivated, not deleted.
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    reviewed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["recording", "-reviewed_at", "-id"], name="review_latest")]
        ordering = ["-reviewed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.recording_id}: {self.label} ({self.action}) by {self.reviewed_by_id}"

    @property
    def overridden(self) -> bool:
        return self.action == self.Action.OVERRIDDEN


class WebhookDelivery(models.Model):
    """One attempt at posting a finished batch's summary to its webhook URL."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="webhook_deliveries")
    url = models.URLField(max_length=500)
    attempt = models.PositiveIntegerField()
    status_code = models.IntegerField(
        null=True, blank=True, help_text="The receiver's answer; null: none came."
    )
    delivered = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    duration_ms = models.IntegerField(default=0)
    attempted_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When it is tried again; null: not."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "attempt"], name="unique_webhook_attempt"),
        ]
        ordering = ["batch", "attempt"]

    def __str__(self) -> str:
        return f"{self.batch_id} attempt {self.attempt}: {self.status_code or self.error}"


class ResumableUpload(models.Model):
    """An upload sent in parts, which survives a dropped connection (jobs.services.resumable).

    Its parts are stored where the batch's upload will be (`storage_key`, under
    the `batch_id` chosen when it opens), so completing it makes the batch
    without copying the file.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETING = "completing", "Being completed"
        COMPLETED = "completed", "Completed"
        EXPIRED = "expired", "Expired"
        ABORTED = "aborted", "Aborted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="resumable_uploads")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="resumable_uploads"
    )
    filename = models.CharField(max_length=255)
    size = models.BigIntegerField(help_text="Declared size in bytes.")
    sha256 = models.CharField(max_length=64, help_text="Declared SHA-256 of the whole file, hex.")
    part_size = models.BigIntegerField(help_text="Bytes per part; the last part holds the rest.")
    batch_id = models.UUIDField(unique=True, default=uuid.uuid4, help_text="The batch it becomes.")
    storage_key = models.CharField(max_length=500)
    multipart_id = models.CharField(
        max_length=1024, blank=True, help_text="S3's UploadId; blank on filesystem."
    )
    options = models.JSONField(default=dict, blank=True, help_text="The batch options sent when it opened.")
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    assembled = models.BooleanField(default=False, help_text="The parts are joined into storage_key.")
    error_code = models.CharField(max_length=50, blank=True, help_text="Why completing it was last refused.")
    completing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Abandoned then, unless a request comes first.")
    completed_at = models.DateTimeField(null=True, blank=True)
    cleaned_at = models.DateTimeField(
        null=True, blank=True, help_text="When the parts of an expired or aborted upload were deleted."
    )

    class Meta:
        indexes = [models.Index(fields=["status", "expires_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="unique_resumable_upload_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.get_status_display().lower()})"

    @property
    def part_count(self) -> int:
        return -(-self.size // self.part_size)

    def part_length(self, number: int) -> int:
        """The bytes part `number` (from 1) holds."""
        return min(self.part_size, self.size - (number - 1) * self.part_size)
