from django.contrib.auth import views as auth_views
from django.urls import include, path

from jobs.pages import batches, dashboard, organisations, patients, recordings, reports, sites

urlpatterns = [
    path("", dashboard.home, name="home"),
    path("status/queues", dashboard.queue_status, name="queue-status"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("organisation", organisations.switch_organisation, name="switch-organisation"),
    path("upload/", batches.upload, name="upload"),
    path("batches/", batches.batch_list, name="batch-list"),
    path("batches/<uuid:batch_id>/", batches.batch_detail, name="batch-detail"),
    path("batches/<uuid:batch_id>/patients/", patients.batch_patients, name="batch-patients"),
    path("batches/<uuid:batch_id>/progress", batches.batch_progress, name="batch-progress"),
    path("batches/<uuid:batch_id>/cancel", batches.batch_cancel, name="batch-cancel"),
    path("batches/<uuid:batch_id>/delete", batches.batch_delete, name="batch-delete"),
    path("batches/<uuid:batch_id>/report/", reports.batch_report_page, name="batch-report-page"),
    path("batches/<uuid:batch_id>/reports/<str:fmt>", batches.batch_report, name="batch-report"),
    path("recordings/<int:recording_id>/", recordings.recording_detail, name="recording-detail"),
    path("recordings/<int:recording_id>/plots", recordings.recording_plots, name="recording-plots"),
    path("recordings/<int:recording_id>/review", recordings.recording_review, name="recording-review"),
    path(
        "recordings/<int:recording_id>/plots/<str:name>.png", recordings.recording_plot, name="recording-plot"
    ),
    path("recordings/<int:recording_id>/waveform", recordings.recording_waveform, name="recording-waveform"),
    path("recordings/<int:recording_id>/audio", recordings.recording_audio, name="recording-audio"),
    path("sites/", sites.site_list, name="site-list"),
    path("sites/<int:site_id>/", sites.site_detail, name="site-detail"),
    path("sites/<int:site_id>/calibrate", sites.site_calibrate, name="site-calibrate"),
    path("sites/<int:site_id>/calibrations/<int:calibration_id>/roc.png", sites.site_roc, name="site-roc"),
    path("models/", include("jobs.pages_models")),
]
