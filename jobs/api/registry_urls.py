"""API routes of the model registry, re-analysis and sites, included under /api/v1/."""

from django.urls import path

from jobs.api import models_api, reanalysis_api, sites_api

urlpatterns = [
    path("models/", models_api.ModelVersionListCreate.as_view(), name="model-list"),
    path("models/diff/", models_api.ModelDiff.as_view(), name="model-diff"),
    path("models/<int:pk>/", models_api.ModelVersionDetail.as_view(), name="model-detail"),
    path("models/<int:pk>/default/", models_api.ModelVersionDefault.as_view(), name="model-default"),
    path("models/<int:pk>/publish/", models_api.ModelVersionPublish.as_view(), name="model-publish"),
    path("models/<int:pk>/retire/", models_api.ModelVersionRetire.as_view(), name="model-retire"),
    path("models/<int:pk>/drift/", models_api.ModelDrift.as_view(), name="model-drift"),
    path("reanalyses/", reanalysis_api.ReanalysisListCreate.as_view(), name="reanalysis-list"),
    path("sites/", sites_api.SiteListCreate.as_view(), name="site-list"),
    path("sites/<int:pk>/", sites_api.SiteDetail.as_view(), name="site-detail"),
    path("sites/<int:pk>/calibrations/", sites_api.SiteCalibrations.as_view(), name="site-calibrations"),
]
