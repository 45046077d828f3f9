"""REST API v1 for webhooks: a batch's delivery log and an organisation's default webhook.

Both are for the organisation's administrators (and staff): a batch or an
organisation outside the caller's answers 404, a member who is not an
administrator 403.
"""

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api import serializers as api
from jobs.api.errors import ERROR, error_response, invalid_response, refused
from jobs.models import Organisation
from jobs.services import access, webhooks

NOT_ADMIN = "Only the organisation's administrators see its webhook deliveries and secret."


class BatchDeliveries(APIView):
    @extend_schema(
        responses={200: api.WebhookDeliverySerializer(many=True), 403: ERROR, 404: ERROR},
        summary="Every attempt at posting the batch's summary to its webhook (administrators)",
    )
    def get(self, request: Request, pk: str) -> Response:
        batch = access.get_batch(request.user, pk)
        if not webhooks.can_manage(request.user, batch.organisation):
            return error_response("forbidden", NOT_ADMIN, status.HTTP_403_FORBIDDEN)
        rows = webhooks.deliveries(batch)
        return Response(api.WebhookDeliverySerializer(rows, many=True).data)


class OrganisationWebhook(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        responses={200: api.OrganisationWebhookSerializer, 403: ERROR, 404: ERROR},
        summary="The organisation's default webhook and signing secret (administrators)",
    )
    def get(self, request: Request, slug: str) -> Response:
        organisation = self._organisation(request, slug)
        if not webhooks.can_manage(request.user, organisation):
            return error_response("forbidden", NOT_ADMIN, status.HTTP_403_FORBIDDEN)
        return Response(self._body(organisation))

    @extend_schema(
        request=api.OrganisationWebhookSerializer,
        responses={200: api.OrganisationWebhookSerializer, 400: ERROR, 403: ERROR, 404: ERROR},
        summary="Set the default webhook of new batches, or rotate the secret (administrators)",
    )
    def put(self, request: Request, slug: str) -> Response:
        organisation = self._organisation(request, slug)
        if not webhooks.can_manage(request.user, organisation):
            return error_response("forbidden", NOT_ADMIN, status.HTTP_403_FORBIDDEN)
        form = api.OrganisationWebhookSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        try:
            webhooks.set_default(organisation, form.validated_data["url"])
        except webhooks.WebhookRefused as exc:
            return refused(exc)
        if form.validated_data.get("rotate_secret"):
            webhooks.rotate_secret(organisation)
        return Response(self._body(organisation))

    @staticmethod
    def _organisation(request: Request, slug: str) -> Organisation:
        found = access.organisations_for(request.user).filter(slug=slug).first()
        if found is None:
            raise Http404("No such organisation")
        return found

    @staticmethod
    def _body(organisation: Organisation) -> dict[str, Any]:
        return {
            "url": organisation.webhook_url,
            "secret": webhooks.secret_for(organisation),
            "signature_header": webhooks.SIGNATURE_HEADER,
        }
