from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.accounts.schema import errors
from apps.pipelines.schema import (
    PIPELINE_NAME,
    POOL_NAME,
    QUEUE_PAGES,
    PoolOverviewSerializer,
    PoolPausedSerializer,
    QueueEntrySerializer,
    QueuePageSerializer,
)
from apps.pipelines.selectors import pipeline_list, pool_overview, pool_queue, pools_visible
from apps.pipelines.serializers import PipelineDetailSerializer, PipelineSerializer
from apps.pipelines.services import pool_pause
from apps.processes.pagination import ProcessPagination
from apps.processes.selectors import process_list
from apps.teams.access import Caller, RoleTooLow, sees_operations


def _ascii_digits_only(request, names) -> None:
    """A 400 naming each of ``names`` given more than once or as anything but ASCII digits
    (the paginator reads the last of several, and other Unicode digits too; the schema
    promises one integer)."""
    refused = {}
    for name in names:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            refused[name] = ["Give it once."]
        elif values and not (values[0].isascii() and values[0].isdigit()):
            refused[name] = [f"Must be a whole number, not {values[0][:40]!r}."]
    if refused:
        raise ValidationError(refused)


@extend_schema_view(
    list=extend_schema(summary="Pipelines, as their latest versions describe them",
                       responses={200: PipelineSerializer(many=True), **errors()}),
    retrieve=extend_schema(summary="One pipeline, with every version loaded",
                           parameters=[PIPELINE_NAME],
                           responses={200: PipelineDetailSerializer, **errors(404)}),
)
class PipelineViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    pagination_class = None

    def get_queryset(self):  # the versions and their pools: what `shown_version` reads
        if getattr(self, "swagger_fake_view", False):  # the schema's generator: no caller
            return pipeline_list()
        # Only the pipelines of pools the caller sees: a closed pool's do not exist for others.
        pools = pools_visible(Caller.of(self.request))
        return pipeline_list(pools).prefetch_related("versions__pool")

    def get_serializer_class(self):
        return PipelineDetailSerializer if self.action == "retrieve" else PipelineSerializer


class PoolViewSet(viewsets.ViewSet):
    """Pools with their capacity, live workers, and how many processes wait and run; a pool's
    queue in admission order; pause and resume."""

    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    @extend_schema(summary="Pools: capacity, paused, live workers, processes waiting and running",
                   responses={200: PoolOverviewSerializer(many=True), **errors()})
    def list(self, request):
        # Those who run the service see every pool's workers and counts; anyone else the
        # counts of their own teams' processes, on the pools open to their teams.
        caller = Caller.of(request)
        operations = sees_operations(caller)
        processes = None if operations else process_list(caller)
        return Response(pool_overview(processes, staff=operations,
                                      pools=pools_visible(caller)))

    def _pool(self, request, name):
        """The pool ``name`` if the caller sees it; else a 404 that says nothing of it."""
        pool = pools_visible(Caller.of(request)).filter(name=name).first()
        if pool is None:
            raise Http404("No such pool.")
        return pool

    @extend_schema(
        summary="A pool's waiting processes, in the order admission takes them",
        description="Those who run the service see every waiting process; anyone else their "
                    "teams' only, each at its place in the whole queue (`position`, 1 is the "
                    "next to go).",
        parameters=[POOL_NAME, *QUEUE_PAGES],
        responses={200: QueuePageSerializer, **errors(400, 404)},
    )
    @action(detail=True, methods=["get"])
    def queue(self, request, name=None):
        caller = Caller.of(request)
        pool = self._pool(request, name)
        teams = None if sees_operations(caller) else set(caller.team_ids() or [])
        _ascii_digits_only(request, ("page", "page_size"))
        entries = pool_queue(pool, teams)
        paginator = ProcessPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(QueueEntrySerializer(page, many=True).data)

    @extend_schema(
        summary="Pause a pool: it admits nothing new; running jobs go on",
        description="For those who run the service. Idempotent.",
        request=None, parameters=[POOL_NAME],
        responses={200: PoolPausedSerializer, **errors(404)},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, name=None):
        return self._set_paused(request, name, paused=True)

    @extend_schema(
        summary="Resume a paused pool: admission starts again at once",
        description="For those who run the service. Idempotent.",
        request=None, parameters=[POOL_NAME],
        responses={200: PoolPausedSerializer, **errors(404)},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, name=None):
        return self._set_paused(request, name, paused=False)

    def _set_paused(self, request, name, *, paused: bool):
        pool = self._pool(request, name)
        if not sees_operations(Caller.of(request)):
            verb = "Pausing" if paused else "Resuming"
            raise RoleTooLow(f"{verb} a pool is for those who run the service (a superuser, "
                             "or a client made with create_client --staff).")
        pool_pause(pool, paused=paused, actor=Caller.of(request))
        return Response({"name": pool.name, "paused": pool.paused})
