"""REST API v1 for re-analyses: request one, list them.

A request makes one batch of kind `reanalysis` per organisation it touches;
each is then followed like any batch under /api/v1/batches/<id>/.
"""

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api.errors import ERROR, error_response, invalid_response, refused
from jobs.api.serializers import BatchSerializer
from jobs.api.strict import StrictJsonSerializer
from jobs.models import Batch, ModelVersion
from jobs.services import access, model_lookup, reanalysis


class ReanalysisSerializer(BatchSerializer):
    # A plain string in the schema: the batch's status enum used by two components loses its name.
    status = serializers.CharField(read_only=True, help_text="a batch status; `scheduled` until it starts")

    class Meta(BatchSerializer.Meta):
        fields = [*BatchSerializer.Meta.fields, "selection", "scheduled_for"]


class ReanalysisRequestSerializer(StrictJsonSerializer):
    batches = serializers.ListField(child=serializers.UUIDField(), required=False, default=list)
    since = serializers.DateField(required=False, allow_null=True, help_text="uploaded on or after")
    until = serializers.DateField(required=False, allow_null=True, help_text="uploaded on or before")
    analysed_by = serializers.CharField(required=False, allow_blank=True, help_text="read by this version")
    all = serializers.BooleanField(required=False, default=False, help_text="every recording in scope")
    model = serializers.CharField(
        required=False, allow_blank=True, help_text="version; if empty, each organisation's default"
    )
    when = serializers.ChoiceField(choices=reanalysis.WHEN_CHOICES, required=False, default=reanalysis.NOW)
    run_at = serializers.DateTimeField(required=False, allow_null=True)
    organisation = serializers.SlugField(required=False, allow_blank=True)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


def _resolve(user: User, reference: str, *, statuses: tuple[str, ...]) -> ModelVersion:
    """A version the user may see; another organisation's unpublished one is unknown."""
    return model_lookup.resolve_model(reference, statuses=statuses, among=access.visible_models(user))


class ReanalysisListCreate(generics.ListAPIView):
    serializer_class = ReanalysisSerializer
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def get_queryset(self) -> Any:
        batches = access.visible_batches(self.request.user).filter(kind=Batch.Kind.REANALYSIS)
        return batches.select_related("model_version", "organisation")

    # Documented as JSON only: form encodings, still parsed, cannot send null and drop
    # empty fields, so the schema would promise what they cannot carry.
    @extend_schema(
        request={"application/json": ReanalysisRequestSerializer},
        responses={
            201: inline_serializer("Reanalyses", {"batches": ReanalysisSerializer(many=True)}),
            400: ERROR,
            403: ERROR,
            404: ERROR,
        },
        summary="Re-analyse stored recordings with a model version (researchers and staff)",
    )
    def post(self, request: Request) -> Response:
        form = ReanalysisRequestSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        values = form.validated_data
        try:
            batches = reanalysis.request_reanalysis(
                request.user,
                selection=_selection(request.user, values),
                model_version=_model(request.user, values),
                when=values["when"],
                run_at=values.get("run_at"),
                organisation=values.get("organisation") or None,
                name=values.get("name", ""),
            )
        except model_lookup.UnknownModel as exc:
            return error_response("unknown_model", str(exc), status.HTTP_400_BAD_REQUEST)
        except reanalysis.ReanalysisRefused as exc:
            return refused(exc)
        data = ReanalysisSerializer(batches, many=True, context={"request": request}).data
        return Response({"batches": data}, status=status.HTTP_201_CREATED)


def _selection(user: User, values: dict[str, Any]) -> reanalysis.Selection:
    analysed_by = values.get("analysed_by")
    statuses = (ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED)
    return reanalysis.Selection(
        batches=tuple(values.get("batches") or ()),
        since=values.get("since"),
        until=values.get("until"),
        analysed_by=_resolve(user, analysed_by, statuses=statuses).pk if analysed_by else None,
        everything=values.get("all", False),
    )


def _model(user: User, values: dict[str, Any]) -> ModelVersion | None:
    """The version named, or None: each organisation's default (and for `new_default`, its next one)."""
    reference = values.get("model")
    if values["when"] == reanalysis.NEW_DEFAULT or not reference:
        return None
    return _resolve(user, reference, statuses=(ModelVersion.Status.ACTIVE,))
