"""REST API v1: thin views over jobs.services.

Everything is scoped to the caller's organisations; anything else is a 404.
Downloads answer with a redirect to a short-lived link (or the link as JSON
with `?redirect=0`).
"""

from typing import Any

from django.core import signing
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api import serializers as api
from jobs.api.errors import ERROR, error_response, invalid_response, refused
from jobs.models import Batch, ModelVersion, Recording, Report
from jobs.services import access, downloads, lifecycle, results, reviews, uploads, verdicts
from jobs.services.refusals import Refused
from jobs.services.reports import CONTENT_TYPES

LINK = inline_serializer("Link", {"url": serializers.URLField(), "expires_in": serializers.IntegerField()})


def _link_response(request: Request, key: str, *, filename: str, content_type: str, **span: Any) -> Any:
    from django.conf import settings

    url = request.build_absolute_uri(
        downloads.download_link(key, filename=filename, content_type=content_type, **span)
    )
    if request.query_params.get("redirect") == "0":
        return Response({"url": url, "expires_in": settings.SIGNED_URL_SECONDS})
    return HttpResponseRedirect(url)


class BatchListCreate(generics.ListAPIView):
    serializer_class = api.BatchSerializer
    parser_classes = [MultiPartParser]

    def get_queryset(self) -> Any:
        return access.visible_batches(self.request.user).select_related(
            "model_version", "organisation", "site"
        )

    @extend_schema(
        request={"multipart/form-data": api.UploadSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="chosen by the client: a retry with the same key returns the first batch",
            )
        ],
        responses={
            200: api.BatchSerializer,
            201: api.BatchSerializer,
            400: ERROR,
            404: ERROR,
            411: ERROR,
            413: ERROR,
            415: ERROR,
            503: ERROR,
        },
        summary="Upload one recording or a zip archive as a new batch",
    )
    def post(self, request: Request) -> Response:
        # Checked before the body is read: a too-large upload never reaches the disk.
        try:
            uploads.check_declared_size(
                request.META.get("CONTENT_LENGTH"),
                transfer_encoding=request.META.get("HTTP_TRANSFER_ENCODING", ""),
            )
            key = uploads.idempotency_key(request.headers.get("Idempotency-Key"))
        except uploads.UploadRejected as exc:
            return refused(exc)
        earlier = uploads.retried_batch(request.user, key)
        if earlier is not None:
            return self._answer(request, earlier, status.HTTP_200_OK)
        form = api.UploadSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        values = form.validated_data
        try:
            organisation = access.upload_organisation(request.user, values.get("organisation"))
            upload = values["file"]
            batch = uploads.create_batch_from_upload(
                user=request.user,
                organisation=organisation,
                upload=upload.file,
                filename=upload.name,
                options=uploads.UploadOptions(
                    name=values.get("name", ""),
                    model=values.get("model") or None,
                    priority=values.get("priority"),
                    site=values.get("site") or None,
                    webhook_url=values.get("webhook_url", ""),
                ),
                idempotency_key=key,
            )
        except Refused as exc:
            return refused(exc)
        return self._answer(request, batch, status.HTTP_201_CREATED)

    def _answer(self, request: Request, batch: Batch, http_status: int) -> Response:
        data = api.BatchSerializer(batch, context={"request": request}).data
        return Response(data, status=http_status, headers={"Location": data["urls"]["self"]})


class BatchDetail(generics.RetrieveDestroyAPIView):
    serializer_class = api.BatchDetailSerializer

    def get_object(self) -> Batch:
        return access.get_batch(self.request.user, self.kwargs["pk"])

    def perform_destroy(self, instance: Batch) -> None:
        lifecycle.delete_batch(instance, user=self.request.user)


class BatchCancel(APIView):
    @extend_schema(request=None, responses={200: api.BatchSerializer, 409: ERROR})
    def post(self, request: Request, pk: str) -> Response:
        batch = access.get_batch(request.user, pk)
        try:
            batch = lifecycle.cancel_batch(batch, user=request.user)
        except lifecycle.BatchFinished as exc:
            return error_response("finished", str(exc), status.HTTP_409_CONFLICT)
        return Response(api.BatchSerializer(batch, context={"request": request}).data)


