from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.response import Response

from apps.accounts.schema import errors
from apps.pipelines.schema import PIPELINE_NAME, PoolOverviewSerializer
from apps.pipelines.selectors import pipeline_list, pool_overview
from apps.pipelines.serializers import PipelineDetailSerializer, PipelineSerializer
from apps.processes.selectors import process_list


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
        return pipeline_list().prefetch_related("versions__pool")

    def get_serializer_class(self):
        return PipelineDetailSerializer if self.action == "retrieve" else PipelineSerializer


class PoolViewSet(viewsets.ViewSet):
    """Pools with their capacity, live workers, and how many processes wait and run."""

    @extend_schema(summary="Pools: capacity, live workers, and processes waiting and running",
                   responses={200: PoolOverviewSerializer(many=True), **errors()})
    def list(self, request):
        # Staff see every pool's workers and counts; a client only its own processes' counts.
        staff = request.user is not None and request.user.is_staff
        application = getattr(request.auth, "application", None)
        processes = None if staff else process_list(request.user, application)
        return Response(pool_overview(processes, staff=staff))
