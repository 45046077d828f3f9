"""REST API v1 for resumable uploads (jobs.services.resumable).

    POST   /api/v1/uploads/                      open one: filename, size, sha256, batch options
    GET    /api/v1/uploads/<id>/                 the parts received, and links for the others
    PUT    /api/v1/uploads/<id>/parts/<n>/       one part's bytes (filesystem storage only)
    POST   /api/v1/uploads/<id>/complete/        check size and SHA-256, create the batch
    DELETE /api/v1/uploads/<id>/                 give it up

An upload is its creator's own: anyone else's id answers 404.
"""

import io
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api import serializers as api
from jobs.api.errors import ERROR, error_response, invalid_response, refused
from jobs.api.strict import StrictJsonSerializer
from jobs.models import Batch, ResumableUpload
from jobs.services import access, resumable, uploads
from jobs.services.refusals import Refused


class OpenUploadSerializer(StrictJsonSerializer):
    filename = serializers.CharField(max_length=255, help_text="The file's name; `.zip` for an archive.")
    size = serializers.IntegerField(min_value=1, help_text="The file's size in bytes.")
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$", help_text="The SHA-256 of the whole file, 64 hex digits."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    model = serializers.CharField(
        required=False, allow_blank=True, help_text="Model version; default if empty."
    )
    priority = serializers.ChoiceField(choices=Batch.Priority.choices, required=False)
    organisation = serializers.SlugField(required=False, help_text="Needed when you belong to several.")
    site = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="Site id or name; its default if empty."
    )
    webhook_url = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Posted a signed summary when the batch finishes; the organisation's default if empty.",
    )


class PartSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    size = serializers.IntegerField()
    etag = serializers.CharField(help_text="MD5 of the part's bytes, hex (blank once the parts are joined)")


UPLOAD = inline_serializer(
    "ResumableUpload",
    {
        "id": serializers.UUIDField(),
        "status": serializers.ChoiceField(choices=ResumableUpload.Status.choices),
        "filename": serializers.CharField(),
        "size": serializers.IntegerField(),
        "sha256": serializers.CharField(),
        "part_size": serializers.IntegerField(help_text="bytes of every part but the last"),
        "part_count": serializers.IntegerField(),
        "transport": serializers.ChoiceField(
            choices=["storage", "app"],
            help_text="storage: PUT each part to its presigned link, without credentials; "
            "app: PUT it to this server's link, with them",
        ),
        "parts": PartSerializer(many=True),
        "missing": serializers.ListField(child=serializers.IntegerField(), help_text="part numbers to send"),
        "part_urls": serializers.DictField(
            child=serializers.URLField(),
            help_text="where to PUT each part, by number, while the upload is open: "
            "the missing ones, and any whose etag is not the MD5 of your copy",
        ),
        "error_code": serializers.CharField(help_text="why completing it was last refused; blank if never"),
        "batch": serializers.UUIDField(allow_null=True, help_text="the batch it made, once completed"),
        "created_at": serializers.DateTimeField(),
        "expires_at": serializers.DateTimeField(help_text="abandoned then unless a request comes first"),
        "urls": serializers.DictField(child=serializers.URLField()),
    },
)
IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="chosen by the client: a retry with the same key returns the upload the first opened",
)


def _state_body(request: Request, state: resumable.UploadState) -> dict[str, Any]:
    upload = state.upload
    to_storage = resumable.sends_to_storage(upload)
    # Every part's link, not only the missing ones': after a checksum mismatch the
    # client sends again the parts whose etag is not its copy's MD5.
    numbers = resumable.sendable(state)
    if to_storage:
        links = resumable.part_links(upload, numbers)
    else:
        links = {
            n: request.build_absolute_uri(reverse("api:upload-part", args=[upload.pk, n])) for n in numbers
        }
    completed = upload.status == ResumableUpload.Status.COMPLETED
    urls = {
        "self": reverse("api:upload-detail", args=[upload.pk]),
        "complete": reverse("api:upload-complete", args=[upload.pk]),
    }
    if completed:
        urls["batch"] = reverse("api:batch-detail", args=[upload.batch_id])
    return {
        "id": str(upload.pk),
        "status": upload.status,
        "filename": upload.filename,
        "size": upload.size,
        "sha256": upload.sha256,
        "part_size": upload.part_size,
        "part_count": upload.part_count,
        "transport": "storage" if to_storage else "app",
        "parts": [{"number": p.number, "size": p.size, "etag": p.etag} for p in state.parts],
        "missing": state.missing,
        "part_urls": {str(n): url for n, url in links.items()},
        "error_code": upload.error_code,
        "batch": str(upload.batch_id) if completed else None,
        "created_at": upload.created_at.isoformat(),
        "expires_at": upload.expires_at.isoformat(),
        "urls": {name: request.build_absolute_uri(path) for name, path in urls.items()},
    }


