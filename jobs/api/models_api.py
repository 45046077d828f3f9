"""REST API v1 for model versions: list, register, default, retire, diff and drift.

Registering is for researchers and staff; the default and retirement apply to
every organisation, so they are for staff only. A bundle
uploaded here is checked at once (manifest, checksum, feature compatibility)
and answered with 202: it stays `checking` until a worker's smoke prediction
passes, because the web process never loads a model.
"""

from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api.errors import ERROR, error_response, invalid_response
from jobs.api.serializers import ModelVersionSerializer
from jobs.models import ModelVersion
from jobs.services import access, comparison, drift, registry


def _refused(exc: registry.RegistrationRefused) -> Response:
    return error_response(exc.code, exc.message, exc.status)


def _forbidden() -> Response:
    return error_response("forbidden", "Only researchers and staff can change the model registry.", 403)


def _staff_only() -> Response:
    return error_response("staff_only", registry.GOVERNANCE_REFUSED, 403)


class ModelVersionDetailSerializer(ModelVersionSerializer):
    registered_by = serializers.CharField(
        source="registered_by.username", default=None, read_only=True, allow_null=True
    )

    class Meta(ModelVersionSerializer.Meta):
        fields = [
            *ModelVersionSerializer.Meta.fields,
            "feature_fingerprint", "bundle_sha256", "manifest", "model_card", "smoke_test",
            "registered_by", "created_at",
        ]  # fmt: skip


class RegisterSerializer(serializers.Serializer):
    bundle = serializers.FileField(help_text="A packed bundle (zip of a bundle directory).")
    default = serializers.BooleanField(required=False, default=False)


def _version(pk: int) -> ModelVersion:
    try:
        return ModelVersion.objects.select_related("registered_by").get(pk=pk)
    except ModelVersion.DoesNotExist as exc:
        raise Http404("No such model version") from exc


FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() not in FLAGS:
        raise serializers.ValidationError({name: [f"Must be true or false, not {raw!r}."]})
    return FLAGS[raw.lower()]


@extend_schema_view(
    get=extend_schema(
        parameters=[OpenApiParameter("all", bool, description="include checking, rejected, retired")],
        responses={200: ModelVersionDetailSerializer(many=True), 400: ERROR},
    )
)
class ModelVersionListCreate(generics.ListAPIView):
    serializer_class = ModelVersionDetailSerializer
    pagination_class = None
    parser_classes = [MultiPartParser]

    def get_queryset(self) -> Any:
        return registry.listed_models(include_all=_flag(self.request, "all"))

    @extend_schema(
        request={"multipart/form-data": RegisterSerializer},
        responses={202: ModelVersionDetailSerializer, 400: ERROR, 403: ERROR, 409: ERROR},
        summary="Register a model bundle (researchers and staff; `default` staff only)",
    )
    def post(self, request: Request) -> Response:
        if not registry.can_manage_models(request.user):
            return _forbidden()
        form = RegisterSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        if form.validated_data["default"] and not registry.can_govern_models(request.user):
            return _staff_only()
        try:
            version = registry.register_upload(
                form.validated_data["bundle"].file,
                user=request.user,
                make_default=form.validated_data["default"],
            )
        except registry.RegistrationRefused as exc:
            return _refused(exc)
        return Response(ModelVersionDetailSerializer(version).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionDetail(generics.RetrieveAPIView):
    serializer_class = ModelVersionDetailSerializer

    def get_object(self) -> ModelVersion:
        return _version(self.kwargs["pk"])


class ModelVersionDefault(APIView):
    @extend_schema(request=None, responses={200: ModelVersionDetailSerializer, 403: ERROR, 409: ERROR})
    def post(self, request: Request, pk: int) -> Response:
        if not registry.can_govern_models(request.user):
            return _staff_only()
        try:
            version = registry.set_default(_version(pk))
        except registry.RegistrationRefused as exc:
            return _refused(exc)
        return Response(ModelVersionDetailSerializer(version).data)


class ModelVersionRetire(APIView):
    @extend_schema(request=None, responses={200: ModelVersionDetailSerializer, 403: ERROR, 409: ERROR})
    def post(self, request: Request, pk: int) -> Response:
        if not registry.can_govern_models(request.user):
            return _staff_only()
        try:
            version = registry.retire(_version(pk))
        except registry.RegistrationRefused as exc:
            return _refused(exc)
        return Response(ModelVersionDetailSerializer(version).data)


THRESHOLD = {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMinimum": True, "exclusiveMaximum": True}
# An empty reference names no version: the schema says so, so that clients do not send one.
VERSION_REFERENCE = {"type": "string", "minLength": 1}


def _any_version(reference: str) -> ModelVersion:
    statuses = (ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED)
    try:
        return registry.resolve_model(reference, statuses=statuses)
    except registry.UnknownModel as exc:
        raise Http404(str(exc)) from exc


@extend_schema(
    parameters=[
        OpenApiParameter("a", VERSION_REFERENCE, required=True, description="version: id, slug or version"),
        OpenApiParameter("b", VERSION_REFERENCE, required=True),
        OpenApiParameter("batch", OpenApiTypes.UUID, description="only recordings of this batch"),
    ],
    responses={200: OpenApiTypes.OBJECT, 400: ERROR, 404: ERROR},
    summary="Diff two versions over the recordings both have read",
)
class ModelDiff(APIView):
    def get(self, request: Request) -> Response:
        params = request.query_params
        if not params.get("a") or not params.get("b"):
            return error_response("invalid", "Name two versions with 'a' and 'b'.", 400)
        scope = comparison.visible_scope(request.user, params.get("batch"))
        diff = comparison.compare_versions(_any_version(params["a"]), _any_version(params["b"]), scope)
        return Response(diff.to_dict())


@extend_schema(
    parameters=[OpenApiParameter("threshold", THRESHOLD, description=f"default {drift.CLASS_THRESHOLD}")],
    responses={200: OpenApiTypes.OBJECT, 400: ERROR},
    summary="Weekly distributions of a version's readings against its baseline",
)
class ModelDrift(APIView):
    def get(self, request: Request, pk: int) -> Response:
        try:
            threshold = float(request.query_params.get("threshold", drift.CLASS_THRESHOLD))
        except ValueError:
            return error_response("invalid", "'threshold' must be a number between 0 and 1.", 400)
        if not 0 < threshold < 1:
            return error_response("invalid", "'threshold' must be a number between 0 and 1.", 400)
        found = drift.version_drift(
            _version(pk), access.visible_recordings(request.user), threshold=threshold
        )
        return Response(found.to_dict())
