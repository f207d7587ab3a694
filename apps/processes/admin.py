"""Processes in the admin, as the caller may see them: every list, page, filter and action
goes through ``process_list(Caller.of(request), ...)``. Django's permissions (granted by team
role, apps.teams.backends) say which actions a user has at all; the selector says which
processes each one touches."""

from typing import ClassVar

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.datasets.outputs import outputs_forget
from apps.pipelines.models import Pool
from apps.pipelines.selectors import queued_too_long
from apps.processes import admin_display as show
from apps.processes.admission import QuotaExceeded
from apps.processes.models import Process, ProcessAttempt, ProcessEvent
from apps.processes.selectors import process_list
from apps.processes.services import process_rerun, process_stop
from apps.processes.waiting import WaitingFor
from apps.teams.access import Caller
from apps.teams.roles import Role
from workers.contract import TERMINAL_STATES, State, is_terminal

# Not shown on a process's page: the secrets stay out of sight even sealed.
HIDDEN_FIELDS = ("idempotency_key", "secret_env")

# The whole admin: its name, and a "View site" that leads to the API's documentation.
admin.site.site_header = "orchestration admin"
admin.site.site_title = "orchestration"
admin.site.index_title = "Processes, pipelines and pools"
admin.site.site_url = settings.ADMIN_SITE_URL

# A process's page, in groups; the fields not named here go to "On its target".
FIELD_GROUPS = (
    ("Run", ("id", "pipeline", "version_link", "pool_link", "target", "state_badge",
             "message", "exit_code", "team", "owner", "application", "priority",
             "waiting_for")),
    ("Times", ("created_at", "queued_at", "admitted_at", "submitted_at", "started_at",
               "finished_at", "waited", "duration", "stop_requested_at", "updated_at")),
    ("Config", ("used_config",)),
    ("Log", ("log",)),
)
# Shown through the displays above instead of as they are stored.
SHOWN_OTHERWISE = {"pipeline_version", "pool", "state", "log_size", "log_kept", "log_cursor",
                   "log_truncated"}


def short(process) -> str:
    return str(process.pk)[:8]


def listed(processes) -> str:
    """``ab12cd34, ef56...`` for a message: enough of each id to find it in the list."""
    return ", ".join(short(p) for p in processes)


class ProcessEventInline(admin.TabularInline):
    model = ProcessEvent
    fields = ("at", "recorded_at", "from_state", "to", "source", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="to state")
    def to(self, event):
        return show.state_badge(event.to_state)


