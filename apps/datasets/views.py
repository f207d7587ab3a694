from __future__ import annotations

from django.conf import settings
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Empty
from rest_framework.response import Response

from apps.accounts.middleware import drain
from apps.accounts.parsers import BoundedJSONParser
from apps.accounts.schema import error, errors
from apps.datasets.downloads import content_response
from apps.datasets.filters import DatasetFilter
from apps.datasets.from_output import dataset_from_output, from_output_fields
from apps.datasets.selectors import dataset_for, dataset_list, upload_precheck, upload_team
from apps.datasets.serializers import (
    DatasetSerializer,
    DatasetUploadSerializer,
    FromOutputRequestSerializer,
)
from apps.datasets.services import dataset_create, dataset_delete
from apps.datasets.uploads import DatasetTooLarge, DatasetUploadParser
from apps.teams.access import Caller


def _query(name: str, kind, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description)


DATASET_FILTERS = [
    _query("name", OpenApiTypes.STR,
           "Only datasets of exactly this name (an exact match, case included)."),
    _query("page", {"type": "integer", "minimum": 1}, "The page number, from 1."),
    _query("page_size", {"type": "integer", "minimum": 1, "maximum": 500},
           "Datasets per page (default 50)."),
]
RANGE_HEADERS = [
    OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER, description=(
        "One byte range, `bytes=FIRST-LAST` (inclusive), `bytes=FIRST-` or `bytes=-N` (the "
        "last N bytes): a 206 with those bytes. Several ranges, or one this server cannot "
        "read, get the whole file.")),
    OpenApiParameter("If-Range", OpenApiTypes.STR, OpenApiParameter.HEADER, description=(
        "The ETag of the copy being resumed: when it is not this dataset's, the whole file "
        "comes back (200) instead of the range.")),
]
BYTES = {"type": "string", "format": "binary"}
TOO_LARGE = error("The file is over ORCH_DATASET_MAX_BYTES (named with its value, under "
                  "`file`), or the rest of the form over MAX_REQUEST_BODY_BYTES.")


