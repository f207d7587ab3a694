"""Pages of processes whose count stays cheap when a client has millions of them.

``count`` is exact up to EXACT_COUNT_LIMIT; past that it is the database planner's estimate
of the query's rows and ``count_exact`` is false. A COUNT(*) over a million rows took longer
than the whole rest of a list request: counting stops at the limit instead, and an estimate
is what a client can use for such a number anyway. Pages past the estimated end are empty.
"""

from __future__ import annotations

import json
from typing import cast

from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

EXACT_COUNT_LIMIT = 1_000


class BoundedCountPaginator(Paginator):
    exact = True

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return super().count
        counted = rows.order_by()[:EXACT_COUNT_LIMIT + 1].count()
        if counted <= EXACT_COUNT_LIMIT:
            return counted
        estimate = planner_estimate(rows)
        if estimate is None:  # a database that gives no estimate: count it all
            return super().count
        self.exact = False
        return max(estimate, counted)


def planner_estimate(rows: QuerySet) -> int | None:
    """The rows PostgreSQL expects ``rows`` to return (EXPLAIN, nothing run), or None."""
    connection = connections[rows.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = rows.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def _whole_number(value: str, largest: int | None) -> bool:
    if not value.isdecimal() or len(value) > 18:
        return False
    return int(value) >= 1 and (largest is None or int(value) <= largest)


class ProcessPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    django_paginator_class = BoundedCountPaginator

    def paginate_queryset(self, queryset, request, view=None):
        """``page`` and ``page_size`` are whole numbers in range, or a 400 naming them (DRF
        would quietly use its default page size, and answer a bad page with a 404)."""
        refused = {}
        for name, largest in (("page", None), ("page_size", self.max_page_size)):
            value = request.query_params.get(name)
            if value is not None and not _whole_number(value, largest):
                upto = f" up to {largest}" if largest else ""
                refused[name] = [f"Must be a whole number from 1{upto}, not {value[:40]!r}."]
        if refused:
            raise ValidationError(refused)
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        # DRF calls this after paginate_queryset, which made the page with our paginator.
        paginator = cast(BoundedCountPaginator, cast(Page, self.page).paginator)
        return Response({
            "count": paginator.count,
            "count_exact": paginator.exact,
            "next": self.get_next_link(),
            "previous": self.get_previous_link(),
            "results": data,
        })

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count_exact"] = {"type": "boolean", "example": True}
        return schema
