"""Sweeps in the admin, read-only and as the caller may see them (``sweep_list``), each with
its processes counted by state (counted by the page's one query)."""

from django.contrib import admin
from django.db.models import Count, Q

from apps.sweeps.models import Sweep
from apps.sweeps.selectors import sweep_list
from apps.teams.access import Caller
from workers.contract import State

COUNTED = {f"n_{state.value.lower()}": state.value for state in State}


@admin.register(Sweep)
class SweepAdmin(admin.ModelAdmin):
    list_display = ("id", "pipeline", "team", "owner", "size", "counted", "created_at")
    list_filter = (("team", admin.RelatedOnlyFieldListFilter),)
    date_hierarchy = "created_at"
    list_select_related = ("pipeline", "team", "owner")
    readonly_fields = (*(f.name for f in Sweep._meta.fields), "counted")

    def get_queryset(self, request):
        # The wall: a sweep outside the caller's teams is "not found" everywhere in the admin.
        return sweep_list(Caller.of(request)).annotate(**{
            name: Count("processes", filter=Q(processes__state=state))
            for name, state in COUNTED.items()})

    @admin.display(description="processes by state")
    def counted(self, sweep):
        counts = [f"{state} {getattr(sweep, name, 0)}" for name, state in COUNTED.items()
                  if getattr(sweep, name, 0)]
        return ", ".join(counts) or "none"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
