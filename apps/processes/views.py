from __future__ import annotations

from django.http import Http404
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.schema import errors
from apps.processes.filters import ProcessFilter
from apps.processes.schema import IDEMPOTENCY_KEY, PROCESS_FILTERS, LogChunkSerializer
from apps.processes.selectors import process_events, process_list, process_log_read
from apps.processes.serializers import (
    ProcessCreateSerializer,
    ProcessEventSerializer,
    ProcessSerializer,
    ProcessStatusSerializer,
)
from apps.processes.services import process_create, process_stop


class LogQuerySerializer(serializers.Serializer):
    offset = serializers.IntegerField(min_value=0, max_value=2**63 - 1, default=0,
                                      help_text="The byte of the output to read from.")


@extend_schema_view(
    list=extend_schema(
        summary="The client's processes, newest first, a page at a time",
        description="`count` is exact up to 1,000 and an estimate above (`count_exact`).",
        parameters=PROCESS_FILTERS,
        responses={200: ProcessSerializer(many=True), **errors(400, 404)},
    ),
    retrieve=extend_schema(summary="One process", responses={200: ProcessSerializer,
                                                            **errors(404)}),
    create=extend_schema(
        summary="Start a run of a pipeline",
        description="JSON, or form-encoded with `used_config` as a JSON string. A replayed "
                    "Idempotency-Key answers the first process with `Idempotent-Replayed: true`.",
        request=ProcessCreateSerializer, parameters=[IDEMPOTENCY_KEY],
        examples=[OpenApiExample("hello", request_only=True,
                                 value={"pipeline": "hello", "used_config": {"name": "Ada"}})],
        responses={201: ProcessSerializer, **errors(400, 413, 422)},
    ),
    status=extend_schema(summary="A process's state, and whether it has finished",
                         responses={200: ProcessStatusSerializer, **errors(404)}),
    stop=extend_schema(
        summary="Ask a process to stop (STOPPING, then STOPPED)",
        description="Idempotent: a finished process is left as it is.",
        request=None, responses={200: ProcessStatusSerializer, **errors(404)},
    ),
    events=extend_schema(summary="Every transition of a process, oldest first", filters=False,
                         responses={200: ProcessEventSerializer(many=True), **errors(404)}),
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
        return process_list(self.request.user, getattr(self.request.auth, "application", None))

    def filter_queryset(self, queryset):
        # The filters choose processes for the list; a detail URL names its process already.
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def get_object(self):
        try:
            return super().get_object()
        except Exception as exc:  # a malformed id is simply not one of yours
            if isinstance(exc, Http404) or "UUID" in str(exc):
                raise Http404("No such process.") from None
            raise

    @method_decorator(sensitive_variables())
    def create(self, request, *args, **kwargs):
        incoming = ProcessCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        process, created = process_create(
            pipeline=incoming.validated_data["pipeline"],
            used_config=incoming.validated_data["used_config"],
            secrets=incoming.validated_data["secrets"],
            version=incoming.validated_data.get("version"),
            owner=request.user,
            application=getattr(request.auth, "application", None),
            idempotency_key=request.headers.get("Idempotency-Key") or None,
        )
        headers = {} if created else {"Idempotent-Replayed": "true"}
        context = {"request": request}
        if created:  # its pool is at hand: the answer needs no query for the pools' limits
            pool = process.pipeline_version.pool
            context["queued_limits"] = {pool.name: pool.queued_limit_s}
        body = ProcessSerializer(process, context=context).data
        return Response(body, status=status.HTTP_201_CREATED, headers=headers)

    @action(detail=True, methods=["get"])
    def status(self, request, pk=None):
        return Response(ProcessStatusSerializer(self.get_object()).data)

    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        process = process_stop(self.get_object(), source=f"api:{request.user}")
        return Response(ProcessStatusSerializer(process).data)

    @action(detail=True, methods=["get"], pagination_class=None)  # the whole history, always
    def events(self, request, pk=None):
        events = process_events(self.get_object())
        return Response(ProcessEventSerializer(events, many=True).data)

    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(process_log_read(self.get_object(), query.validated_data["offset"]))
