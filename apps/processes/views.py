from __future__ import annotations

from django.http import Http404
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.processes.filters import ProcessFilter
from apps.processes.selectors import process_events, process_list, process_log_read
from apps.processes.serializers import (
    ProcessCreateSerializer,
    ProcessEventSerializer,
    ProcessSerializer,
    ProcessStatusSerializer,
)
from apps.processes.services import process_create, process_stop


class LogQuerySerializer(serializers.Serializer):
    offset = serializers.IntegerField(min_value=0, default=0)


class ProcessViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of pipelines. POST creates one; ``stop`` asks it to stop."""

    serializer_class = ProcessSerializer
    filterset_class = ProcessFilter

    def get_queryset(self):
        return process_list(self.request.user, getattr(self.request.auth, "application", None))

    def get_object(self):
        try:
            return super().get_object()
        except Exception as exc:  # a malformed id is simply not one of yours
            if isinstance(exc, Http404) or "UUID" in str(exc):
                raise Http404("No such process.") from None
            raise

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

    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        events = process_events(self.get_object())
        return Response(ProcessEventSerializer(events, many=True).data)

    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(process_log_read(self.get_object(), query.validated_data["offset"]))
