"""REST API v1 for clinicians' reviews of a recording: its history, and a new review.

Recordings of organisations the caller is not a member of answer 404, like
everything else; staff see every recording but review only where they are members.
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
from jobs.services import access, reviews


class RecordingReviews(generics.ListAPIView):
    serializer_class = api.ReviewSerializer
    pagination_class = None  # a recording's reviews are a handful, newest first
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def get_queryset(self) -> Any:
        return reviews.history(access.get_recording(self.request.user, self.kwargs["pk"]))

    @extend_schema(
        request={"application/json": api.ReviewRequestSerializer},  # as sites_api's JSON_ONLY
        responses={201: api.ReviewSerializer, 400: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        summary="Review a recording: confirm the model's result or give a label, with a note",
    )
    def post(self, request: Request, pk: int) -> Response:
        recording = access.get_recording(request.user, pk)
        form = api.ReviewRequestSerializer(data=request.data)
        if not form.is_valid():
            return invalid_response(form.errors)
        values = form.validated_data
        batch = recording.batch
        if values.get("batch"):
            try:
                batch = access.get_batch(request.user, values["batch"])
            except Http404:
                return error_response(
                    "unknown_batch", f"No such batch: {values['batch']}", status.HTTP_404_NOT_FOUND
                )
        try:
            review = reviews.review_recording(
                request.user,
                recording,
                batch=batch,
                label=values.get("label", ""),
                confirm=values.get("confirm", False),
                note=values.get("note", ""),
            )
        except reviews.ReviewRefused as exc:
            return refused(exc)
        return Response(api.ReviewSerializer(review).data, status=status.HTTP_201_CREATED)
