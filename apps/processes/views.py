from __future__ import annotations

from pathlib import PurePosixPath

from django.db import transaction
from django.http import Http404
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.schema import error, errors
from apps.datasets.downloads import object_response
from apps.datasets.models import ProcessOutput
from apps.datasets.views import BYTES, RANGE_HEADERS
from apps.processes.filters import ProcessFilter
from apps.processes.lifecycle import process_delete
from apps.processes.schema import IDEMPOTENCY_KEY, PROCESS_FILTERS, LogChunkSerializer
from apps.processes.selectors import (
    process_events,
    process_for,
    process_list,
    process_log_read,
)
from apps.processes.serializers import (
    ProcessCreateSerializer,
    ProcessDetailSerializer,
    ProcessEventSerializer,
    ProcessOutputSerializer,
    ProcessSerializer,
    ProcessStatusSerializer,
)
from apps.processes.services import process_create, process_rerun, process_stop
from apps.processes.waiting import WaitingFor
from apps.teams.access import Caller
from apps.teams.selectors import submit_team
from apps.webhooks.services import callback_register


class LogQuerySerializer(serializers.Serializer):
    offset = serializers.IntegerField(min_value=0, max_value=2**63 - 1, default=0,
                                      help_text="The byte of the output to read from.")

    def validate(self, attrs):
        # A query string may repeat a name; which byte to read from must not be a guess.
        getlist = getattr(self.initial_data, "getlist", None)
        given: list[str] = getlist("offset") if getlist is not None else []
        if len(given) > 1:
            raise serializers.ValidationError({"offset": ["Give one offset, not several."]})
        if given == [""]:
            raise serializers.ValidationError({"offset": ["A whole number of bytes, or leave "
                                                          "offset out."]})
        return attrs


