from rest_framework import viewsets
from rest_framework.response import Response

from apps.pipelines.selectors import pipeline_list, pool_overview
from apps.pipelines.serializers import PipelineDetailSerializer, PipelineSerializer


class PipelineViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    pagination_class = None

    def get_queryset(self):
        return pipeline_list().prefetch_related("versions")

    def get_serializer_class(self):
        return PipelineDetailSerializer if self.action == "retrieve" else PipelineSerializer


class PoolViewSet(viewsets.ViewSet):
    """Pools with their capacity, live workers, and how many processes wait and run."""

    def list(self, request):
        return Response(pool_overview())
