"""REST API v1 for model versions: list, register, defaults, publish, retire, diff and drift.

Registering is for researchers and staff. A researcher's version belongs to
their organisation and is invisible (404) to others until staff publish it.
The global default, publishing and retirement apply to every organisation, so
they are for staff only; an organisation's own default is chosen by its
researchers and administrators (and staff). A bundle uploaded here is checked
at once (manifest, checksum, feature compatibility) and answered with 202: it
stays `checking` until a worker's smoke prediction passes, because the web
process never loads a model.
"""

import re
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api.errors import ERROR, error_response, invalid_response, refused
from jobs.api.serializers import ModelVersionSerializer
from jobs.api.strict import StrictJsonSerializer
from jobs.models import ModelVersion, Organisation
from jobs.services import access, comparison, drift, model_lookup, registry
from jobs.services.refusals import Refused


def _refused(exc: registry.RegistrationRefused) -> Response:
    return refused(exc)


def _forbidden() -> Response:
    return error_response("forbidden", "Only researchers and staff can change the model registry.", 403)


def _staff_only() -> Response:
    return error_response("staff_only", registry.GOVERNANCE_REFUSED, 403)


class ModelVersionDetailSerializer(ModelVersionSerializer):
    registered_by = serializers.CharField(
        source="registered_by.username", default=None, read_only=True, allow_null=True
    )
    default_for = serializers.SerializerMethodField(
        help_text="slugs of the caller's organisations (all, for staff) using this version as their default"
    )

    class Meta(ModelVersionSerializer.Meta):
        fields = [
            *ModelVersionSerializer.Meta.fields,
            "default_for", "feature_fingerprint", "bundle_sha256", "manifest", "model_card", "smoke_test",
            "registered_by", "created_at",
        ]  # fmt: skip

    def get_default_for(self, version: ModelVersion) -> list[str]:
        # Computed once per response, not once per version listed.
        if "defaults" not in self.context:
            self.context["defaults"] = _defaults_by_version(self.context.get("request"))
        return list(self.context["defaults"].get(version.pk, []))


def _defaults_by_version(request: Request | None) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    if request is None:
        return found
    chosen = access.organisations_for(request.user).filter(default_model__isnull=False)
    for version_id, slug in chosen.values_list("default_model", "slug"):
        found.setdefault(version_id, []).append(slug)
    return found


class RegisterSerializer(serializers.Serializer):
    bundle = serializers.FileField(help_text="A packed bundle (zip of a bundle directory).")
    default = serializers.BooleanField(
        required=False, default=False, help_text="make it the global default once it passes (staff only)"
    )
    organisation = serializers.SlugField(
        required=False,
        allow_blank=True,
        help_text="the organisation the version belongs to (a researcher of several must name one)",
    )


class OrganisationChoiceSerializer(StrictJsonSerializer):
    organisation = serializers.SlugField(
        required=False,
        allow_blank=True,
        help_text="make it this organisation's default; empty or absent: the global default (staff only)",
    )


def _version(pk: int, user: User) -> ModelVersion:
    """A version the user may see; another organisation's unpublished one is not there."""
    try:
        return access.visible_models(user).select_related("registered_by", "organisation").get(pk=pk)
    except ModelVersion.DoesNotExist as exc:
        raise Http404("No such model version") from exc


def _chosen_organisation(user: User, slug: str) -> Organisation:
    """One of the user's organisations (any, for staff): others answer 404."""
    found = access.organisations_for(user).filter(slug=slug).first()
    if found is None:
        raise Http404(f"You are not a member of an organisation called {slug!r}")
    return found


def _not_chooser(organisation: Organisation) -> Response:
    message = (
        f"Only researchers and administrators of {organisation.name}, and staff, "
        "can choose its default model."
    )
    return error_response("forbidden", message, 403)


def _answer(request: Request, version: ModelVersion, http_status: int = 200) -> Response:
    version.refresh_from_db()
    data = ModelVersionDetailSerializer(version, context={"request": request}).data
    return Response(data, status=http_status)


