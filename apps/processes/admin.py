from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.core.exceptions import ValidationError

from apps.pipelines.selectors import queued_too_long
from apps.processes.models import Process, ProcessEvent
from apps.processes.services import process_rerun, process_stop
from workers.contract import TERMINAL_STATES, is_terminal

# Not shown on a process's page: the secrets stay out of sight even sealed.
HIDDEN_FIELDS = ("idempotency_key", "secret_env")


class ProcessEventInline(admin.TabularInline):
    model = ProcessEvent
    fields = ("at", "recorded_at", "from_state", "to_state", "source", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class WaitingTooLongFilter(admin.SimpleListFilter):
    """QUEUED for longer than the pool's ``queued_limit``: no live worker, or a full pool."""

    title = "waiting too long"
    parameter_name = "waiting_too_long"

    def lookups(self, request, model_admin):
        return [("yes", "QUEUED longer than the pool's limit")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(queued_too_long())
        return queryset


@admin.register(Process)
class ProcessAdmin(admin.ModelAdmin):
    list_display = ("id", "pipeline", "state", "owner", "pool", "exit_code", "created_at")
    list_filter = ("state", WaitingTooLongFilter, "pipeline", "pool")
    search_fields = ("id", "handle")
    date_hierarchy = "created_at"
    list_select_related = ("pipeline", "owner")
    exclude = HIDDEN_FIELDS
    readonly_fields = tuple(f.name for f in Process._meta.fields if f.name not in HIDDEN_FIELDS)
    inlines = (ProcessEventInline,)
    actions = ("stop", "rerun")

    def has_add_permission(self, request):  # runs start through the API or "re-run"
        return False

    # A process changes only through its services (stop, re-run) and its workers' events: its
    # page is view-only (no Save), so no edit can move a state or drop a handle behind them.
    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    # Deleting a live process would orphan its job on the target: only finished ones go.
    def has_delete_permission(self, request, obj=None):
        if obj is not None and not is_terminal(obj.state):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            actions["delete_selected"] = (ProcessAdmin.delete_finished, "delete_selected",
                                          "Delete the selected finished processes")
        return actions

    def delete_finished(self, request, queryset):
        """Django's bulk delete, over the finished processes of the selection only."""
        live = queryset.exclude(state__in=TERMINAL_STATES).count()
        if live:
            self.message_user(request, f"Skipped {live} live process(es): stop them and delete "
                                       "them once they have finished.", messages.WARNING)
        finished = queryset.filter(state__in=TERMINAL_STATES)
        if not finished.exists():
            return None
        return delete_selected(self, request, finished)

    def get_search_results(self, request, queryset, search_term):
        # An id search must not cast the uuid column to text: that scans the whole table.
        import uuid

        try:
            return queryset.filter(id=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.action(description="Stop the selected processes")
    def stop(self, request, queryset):
        for process in queryset:
            process_stop(process, source=f"admin:{request.user}")
        self.message_user(request, f"Stop asked for {queryset.count()} process(es).")

    @admin.action(description="Re-run the selected processes with the same config")
    def rerun(self, request, queryset):
        created = 0
        for process in queryset:
            try:
                process_rerun(process, owner=request.user)
                created += 1
            except ValidationError as exc:  # e.g. its version was withdrawn
                reasons = " ".join(m for found in exc.message_dict.values() for m in found)
                self.message_user(request, f"{process.pk} not re-run: {reasons}", messages.ERROR)
        self.message_user(request, f"Started {created} new process(es).", messages.SUCCESS)