class UploadOpen(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=OpenUploadSerializer,
        parameters=[IDEMPOTENCY],
        responses={200: UPLOAD, 201: UPLOAD, 400: ERROR, 404: ERROR, 413: ERROR},
        summary="Open a resumable upload of one recording or a zip archive",
    )
    def post(self, request: Request) -> Response:
        form = OpenUploadSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        values = form.validated_data
        try:
            key = uploads.idempotency_key(request.headers.get("Idempotency-Key"))
            organisation = access.upload_organisation(request.user, values.get("organisation"))
            upload, created = resumable.open_upload(
                user=request.user,
                organisation=organisation,
                filename=values["filename"],
                size=values["size"],
                sha256=values["sha256"],
                options={name: values.get(name, "") for name in resumable.OPTION_NAMES},
                idempotency_key=key,
            )
        except Refused as exc:
            return refused(exc)
        body = _state_body(request, resumable.describe(upload))
        answer = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(body, status=answer, headers={"Location": body["urls"]["self"]})


class UploadDetail(APIView):
    @extend_schema(
        responses={200: UPLOAD, 409: ERROR, 410: ERROR}, summary="A resumable upload and the parts received"
    )
    def get(self, request: Request, pk: str) -> Response:
        upload = resumable.get_upload(request.user, pk)
        try:
            return Response(_state_body(request, resumable.describe(upload)))
        except uploads.UploadRejected as exc:
            return refused(exc)

    @extend_schema(
        responses={204: None, 409: ERROR}, summary="Give a resumable upload up; its parts are deleted"
    )
    def delete(self, request: Request, pk: str) -> Response:
        upload = resumable.get_upload(request.user, pk)
        try:
            resumable.abort(upload)
        except uploads.UploadRejected as exc:
            return refused(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadPart(APIView):
    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: PartSerializer, 400: ERROR, 409: ERROR, 410: ERROR, 411: ERROR},
        summary="Send one part of a resumable upload (filesystem storage; on S3 use part_urls)",
    )
    def put(self, request: Request, pk: str, number: int) -> Response:
        upload = resumable.get_upload(request.user, pk)
        declared = request.META.get("CONTENT_LENGTH") or ""
        if request.META.get("HTTP_TRANSFER_ENCODING") or not declared.isdigit():
            return error_response(
                "length_required",
                "Send the part with a Content-Length header.",
                status.HTTP_411_LENGTH_REQUIRED,
            )
        # The raw body, read as it arrives: DRF's parsers never see it.
        body = request.stream or io.BytesIO()
        try:
            part = resumable.receive_part(upload, number, body, int(declared))
        except uploads.UploadRejected as exc:
            return refused(exc)
        return Response({"number": part.number, "size": part.size, "etag": part.etag})


class UploadComplete(APIView):
    @extend_schema(
        request=None,
        responses={
            200: api.BatchSerializer,
            201: api.BatchSerializer,
            400: ERROR,
            409: ERROR,
            410: ERROR,
            415: ERROR,
            422: ERROR,
        },
        summary="Check a resumable upload's size and SHA-256 and create its batch",
    )
    def post(self, request: Request, pk: str) -> Response:
        upload = resumable.get_upload(request.user, pk)
        try:
            batch, created = resumable.complete(upload)
        except uploads.UploadRejected as exc:
            return refused(exc)
        data = api.BatchSerializer(batch, context={"request": request}).data
        answer = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(data, status=answer, headers={"Location": data["urls"]["self"]})