@extend_schema_view(
    list=extend_schema(
        summary="The datasets of the caller's teams, newest first, a page at a time",
        description="`name` filters by exact name. `count` is exact up to 1,000 and an "
                    "estimate above (`count_exact`).",
        parameters=DATASET_FILTERS,
        responses={200: DatasetSerializer(many=True), **errors(400, 404)},
    ),
    retrieve=extend_schema(summary="One dataset",
                           responses={200: DatasetSerializer, **errors(404)}),
    create=extend_schema(
        summary="Upload a file as a new dataset of a team, or keep a process's output as one",
        description="JSON `{\"from_output\": {\"process\": ID, \"path\": P}}` (optional "
                    "`name`, default the file's name, and `description`) makes a dataset of "
                    "the process's team from one of its outputs, copied in the store: no byte "
                    "goes through the client. Otherwise "
                    "multipart/form-data: `file`, and optionally `name` (default: the file's "
                    "name), `description` and `team` (a slug; needed when the caller uploads "
                    "for several teams). The file is streamed to the store, never held in "
                    "memory; one over ORCH_DATASET_MAX_BYTES is a 413 naming the limit. Needs "
                    "the role operator in the team. A body that ends before its "
                    "Content-Length keeps nothing.",
        request={"multipart/form-data": DatasetUploadSerializer,
                 "application/json": FromOutputRequestSerializer},
        responses={201: DatasetSerializer, **errors(400), 413: TOO_LARGE},
    ),
    destroy=extend_schema(
        summary="Delete a dataset: its bytes go",
        description="Needs the role operator in its team. A process that has not finished "
                    "and uses it makes this a 409 naming the process. The row is kept, marked "
                    "deleted, so the processes that used it still name it; the API answers "
                    "404 for it from then on.",
        responses={204: None, **errors(404), 409: error("A process that has not finished "
                                                          "uses the dataset (named).")},
    ),
    content=extend_schema(
        summary="A dataset's bytes, whole or one range",
        description="Streamed as an attachment named after the dataset, with Content-Length, "
                    "`Accept-Ranges: bytes` and the ETag (its SHA-256).",
        parameters=RANGE_HEADERS,
        responses={
            (200, "application/octet-stream"): OpenApiResponse(BYTES, description="The file."),
            (206, "application/octet-stream"): OpenApiResponse(
                BYTES, description="The range asked for; `Content-Range` says which."),
            **errors(404),
            416: error("The range starts past the end; `Content-Range: bytes */SIZE`."),
        },
    ),
)
class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Files uploaded once for a team, read by its members and clients."""

    serializer_class = DatasetSerializer
    filterset_class = DatasetFilter
    # A file (multipart), or JSON naming a process's output (``from_output``).
    parser_classes = (DatasetUploadParser, BoundedJSONParser)

    @staticmethod
    def request_body_limit(method: str, actions: dict) -> tuple[int, str, str] | None:
        """An upload's body may hold a file of DATASET_MAX_BYTES and the form around it
        (read by apps.accounts.middleware.BodySizeLimitMiddleware)."""
        if actions.get(method.lower()) != "create":
            return None
        cap, rest = settings.DATASET_MAX_BYTES, settings.MAX_REQUEST_BODY_BYTES
        return cap + rest, "file", (f"a dataset's file is at most {cap} bytes "
                                    f"(ORCH_DATASET_MAX_BYTES), the rest of the form {rest}.")

    def perform_authentication(self, request):
        """Who is asking, known before a byte of an upload is read. oauthlib looks for a token
        in a form body too (here one counts only in the header), and reading this form means
        receiving its whole file: an unknown token would have it all written first. So the
        body is hidden while the caller is authenticated (a browser session sends its CSRF
        token in the X-CSRFToken header then, not in the form), and read in ``create``."""
        request._data, request._files, request._full_data = QueryDict(), MultiValueDict(), {}
        try:
            request.user  # noqa: B018 - authenticates, as APIView.perform_authentication
        finally:
            request._data = request._files = request._full_data = Empty

    def get_queryset(self):
        return dataset_list(Caller.of(self.request))

    def filter_queryset(self, queryset):
        # The filters choose datasets for the list; a detail URL names its dataset already.
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def get_object(self, action: str = "read"):
        """The dataset of the URL for ``action``: 404 outside the caller's teams (or deleted),
        403 naming the role needed when the caller's role there is too low."""
        return dataset_for(Caller.of(self.request), self.kwargs["pk"], action)

    def create(self, request, *args, **kwargs):
        caller = Caller.of(request)
        if request.content_type.startswith("application/json"):
            return self._from_output(request, caller)
        try:
            upload_precheck(caller)  # a viewer everywhere is refused before its body is read
        except Exception:
            drain(request._request, int(request.META.get("CONTENT_LENGTH") or 0))
            raise
        try:
            incoming = DatasetUploadSerializer(data=request.data)  # the file arrives here
            incoming.is_valid(raise_exception=True)
            fields = incoming.validated_data
            team = upload_team(fields.get("team"), caller)
        except BaseException:  # refused after the file arrived: it is not kept
            for stored in request.FILES.values():
                stored.discard()
            raise
        dataset = dataset_create(
            stored=fields["file"], name=fields["name"], description=fields["description"],
            team=team, owner=request.user, application=caller.application, actor=caller)
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    def _from_output(self, request, caller: Caller) -> Response:
        """A process's output as a new dataset of its team: JSON, as small as any body."""
        size = int(request.META.get("CONTENT_LENGTH") or 0)
        if size > settings.MAX_REQUEST_BODY_BYTES:
            drain(request._request, size)
            raise DatasetTooLarge({"body": [
                f"The request body is {size} bytes; a JSON body is at most "
                f"{settings.MAX_REQUEST_BODY_BYTES} bytes (MAX_REQUEST_BODY_BYTES)."]})
        fields = from_output_fields(request.data)
        dataset = dataset_from_output(caller, **fields, owner=request.user,
                                      application=caller.application)
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        dataset_delete(self.get_object("delete"), actor=Caller.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"])
    def content(self, request, pk=None):
        return content_response(self.get_object(), request.headers.get("Range"),
                                request.headers.get("If-Range"))
