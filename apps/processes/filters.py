import django_filters as filters

from apps.processes.models import STATE_CHOICES, Process


class ProcessFilter(filters.FilterSet):
    """``?state=RUNNING&state=QUEUED&pipeline=hello&created_after=2026-11-25T10:00:00Z``"""

    # distinct=False: a process has one state, and DISTINCT over a million rows costs ~250 ms.
    state = filters.MultipleChoiceFilter(choices=STATE_CHOICES, distinct=False)
    pipeline = filters.CharFilter(field_name="pipeline__name")
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    finished_after = filters.IsoDateTimeFilter(field_name="finished_at", lookup_expr="gte")

    class Meta:
        model = Process
        fields = ["state", "pipeline", "created_after", "created_before", "finished_after"]
