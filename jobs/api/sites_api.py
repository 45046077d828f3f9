"""REST API v1 for sites: list and create them, fit and list their calibrations.

Sites of organisations the caller is not a member of answer 404, like batches.
"""

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api import serializers as api
from jobs.api.errors import ERROR, error_response, invalid_response, refused
from jobs.models import SiteCalibration
from jobs.services import access, sites
from jobs.services.refusals import Refused

# JSON_ONLY: request bodies are documented as JSON. Form encodings are still parsed,
# but cannot send null and drop empty fields, so the schema would promise what they cannot carry.


class SiteListCreate(generics.ListAPIView):
    serializer_class = api.SiteSerializer
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def get_queryset(self) -> Any:
        return access.visible_sites(self.request.user).select_related("organisation").order_by("name", "id")

    @extend_schema(
        request={"application/json": api.SiteCreateSerializer},  # see JSON_ONLY
        responses={201: api.SiteSerializer, 400: ERROR, 403: ERROR, 404: ERROR},
        summary="Create a site (researchers and administrators)",
    )
    def post(self, request: Request) -> Response:
        form = api.SiteCreateSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        values = form.validated_data
        try:
            organisation = access.upload_organisation(request.user, values.get("organisation"))
            site = sites.create_site(
                request.user,
                organisation,
                name=values["name"],
                stethoscope=values.get("stethoscope", ""),
                notes=values.get("notes", ""),
                is_default=values.get("is_default", False),
            )
        except Refused as exc:
            return refused(exc)
        return Response(api.SiteSerializer(site, context={"request": request}).data, status=201)


class SiteDetail(generics.RetrieveAPIView):
    serializer_class = api.SiteSerializer

    def get_object(self) -> Any:
        return access.get_site(self.request.user, self.kwargs["pk"])


class SiteCalibrations(generics.ListAPIView):
    serializer_class = api.SiteCalibrationSerializer
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def get_queryset(self) -> Any:
        site = access.get_site(self.request.user, self.kwargs["pk"])
        return SiteCalibration.objects.filter(site=site).select_related("model_version", "created_by")

    @extend_schema(
        request={"application/json": api.CalibrationRequestSerializer},  # see JSON_ONLY
        responses={201: api.SiteCalibrationSerializer, 400: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        summary="Fit the site's calibration on a finished, labelled batch; it becomes active",
    )
    def post(self, request: Request, pk: int) -> Response:
        site = access.get_site(request.user, pk)
        form = api.CalibrationRequestSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        values = form.validated_data
        try:
            batch = access.get_batch(request.user, values["batch"])
            profile = sites.fit_site_calibration(
                batch, site, target=values["target"], min_sensitivity=values.get("value"), user=request.user
            )
        except Http404:
            return error_response(
                "unknown_batch", f"No such batch: {values['batch']}", status.HTTP_404_NOT_FOUND
            )
        except sites.SiteRefused as exc:
            return refused(exc)
        return Response(api.SiteCalibrationSerializer(profile).data, status=status.HTTP_201_CREATED)