SLUG = {"type": "string", "minLength": 1, "pattern": "^[-a-zA-Z0-9_]+$"}
SLUG_PATTERN = re.compile(r"[-a-zA-Z0-9_]+")
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
        return model_lookup.listed_models(self.request.user, include_all=_flag(self.request, "all"))

    @extend_schema(
        request={"multipart/form-data": RegisterSerializer},
        responses={202: ModelVersionDetailSerializer, 400: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        summary="Register a model bundle (researchers and staff; `default` staff only)",
        description=(
            "A researcher's version belongs to the organisation named with `organisation` (or their only "
            "one as researcher or administrator) and stays unpublished: other organisations see it once "
            "staff publish it. Staff's registrations are published at once."
        ),
    )
    def post(self, request: Request) -> Response:
        if not access.can_manage_models(request.user):
            return _forbidden()
        form = RegisterSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        values = form.validated_data
        if values["default"] and not access.can_govern_models(request.user):
            return _staff_only()
        try:
            owner = access.registering_organisation(request.user, values.get("organisation") or None)
            version = registry.register_upload(
                values["bundle"].file, user=request.user, make_default=values["default"], organisation=owner
            )
        except Refused as exc:
            return refused(exc)
        return _answer(request, version, status.HTTP_202_ACCEPTED)


class ModelVersionDetail(generics.RetrieveAPIView):
    serializer_class = ModelVersionDetailSerializer

    def get_object(self) -> ModelVersion:
        return _version(self.kwargs["pk"], self.request.user)


class ModelVersionDefault(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request={"application/json": OrganisationChoiceSerializer},
        responses={200: ModelVersionDetailSerializer, 400: ERROR, 403: ERROR, 409: ERROR},
        summary="Make a version the default of one organisation, or of every organisation (staff)",
        description=(
            'With `{"organisation": "<slug>"}`: that organisation\'s new uploads and default re-analyses '
            "use this version (its researchers and administrators, and staff; the version must be active "
            "and published or the organisation's own). Without: the global default, used by "
            "organisations without one of their own (staff only)."
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        form = OrganisationChoiceSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        slug = form.validated_data.get("organisation")
        if not slug:
            if not access.can_govern_models(request.user):
                return error_response("staff_only", registry.GLOBAL_DEFAULT_REFUSED, 403)
            return self._change(request, lambda: registry.set_default(_version(pk, request.user)))
        organisation = _chosen_organisation(request.user, slug)
        if not access.can_choose_models(request.user, organisation):
            return _not_chooser(organisation)
        version = _version(pk, request.user)
        return self._change(request, lambda: registry.set_organisation_default(version, organisation))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "organisation", SLUG, required=True, description="the organisation whose default to clear"
            )
        ],
        responses={200: ModelVersionDetailSerializer, 400: ERROR, 403: ERROR, 409: ERROR},
        summary="Stop using a version as an organisation's default (its researchers, administrators, staff)",
        description="Its new uploads then use the global default; 409 if this version is not its default.",
    )
    def delete(self, request: Request, pk: int) -> Response:
        slug = request.query_params.get("organisation", "")
        if not SLUG_PATTERN.fullmatch(slug):
            return error_response("invalid", "Name the organisation with '?organisation=<slug>'.", 400)
        organisation = _chosen_organisation(request.user, slug)
        if not access.can_choose_models(request.user, organisation):
            return _not_chooser(organisation)
        version = _version(pk, request.user)
        return self._change(request, lambda: registry.clear_organisation_default(version, organisation))

    def _change(self, request: Request, change: Callable[[], ModelVersion]) -> Response:
        try:
            version = change()
        except registry.RegistrationRefused as exc:
            return refused(exc)
        return _answer(request, version)


class ModelVersionPublish(APIView):
    @extend_schema(
        request=None,
        responses={200: ModelVersionDetailSerializer, 403: ERROR, 409: ERROR},
        summary="Publish a researcher's version to every organisation (staff only)",
    )
    def post(self, request: Request, pk: int) -> Response:
        if not access.can_govern_models(request.user):
            return error_response("staff_only", registry.PUBLISH_REFUSED, 403)
        try:
            version = registry.publish(_version(pk, request.user))
        except registry.RegistrationRefused as exc:
            return refused(exc)
        return _answer(request, version)


class ModelVersionRetire(APIView):
    @extend_schema(request=None, responses={200: ModelVersionDetailSerializer, 403: ERROR, 409: ERROR})
    def post(self, request: Request, pk: int) -> Response:
        if not access.can_govern_models(request.user):
            return _staff_only()
        try:
            version = registry.retire(_version(pk, request.user))
        except registry.RegistrationRefused as exc:
            return refused(exc)
        return _answer(request, version)


THRESHOLD = {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMinimum": True, "exclusiveMaximum": True}
# An empty reference names no version: the schema says so, so that clients do not send one.
VERSION_REFERENCE = {"type": "string", "minLength": 1}


def _any_version(reference: str, user: User) -> ModelVersion:
    statuses = (ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED)
    try:
        return model_lookup.resolve_model(reference, statuses=statuses, among=access.visible_models(user))
    except model_lookup.UnknownModel as exc:
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
        diff = comparison.compare_versions(
            _any_version(params["a"], request.user), _any_version(params["b"], request.user), scope
        )
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
            _version(pk, request.user), access.visible_recordings(request.user), threshold=threshold
        )
        return Response(found.to_dict())
