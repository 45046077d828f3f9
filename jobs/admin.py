from django.contrib import admin

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
