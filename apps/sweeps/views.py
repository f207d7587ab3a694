from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.schema import error, errors
from apps.processes.schema import IDEMPOTENCY_KEY
from apps.processes.serializers import ProcessSerializer
from apps.sweeps.selectors import sweep_counts, sweep_for, sweep_list, sweep_processes
from apps.sweeps.serializers import SweepCreateSerializer, SweepSerializer, SweepStopSerializer
from apps.sweeps.services import sweep_create, sweep_stop
from apps.teams.access import Caller
from apps.teams.selectors import submit_team


@extend_schema_view(
    list=extend_schema(summary="The caller's teams' sweeps, newest first, a page at a time",
                       responses={200: SweepSerializer(many=True), **errors(400, 404)}),
    retrieve=extend_schema(summary="One sweep, with its processes counted by state",
                           responses={200: SweepSerializer, **errors(404)}),
    create=extend_schema(
        summary="Start many runs of a pipeline in one request: a list of configs or a grid",
        description="Every run is checked first; one invalid run anywhere is a 400 naming it "
                    "(`configs[17]`, `grid.lr[1]`) and nothing is created. All runs are "
                    "created PENDING in one transaction and admitted like any process. More "
                    "runs than ORCH_SWEEP_MAX_SIZE is a 413; past the team's waiting quota on "
                    "the pool a 429 with Retry-After. A replayed Idempotency-Key answers the "
                    "first sweep with `Idempotent-Replayed: true`.",
        request=SweepCreateSerializer, parameters=[IDEMPOTENCY_KEY],
        examples=[OpenApiExample("grid", request_only=True, value={
            "pipeline": "hello", "base_config": {"name": "Ada"},
            "grid": {"seconds": [0, 1], "greeting": ["Hello", "Hi", "Hey"]}})],
        responses={202: SweepSerializer, **errors(400, 413, 422),
                   429: error("The sweep does not fit in the team's waiting quota on the "
                              "pool: nothing was created; Retry-After says when to ask again.")},
    ),
    processes=extend_schema(summary="The sweep's processes, in the order it created them",
                            responses={200: ProcessSerializer(many=True),
                                       **errors(400, 404)}),
    stop=extend_schema(
        summary="Stop every process of the sweep that has not ended",
        description="Those still waiting for admission are STOPPED at once; the others go "
                    "STOPPING and their targets are told. Idempotent. Needs the role operator "
                    "in the sweep's team.",
        request=None,
        responses={200: OpenApiResponse(SweepStopSerializer), **errors(404)}),
)
class SweepViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Sweeps: many runs of one pipeline created by one request."""

    serializer_class = SweepSerializer
    filterset_class = None

    def get_queryset(self):
        return sweep_list(Caller.of(self.request))

    def get_object(self, action: str = "read"):
        return sweep_for(Caller.of(self.request), self.kwargs["pk"], action)

    def get_serializer_context(self):
        # The counts of the sweeps answered (one query); none for a form of OPTIONS.
        return {**super().get_serializer_context(), "counts": getattr(self, "_counts", {})}

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset()) or []
        self._counts = sweep_counts(page)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        sweep = self.get_object()
        self._counts = sweep_counts([sweep])
        return Response(self.get_serializer(sweep).data)

    def create(self, request, *args, **kwargs):
        incoming = SweepCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        caller = Caller.of(request)
        sweep, created = sweep_create(
            pipeline=data["pipeline"], base_config=data["base_config"],
            configs=data.get("configs"), grid=data.get("grid"), version=data.get("version"),
            team=submit_team(data.get("team"), caller), owner=request.user,
            application=caller.application,
            idempotency_key=request.headers.get("Idempotency-Key") or None, actor=caller,
            priority=data["priority"], resources=data["resources"], image=data["image"],
            env=data["env"])
        self._counts = sweep_counts([sweep])
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(self.get_serializer(sweep).data, status=status.HTTP_202_ACCEPTED,
                        headers=headers)

    @action(detail=True, methods=["get"])
    def processes(self, request, pk=None):
        caller = Caller.of(request)
        page = self.paginate_queryset(sweep_processes(caller, self.get_object()))
        body = ProcessSerializer(page, many=True, context={"request": request}).data
        return self.get_paginated_response(body)

    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        caller = Caller.of(request)
        sweep = self.get_object("stop")
        stopped = sweep_stop(sweep, source=f"api:{request.user}", actor=caller)
        return Response({"stopped": stopped, "counts": sweep_counts([sweep])[sweep.pk]})
