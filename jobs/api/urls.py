from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from jobs.api import reviews_api, uploads_api, views, webhooks_api

app_name = "api"

urlpatterns = [
    path("v1/batches/", views.BatchListCreate.as_view(), name="batch-list"),
    path("v1/batches/<uuid:pk>/", views.BatchDetail.as_view(), name="batch-detail"),
    path("v1/batches/<uuid:pk>/cancel/", views.BatchCancel.as_view(), name="batch-cancel"),
    path("v1/batches/<uuid:pk>/recordings/", views.BatchRecordings.as_view(), name="batch-recordings"),
    path("v1/batches/<uuid:pk>/reports/", views.BatchReports.as_view(), name="batch-reports"),
    path("v1/batches/<uuid:pk>/reports/<str:fmt>/", views.BatchReport.as_view(), name="batch-report"),
    path("v1/batches/<uuid:pk>/deliveries/", webhooks_api.BatchDeliveries.as_view(), name="batch-deliveries"),
    path(
        "v1/organisations/<slug:slug>/webhook/",
        webhooks_api.OrganisationWebhook.as_view(),
        name="organisation-webhook",
    ),
    path("v1/uploads/", uploads_api.UploadOpen.as_view(), name="upload-list"),
    path("v1/uploads/<uuid:pk>/", uploads_api.UploadDetail.as_view(), name="upload-detail"),
    path("v1/uploads/<uuid:pk>/parts/<int:number>/", uploads_api.UploadPart.as_view(), name="upload-part"),
    path("v1/uploads/<uuid:pk>/complete/", uploads_api.UploadComplete.as_view(), name="upload-complete"),
    path("v1/recordings/<int:pk>/", views.RecordingDetail.as_view(), name="recording-detail"),
    path("v1/recordings/<int:pk>/audio/", views.RecordingAudio.as_view(), name="recording-audio"),
    path("v1/recordings/<int:pk>/reviews/", reviews_api.RecordingReviews.as_view(), name="recording-reviews"),
    path("v1/", include("jobs.api.registry_urls")),
    path("v1/files/<str:token>/", views.SignedFile.as_view(), name="signed-file"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