@extend_schema_view(
    list=extend_schema(
        summary="The client's processes, newest first, a page at a time",
        description="`count` is exact up to 1,000 and an estimate above (`count_exact`).",
        parameters=PROCESS_FILTERS,
        responses={200: ProcessSerializer(many=True), **errors(400, 404)},
    ),
    retrieve=extend_schema(summary="One process, with its attempts and the datasets it names",
                           responses={200: ProcessDetailSerializer, **errors(404)}),
    create=extend_schema(
        summary="Start a run of a pipeline",
        description="JSON, or form-encoded with `used_config` as a JSON string. A replayed "
                    "Idempotency-Key answers the first process with `Idempotent-Replayed: true`.",
        request=ProcessCreateSerializer, parameters=[IDEMPOTENCY_KEY],
        examples=[OpenApiExample("hello", request_only=True,
                                 value={"pipeline": "hello", "used_config": {"name": "Ada"}})],
        responses={201: ProcessDetailSerializer, **errors(400, 413, 422)},
    ),
    status=extend_schema(summary="A process's state, and whether it has finished",
                         responses={200: ProcessStatusSerializer, **errors(404)}),
    stop=extend_schema(
        summary="Ask a process to stop (STOPPING, then STOPPED)",
        description="Idempotent: a finished process is left as it is. Needs the role "
                    "operator in the process's team.",
        request=None, responses={200: ProcessStatusSerializer, **errors(404)},
    ),
    rerun=extend_schema(
        summary="Run a process again: same pipeline version, config and secrets, same team",
        description="Needs the role operator in the process's team.",
        request=None, responses={201: ProcessDetailSerializer, **errors(400, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a finished process, with its events, log and outputs",
        description="Needs the role operator in the process's team. A process that has not "
                    "finished is a 409: stop it first.",
        responses={204: None, **errors(404),
                   409: error("The process has not finished: stop it, then delete it.")},
    ),
    events=extend_schema(summary="Every transition of a process, oldest first", filters=False,
                         responses={200: ProcessEventSerializer(many=True), **errors(404)}),
    outputs=extend_schema(
        summary="The files a process's job left in its output dir, stored",
        description="Recorded when the process ends; each is downloaded at "
                    "`GET /api/processes/<id>/outputs/<path>`.",
        filters=False, responses={200: ProcessOutputSerializer(many=True), **errors(404)}),
    logs=extend_schema(summary="A process's output from byte `offset` on",
                       parameters=[LogQuerySerializer],
                       responses={200: LogChunkSerializer, **errors(400, 404)}),
)
# Error reports never show a posted secret, nor any variable of create and what it calls.
@method_decorator(sensitive_post_parameters("secrets"), name="dispatch")
class ProcessViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of pipelines. POST creates one; ``stop`` asks it to stop."""

    serializer_class = ProcessSerializer
    filterset_class = ProcessFilter

    def get_queryset(self):
        return process_list(Caller.of(self.request))

    def get_serializer_class(self):
        return ProcessDetailSerializer if self.action == "retrieve" else ProcessSerializer

    def filter_queryset(self, queryset):
        # The filters choose processes for the list; a detail URL names its process already.
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def get_object(self, action: str = "read"):
        """The process of the URL for ``action``: 404 outside the caller's teams, 403 naming
        the role needed when the caller's role there is too low."""
        return process_for(Caller.of(self.request), self.kwargs["pk"], action)

    @method_decorator(sensitive_variables())
    def create(self, request, *args, **kwargs):
        incoming = ProcessCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        caller = Caller.of(request)
        team = submit_team(incoming.validated_data.get("team"), caller)
        callback_url = incoming.validated_data.get("callback_url")
        callback_secret = None
        if callback_url:
            with transaction.atomic():  # the process and its callback, or neither
                process, created = self._create(request, incoming, caller, team)
                if created:
                    callback_secret = callback_register(process, callback_url)
        else:
            process, created = self._create(request, incoming, caller, team)
        headers = {} if created else {"Idempotent-Replayed": "true"}
        context = {"request": request}
        if created:  # its pool is at hand: the answer needs no query for the pools' limits
            pool = process.pipeline_version.pool
            context["queued_limits"] = {pool.name: pool.queued_limit_s}
            # Just committed: the relay, woken by that commit, admits it next; no need to
            # read the pool's whole queue to say so.
            context["waiting_for"] = WaitingFor.known(
                {process.pk: f"admission at the next round of pool {pool.name}"})
        body = ProcessDetailSerializer(process, context=context).data
        if callback_secret:
            body["callback_secret"] = callback_secret  # shown this once
        return Response(body, status=status.HTTP_201_CREATED, headers=headers)

    @staticmethod
    def _create(request, incoming, caller, team):
        return process_create(
            pipeline=incoming.validated_data["pipeline"],
            used_config=incoming.validated_data["used_config"],
            secrets=incoming.validated_data["secrets"],
            version=incoming.validated_data.get("version"),
            owner=request.user,
            application=caller.application,
            team=team,
            idempotency_key=request.headers.get("Idempotency-Key") or None,
            actor=caller,
            priority=incoming.validated_data["priority"],
            resources=incoming.validated_data["resources"],
            image=incoming.validated_data["image"],
            env=incoming.validated_data["env"],
            sbatch=incoming.validated_data["sbatch"],
        )

    @action(detail=True, methods=["get"])
    def status(self, request, pk=None):
        return Response(ProcessStatusSerializer(self.get_object()).data)

    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        caller = Caller.of(request)
        process = process_stop(self.get_object("stop"), source=f"api:{request.user}",
                               actor=caller)
        return Response(ProcessStatusSerializer(process).data)

    @action(detail=True, methods=["post"])
    @method_decorator(sensitive_variables())
    def rerun(self, request, pk=None):
        caller = Caller.of(request)
        new = process_rerun(self.get_object("re-run"), owner=request.user,
                            application=caller.application, actor=caller)
        return Response(ProcessDetailSerializer(new, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        process_delete(self.get_object("delete"), actor=Caller.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"], pagination_class=None)  # the whole history, always
    def events(self, request, pk=None):
        events = process_events(self.get_object())
        return Response(ProcessEventSerializer(events, many=True).data)

    @action(detail=True, methods=["get"], pagination_class=None)  # every one, always
    def outputs(self, request, pk=None):
        outputs = ProcessOutput.objects.filter(process=self.get_object()).order_by("path")
        return Response(ProcessOutputSerializer(outputs, many=True).data)

    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(process_log_read(self.get_object(), query.validated_data["offset"]))


@extend_schema(
    summary="One output of a process: its bytes, whole or one range",
    description="Streamed from the store as an attachment named after the file, with "
                "Content-Length, `Accept-Ranges: bytes` and the ETag (its SHA-256); ranges as "
                "for a dataset's content. Readable by every member of the process's team.",
    parameters=[
        OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH,
                         description="The process's id."),
        OpenApiParameter("path", OpenApiTypes.STR, OpenApiParameter.PATH,
                         description="The output's path, as GET .../outputs/ lists it "
                                     "(it may hold /)."),
        *RANGE_HEADERS,
    ],
    responses={(200, "application/octet-stream"): OpenApiResponse(BYTES, description="The file."),
               (206, "application/octet-stream"): OpenApiResponse(
                   BYTES, description="The range asked for; `Content-Range` says which."),
               **errors(404), 416: error("The range starts past the end.")},
)
class ProcessOutputContentView(APIView):
    """GET /api/processes/<id>/outputs/<path>: outside the caller's teams, or no such output,
    is a 404."""

    def get(self, request, pk, path):
        process = process_for(Caller.of(request), pk)
        found = ProcessOutput.objects.filter(process=process, path=path).first()
        if found is None:
            raise Http404("No such output.")
        return object_response(found.key, found.size, found.sha256, PurePosixPath(path).name,
                                request.headers.get("Range"), request.headers.get("If-Range"),
                                what="output")
