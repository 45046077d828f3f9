from django.contrib import admin
from django.http import HttpRequest

from jobs import models


@admin.register(models.Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "default_model", "created_at")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organisation", "role")
    list_filter = ("role", "organisation")


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "name", "version", "architecture", "is_default", "status", "published", "organisation", "created_at",
    )  # fmt: skip
    list_filter = ("status", "is_default", "published")


@admin.register(models.Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "organisation",
        "kind",
        "status",
        "total_count",
        "done_count",
        "failed_count",
        "created_at",
    )
    list_filter = ("status", "kind", "organisation")
    search_fields = ("name", "id")


@admin.register(models.Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ("path", "batch", "status", "duration_s", "label", "error_code")
    list_filter = ("status",)
    search_fields = ("path", "sha256")
    raw_id_fields = ("batch",)


@admin.register(models.Analysis)
class AnalysisAdmin(admin.ModelAdmin):
    list_display = ("id", "batch", "recording", "status", "attempts", "error_code")
    list_filter = ("status",)
    raw_id_fields = ("batch", "recording")


@admin.register(models.Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("recording", "model_version", "label", "confidence", "quality", "created_at")
    list_filter = ("label", "quality", "model_version")
    raw_id_fields = ("recording", "batch")


@admin.register(models.Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ("batch", "model_version", "format", "created_at")


@admin.register(models.WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("hostname", "last_seen")


@admin.register(models.Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("name", "organisation", "stethoscope", "is_default", "created_at")
    list_filter = ("organisation",)
    search_fields = ("name", "stethoscope")


@admin.register(models.SiteCalibration)
class SiteCalibrationAdmin(admin.ModelAdmin):
    list_display = ("site", "model_version", "version", "target", "threshold", "is_active", "created_at")
    list_filter = ("is_active", "target", "model_version")
    # Evidence of decisions already made: calibrations are fitted through the service, not edited.
    readonly_fields = [field.name for field in models.SiteCalibration._meta.fields]


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record kept as it was written: listed and shown, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        # Every field shown as text: no form field is built for a form that is never saved.
        return [field.name for field in self.model._meta.fields]


@admin.register(models.Review)
class ReviewAdmin(ReadOnlyAdmin):
    # The audit trail of clinicians' reviews: a database trigger refuses updates anyway.
    list_display = (
        "recording",
        "label",
        "action",
        "model_decision",
        "model_version",
        "reviewed_by",
        "reviewed_at",
    )
    list_filter = ("action", "model_version")
    search_fields = ("recording__path", "reviewed_by__username", "note")
    list_select_related = ("recording", "model_version", "reviewed_by")
    date_hierarchy = "reviewed_at"


@admin.register(models.WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("batch", "attempt", "url", "delivered", "status_code", "duration_ms", "attempted_at")
    list_filter = ("delivered",)
    search_fields = ("batch__id", "batch__name", "url")
    list_select_related = ("batch",)
    date_hierarchy = "attempted_at"