class ProcessAttemptInline(admin.TabularInline):
    """Each job a process had on its target (a retry is a new attempt)."""

    model = ProcessAttempt
    fields = ("number", "attempt_state", "handle", "host", "exit_code", "reason", "message",
              "created_at", "started_at", "ended_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="state")
    def attempt_state(self, attempt):
        return show.state_badge(attempt.state)


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
    list_display = ("short_id", "pipeline", "state_badge", "team", "owner", "pool",
                    "exit_code", "created_at", "started_at", "duration")
    # The filters list only what the processes shown use (a pool or an owner by its values
    # there): the caller's teams, and no pipeline, pool or owner of other teams.
    list_filter = ("state", WaitingTooLongFilter, ("team", admin.RelatedOnlyFieldListFilter),
                   ("owner", admin.RelatedOnlyFieldListFilter),
                   ("pipeline", admin.RelatedOnlyFieldListFilter), "pool",
                   ("created_at", admin.DateFieldListFilter))
    search_fields = ("id", "handle")
    date_hierarchy = "created_at"
    list_select_related = ("pipeline", "owner", "team")
    exclude = HIDDEN_FIELDS
    readonly_fields = (*(f.name for f in Process._meta.fields if f.name not in HIDDEN_FIELDS),
                       "waiting_for", "state_badge", "version_link", "pool_link", "waited",
                       "duration", "log")
    inlines = (ProcessAttemptInline, ProcessEventInline)
    actions = ("stop", "rerun")

    class Media:
        css: ClassVar[dict[str, tuple[str, ...]]] = {"all": ("processes/admin.css",)}

    def get_fieldsets(self, request, obj=None):
        named = {f for _, fields in FIELD_GROUPS for f in fields}
        others = tuple(f.name for f in Process._meta.fields
                       if f.name not in named | SHOWN_OTHERWISE | set(HIDDEN_FIELDS))
        groups: list[tuple[str, dict[str, tuple[str, ...]]]] = [
            (title, {"fields": fields}) for title, fields in FIELD_GROUPS]
        groups.insert(-2, ("On its target", {"fields": others}))
        return groups

    def get_queryset(self, request):
        # The wall: changelist, change and delete pages and every action start from here, so a
        # process outside the caller's teams is "not found" everywhere in the admin.
        return process_list(Caller.of(request))

    @admin.display(description="waiting for")
    def waiting_for(self, process):
        """Why it has not been admitted yet (apps.processes.admission), or "-"."""
        return WaitingFor()(process) or "-"

    @admin.display(description="id", ordering="id")
    def short_id(self, process):
        return short(process)

    @admin.display(description="state", ordering="state")
    def state_badge(self, process):
        return show.state_badge(process.state)

    @admin.display(description="ran for")
    def duration(self, process):
        return show.duration_text(show.ran_for(process))

    @admin.display(description="waited")
    def waited(self, process):
        return show.duration_text(show.waited_for(process))

    @admin.display(description="pipeline version")
    def version_link(self, process):
        return show.admin_link(process.pipeline_version)

    @admin.display(description="pool")
    def pool_link(self, process):
        found = Pool.objects.filter(name=process.pool).first()
        return show.admin_link(found) if found else process.pool

    @admin.display(description="log (its end)")
    def log(self, process):
        return show.log_tail(process)

    def has_add_permission(self, request):  # runs start through the API or "re-run"
        return False

    # A process changes only through its services (stop, re-run) and its workers' events: its
    # page is view-only (no Save), so no edit can move a state or drop a handle behind them.
    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    # Deleting a live process would orphan its job on the target: only finished ones go, and
    # only by an operator of its team.
    def has_delete_permission(self, request, obj=None):
        if obj is not None and not (is_terminal(obj.state)
                                    and Caller.of(request).may(obj.team_id, Role.OPERATOR)):
            return False
        return super().has_delete_permission(request, obj)

    def has_stop_permission(self, request):
        return request.user.has_perm("processes.stop_process")

    def has_rerun_permission(self, request):
        return request.user.has_perm("processes.rerun_process")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            actions["delete_selected"] = (ProcessAdmin.delete_finished, "delete_selected",
                                          "Delete the selected finished processes")
        return actions

    def operated(self, request, queryset):
        """The processes of an action's selection in teams where the caller is operator or
        more; the others are left out, and the caller told how many."""
        selected = list(queryset.values_list("pk", flat=True))
        allowed = process_list(Caller.of(request), Role.OPERATOR).filter(pk__in=selected)
        if skipped := len(selected) - allowed.count():
            self.message_user(request, f"Skipped {skipped} process(es) of teams where you are "
                                       "not operator.", messages.WARNING)
        return allowed

    def delete_finished(self, request, queryset):
        """Django's bulk delete, over the finished processes of the selection the caller
        operates only."""
        queryset = self.operated(request, queryset)
        live = queryset.exclude(state__in=TERMINAL_STATES).count()
        if live:
            self.message_user(request, f"Skipped {live} live process(es): stop them and delete "
                                       "them once they have finished.", messages.WARNING)
        finished = queryset.filter(state__in=TERMINAL_STATES)
        if not finished.exists():
            return None
        return delete_selected(self, request, finished)

    # Both delete paths (a process's delete page, the bulk action) end here: each deleted
    # process leaves one audit entry, in the same transaction as its deletion.
    def delete_model(self, request, obj):
        with transaction.atomic():
            self._audit_deletion(request, obj)
            outputs_forget([obj.pk])  # their bytes, once the deletion commits
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for process in queryset:
                self._audit_deletion(request, process)
            outputs_forget(queryset.values_list("pk", flat=True))
            super().delete_queryset(request, queryset)

    @staticmethod
    def _audit_deletion(request, process):
        audit_record(Caller.of(request), Action.DELETE, team=process.team,
                     target=f"process {process.pk}",
                     detail={"pipeline": process.pipeline.name, "state": process.state})

    def get_search_results(self, request, queryset, search_term):
        # An id search must not cast the uuid column to text: that scans the whole table.
        import uuid

        try:
            return queryset.filter(id=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.action(description="Stop the selected processes", permissions=["stop"])
    def stop(self, request, queryset):
        self.stop_and_report(request, self.operated(request, queryset))

    def stop_and_report(self, request, processes) -> None:
        """Stop each one and say what became of it: stopped at once (it had not reached its
        target), stopping (the cancel is on its way), or left as it was (already finished)."""
        caller = Caller.of(request)
        outcome: dict[str, list] = {State.STOPPED: [], State.STOPPING: [], "finished": []}
        for process in processes:
            if is_terminal(process.state):
                outcome["finished"].append(process)
                continue
            process = process_stop(process, source=f"admin:{request.user}", actor=caller)
            outcome.setdefault(process.state, []).append(process)
        if done := outcome[State.STOPPED]:
            self.message_user(request, f"Stopped {len(done)} process(es) before they reached "
                                       f"their target: {listed(done)}.", messages.SUCCESS)
        if going := outcome[State.STOPPING]:
            self.message_user(request, f"Stopping {len(going)} process(es): their target was "
                                       f"asked to cancel them, they show STOPPED once it has: "
                                       f"{listed(going)}.", messages.SUCCESS)
        if ended := outcome["finished"]:
            self.message_user(request, f"Left {len(ended)} finished process(es) as they were: "
                                       f"{listed(ended)}.", messages.WARNING)
        others = [p for state, found in outcome.items()
                  if state not in (State.STOPPED, State.STOPPING, "finished") for p in found]
        if others:  # ended on their own meanwhile
            self.message_user(request, f"{len(others)} process(es) ended on their own "
                                       f"meanwhile: {listed(others)}.", messages.WARNING)

    @admin.action(description="Re-run the selected processes with the same config",
                  permissions=["rerun"])
    def rerun(self, request, queryset):
        self.rerun_and_report(request, self.operated(request, queryset))

    def rerun_and_report(self, request, processes) -> list:
        """A new process for each one, in the original's team (its secrets stay there); each
        new one named with a link, each refusal with its reason. The new processes."""
        caller = Caller.of(request)
        created = []
        for process in processes:
            try:
                created.append(process_rerun(process, owner=request.user, actor=caller))
            except ValidationError as exc:  # e.g. its version was withdrawn
                reasons = " ".join(m for found in exc.message_dict.values() for m in found)
                self.message_user(request, f"{process.pk} not re-run: {reasons}", messages.ERROR)
            except QuotaExceeded as exc:  # its team's waiting quota on the pool is full
                self.message_user(request, f"{process.pk} not re-run: {exc.detail}",
                                  messages.ERROR)
        links = format_html_join(", ", '<a href="{}">{}</a>', (
            (reverse("admin:processes_process_change", args=[p.pk]), short(p))
            for p in created))
        self.message_user(request, format_html(
            "Started {} new process(es){}{}", len(created), ": " if created else ".", links),
            messages.SUCCESS if created else messages.WARNING)
        return created

    # The page of one process: its log alone, and stop and re-run buttons that do what the
    # actions do, for that process only.
    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        return [
            path("<path:object_id>/log/", view(self.log_view), name="processes_process_log"),
            path("<path:object_id>/stop/", view(self.stop_view), name="processes_process_stop"),
            path("<path:object_id>/rerun/", view(self.rerun_view),
                 name="processes_process_rerun"),
            *super().get_urls(),
        ]

    def visible(self, request, object_id) -> Process:
        """The process as the caller may see it (the selector's wall), or 404."""
        process = self.get_object(request, object_id)
        if process is None or not self.has_view_permission(request, process):
            raise Http404("No such process.")
        return process

    def log_view(self, request, object_id):
        """The whole kept log as plain text."""
        process = self.visible(request, object_id)
        return HttpResponse(show.whole_log_text(process),
                            content_type="text/plain; charset=utf-8")

    def stop_view(self, request, object_id):
        return self._one_process_action(request, object_id, "stop", self.stop_and_report)

    def rerun_view(self, request, object_id):
        return self._one_process_action(request, object_id, "rerun", self.rerun_and_report)

    @method_decorator(require_POST)
    def _one_process_action(self, request, object_id, action, run):
        process = self.visible(request, object_id)
        if not getattr(self, f"has_{action}_permission")(request):
            raise PermissionDenied
        selected = self.operated(request, Process.objects.filter(pk=process.pk))
        created = run(request, selected)
        target = created[0] if action == "rerun" and created else process
        return HttpResponseRedirect(reverse("admin:processes_process_change", args=[target.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        # The buttons show only where they can act: a live process for stop, and a caller
        # who operates the process's team.
        if obj is not None:
            operates = Caller.of(request).may(obj.team_id, Role.OPERATOR)
            context["may_stop"] = (operates and not is_terminal(obj.state)
                                   and self.has_stop_permission(request))
            context["may_rerun"] = operates and self.has_rerun_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)