@extend_schema(
    parameters=[
        OpenApiParameter("status", str, enum=list(results.FILE_STATUSES)),
        OpenApiParameter("label", str, description="Predicted class"),
        OpenApiParameter("quality", str),
        OpenApiParameter(
            "review",
            str,
            enum=list(reviews.REVIEW_FILTERS),
            description="needs_review: abnormal or uncertain and not reviewed, or unusable; "
            "disagrees: the model's class differs from the ground truth; overridden; reviewed",
        ),
    ],
    responses={200: api.FileRowSerializer, 400: ERROR},
)
class BatchRecordings(generics.ListAPIView):
    serializer_class = api.FileRowSerializer

    def get_queryset(self) -> Any:
        batch = access.get_batch(self.request.user, self.kwargs["pk"])
        params = self.request.query_params
        # A misspelt status would otherwise answer an empty list, as if no file had it.
        if "status" in params and params["status"] not in results.FILE_STATUSES:
            choices = ", ".join(results.FILE_STATUSES)
            raise serializers.ValidationError({"status": [f"Must be one of {choices}."]})
        if "review" in params and params["review"] not in reviews.REVIEW_FILTERS:
            choices = ", ".join(reviews.REVIEW_FILTERS)
            raise serializers.ValidationError({"review": [f"Must be one of {choices}."]})
        rows = results.filter_rows(
            results.batch_recordings(batch),
            status=params.get("status", ""),
            label=params.get("label", ""),
            quality=params.get("quality", ""),
            patient=params.get("patient", ""),
        )
        classes = list(batch.model_version.classes)
        positive = verdicts.model_rule(batch.model_version).positive
        return reviews.filter_reviews(rows, params.get("review", ""), classes=classes, positive=positive)


class BatchReports(generics.ListAPIView):
    serializer_class = api.ReportSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        batch = access.get_batch(self.request.user, self.kwargs["pk"])
        return batch.reports.filter(model_version=batch.model_version_id).select_related("model_version")


class BatchReport(APIView):
    @extend_schema(
        responses={302: None, 200: LINK, 404: ERROR}, summary="Download a report (csv, json, html, pdf)"
    )
    def get(self, request: Request, pk: str, fmt: str) -> Any:
        batch = access.get_batch(request.user, pk)
        report = get_object_or_404(Report, batch=batch, model_version=batch.model_version_id, format=fmt)
        filename = f"lubdub-{batch.pk}.{fmt}"
        return _link_response(request, report.storage_key, filename=filename, content_type=CONTENT_TYPES[fmt])


class RecordingDetail(generics.RetrieveAPIView):
    serializer_class = api.RecordingSerializer

    def get_object(self) -> Recording:
        return access.get_recording(self.request.user, self.kwargs["pk"])


class RecordingAudio(APIView):
    @extend_schema(responses={302: None, 200: LINK, 404: ERROR}, summary="Download a recording's audio")
    def get(self, request: Request, pk: int) -> Any:
        recording = access.get_recording(request.user, pk)
        if not recording.storage_key:
            raise Http404("This file was rejected; no audio was stored.")
        name = recording.path.rsplit("/", 1)[-1] or "recording"
        return _link_response(
            request,
            recording.storage_key,
            filename=name,
            content_type="application/octet-stream",
            **downloads.audio_span(recording),
        )


class ModelVersionList(generics.ListAPIView):
    serializer_class = api.ModelVersionSerializer
    pagination_class = None
    queryset = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE)


class SignedFile(APIView):
    """The filesystem backend's short-lived link: the signed token is the credential."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: ERROR})
    def get(self, request: Request, token: str) -> Any:
        try:
            found = downloads.resolve_token(token)
            handle = downloads.open_object(found)
        except (signing.BadSignature, FileNotFoundError) as exc:
            raise Http404("This link is invalid or has expired.") from exc
        return FileResponse(
            handle, as_attachment=True, filename=found.filename, content_type=found.content_type
        )
