"""The audit trail in the admin: read-only for everyone (no add, change or delete), scoped by
the same selector as GET /api/audit/: a superuser reads every entry, a team admin the entries
of the teams they are admin of."""

from django.contrib import admin

from apps.audit.models import AuditEntry
from apps.audit.selectors import audit_list
from apps.teams.access import Caller, RoleTooLow


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at_second", "actor", "team_slug", "action", "target", "remote_addr")
    list_filter = ("action", ("team", admin.RelatedOnlyFieldListFilter))
    search_fields = ("actor", "target")
    readonly_fields = tuple(f.name for f in AuditEntry._meta.fields)

    @admin.display(description="at", ordering="at")
    def at_second(self, entry):
        return f"{entry.at:%Y-%m-%d %H:%M:%S}"

    def get_queryset(self, request):
        try:
            return audit_list(Caller.of(request))
        except RoleTooLow:  # granted "view audit entry" by hand, but admin of no team
            return AuditEntry.objects.none()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
