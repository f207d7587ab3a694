"""Pipelines, their versions, pools and workers in the admin: all of them come from YAML files
or heartbeats, so the admin shows them and edits none (no Add, no Save): an edit there would
be undone by the next ``load_pipelines`` or heartbeat, and a pool's workers would never see
it. What an operator does here goes through actions that say what they did: withdraw and
restore a version, pause and resume a pool."""

from datetime import timedelta
from typing import ClassVar

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from apps.pipelines.models import Pipeline, PipelineVersion, Pool, Worker
from apps.pipelines.selectors import pool_queue, pools_visible, sees_every_pool
from apps.pipelines.services import pipeline_versions_withdraw, pool_pause
from apps.teams.access import Caller, sees_operations

# Waiting processes shown on a pool's page, the first in admission order.
QUEUE_SHOWN = 20


def heartbeat_cutoff():
    """A worker whose last heartbeat is older than this is stale (not counted as live)."""
    return timezone.now() - timedelta(seconds=settings.WORKER_TIMEOUT_S)


def heartbeat_badge(last_seen):
    alive = last_seen is not None and last_seen >= heartbeat_cutoff()
    return format_html('<span class="heartbeat heartbeat-{}">{}</span>',
                       "alive" if alive else "stale", "alive" if alive else "stale")


class ReadOnlyAdmin(admin.ModelAdmin):
    """View only: what the files and heartbeats write, nobody edits here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def versions_in_reach(request, versions):
    """The pipeline versions of the pools the caller may see (a pool closed to their teams
    shows neither itself nor its pipelines, here as in the API)."""
    return versions.filter(pool__in=pools_visible(Caller.of(request)))


class PipelineVersionInline(admin.TabularInline):
    model = PipelineVersion
    fk_name = "pipeline"
    fields = ("number", "label", "target", "pool", "source_file", "loaded_at", "withdrawn")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return versions_in_reach(request, super().get_queryset(request))


@admin.register(Pipeline)
class PipelineAdmin(ReadOnlyAdmin):
    list_display = ("name", "latest_version", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("name",)
    readonly_fields = ("name", "latest_version", "active", "created_at")
    inlines = (PipelineVersionInline,)

    def get_queryset(self, request):
        # As GET /api/pipelines/: a pipeline is where its latest version runs.
        pipelines = super().get_queryset(request)
        caller = Caller.of(request)
        if sees_every_pool(caller):
            return pipelines
        return pipelines.filter(latest_version__pool__in=pools_visible(caller))


@admin.register(PipelineVersion)
class PipelineVersionAdmin(ReadOnlyAdmin):
    list_display = ("pipeline", "number", "label", "target", "pool", "loaded_at", "withdrawn")
    # Only the pools of the versions listed: a closed pool's name is not offered as a filter.
    list_filter = ("withdrawn", "target", ("pool", admin.RelatedOnlyFieldListFilter))
    # Read-only, ``withdrawn`` too: it changes through the actions below, which say what they did.
    readonly_fields = tuple(f.name for f in PipelineVersion._meta.fields)
    actions = ("withdraw", "restore")

    def get_queryset(self, request):
        return versions_in_reach(request, super().get_queryset(request))

    def has_withdraw_permission(self, request):  # the one change the admin makes to a version
        return request.user.has_perm("pipelines.change_pipelineversion")

    @admin.action(description="Withdraw the selected versions (no new run; history kept)",
                  permissions=["withdraw"])
    def withdraw(self, request, queryset):
        changed = pipeline_versions_withdraw(queryset, withdrawn=True)
        self.message_user(request, f"Withdrew {changed} version(s): they start no new run or "
                                   "re-run; the processes that ran them keep them.",
                          messages.SUCCESS)

    @admin.action(description="Restore the selected versions (runnable again)",
                  permissions=["withdraw"])
    def restore(self, request, queryset):
        changed = pipeline_versions_withdraw(queryset, withdrawn=False)
        self.message_user(request, f"Restored {changed} version(s).", messages.SUCCESS)


@admin.register(Pool)
class PoolAdmin(ReadOnlyAdmin):
    """View only, but for pausing: workers follow a pool's settings (where the engine,
    slurmrestd or AWS endpoint is), so they come only from pipelines/pools/<name>.yaml,
    checked against the target's allow-list when ``manage.py load_pipelines`` loads them.
    Those who run the service pause and resume pools here (as with the API's routes)."""

    list_display = ("name", "target", "capacity", "paused", "running", "waiting",
                    "workers_alive", "last_heartbeat", "queued_limit_s", "source_file")
    list_filter = ("paused", "target")
    readonly_fields = (*(f.name for f in Pool._meta.fields), "running", "waiting",
                       "workers_alive", "last_heartbeat", "workers", "queue")
    actions = ("pause", "resume")

    class Media:
        css: ClassVar[dict[str, tuple[str, ...]]] = {"all": ("pipelines/admin.css",)}

    def get_queryset(self, request):
        # A pool closed to the caller's teams is not there for them, here as in the API.
        from apps.processes.admission import holding, waiting_on  # processes use pipelines

        def counted(processes):
            return Coalesce(Subquery(processes.filter(pool=OuterRef("name")).order_by()
                                     .values("pool").annotate(n=Count("id")).values("n")), 0)

        return pools_visible(Caller.of(request)).annotate(
            slots_held=counted(holding(None)), waiting_count=counted(waiting_on()))

    def has_operate_permission(self, request):
        return sees_operations(Caller.of(request))

    @admin.display(description="running (slots held)")
    def running(self, pool):
        return pool.slots_held

    @admin.display(description="waiting for admission")
    def waiting(self, pool):
        return pool.waiting_count

    @staticmethod
    def heartbeats(pool) -> dict:
        """Its workers' figures from their heartbeats (read once per pool shown)."""
        if not hasattr(pool, "_heartbeats"):
            pool._heartbeats = Worker.objects.filter(pool=pool.name).aggregate(
                alive=Count("id", filter=Q(last_seen__gte=heartbeat_cutoff())),
                last=Max("last_seen"))
        return pool._heartbeats

    @admin.display(description="workers alive")
    def workers_alive(self, pool):
        return self.heartbeats(pool)["alive"]

    @admin.display(description="last heartbeat")
    def last_heartbeat(self, pool):
        last = self.heartbeats(pool)["last"]
        if last is None:
            return "never"
        return format_html("{} {}", timezone.localtime(last).strftime("%Y-%m-%d %H:%M:%S"),
                           heartbeat_badge(last))

    @admin.display(description="workers (by their last heartbeat)")
    def workers(self, pool):
        rows = Worker.objects.filter(pool=pool.name).order_by("-last_seen")
        if not rows:
            return "no worker has sent a heartbeat"
        return format_html_join(
            "\n", "<div>{} {} on {}, version {}, {}/{} busy, last heartbeat {}</div>",
            ((heartbeat_badge(w.last_seen), w.name or "-", w.host, w.version or "-", w.busy,
              w.capacity, timezone.localtime(w.last_seen).strftime("%Y-%m-%d %H:%M:%S"))
             for w in rows))

    @admin.display(description=f"queue (the first {QUEUE_SHOWN}, in admission order)")
    def queue(self, pool):
        rows = pool_queue(pool)[:QUEUE_SHOWN]
        if not rows:
            return "nothing waits"
        return format_html_join(
            "\n", "<div>{}. {} ({}, team {}, priority {}): {}</div>",
            ((r["position"], r["id"], r["pipeline"], r["team"] or "none", r["priority"],
              r["waiting_for"]) for r in rows))

    @admin.action(description="Pause the selected pools (admit nothing new)",
                  permissions=["operate"])
    def pause(self, request, queryset):
        caller = Caller.of(request)
        changed = sum(pool_pause(pool, paused=True, actor=caller) for pool in queryset)
        self.message_user(request, f"Paused {changed} pool(s): they admit nothing new; "
                                   "running jobs go on.", messages.SUCCESS)

    @admin.action(description="Resume the selected pools", permissions=["operate"])
    def resume(self, request, queryset):
        caller = Caller.of(request)
        changed = sum(pool_pause(pool, paused=False, actor=caller) for pool in queryset)
        self.message_user(request, f"Resumed {changed} pool(s).", messages.SUCCESS)


class HeartbeatFilter(admin.SimpleListFilter):
    """Alive (a heartbeat within ORCH_WORKER_TIMEOUT_S) or stale (a worker gone or stuck)."""

    title = "heartbeat"
    parameter_name = "heartbeat"

    def lookups(self, request, model_admin):
        return [("alive", "alive"), ("stale", "stale")]

    def queryset(self, request, queryset):
        if self.value() == "alive":
            return queryset.filter(last_seen__gte=heartbeat_cutoff())
        if self.value() == "stale":
            return queryset.filter(last_seen__lt=heartbeat_cutoff())
        return queryset


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    """Written by heartbeats only. A stale worker stays listed, marked, so the list is where
    one finds a worker gone; the heartbeat filter hides it."""

    list_display = ("pool", "host", "name", "target", "version", "capacity", "busy",
                    "last_seen", "heartbeat")
    list_filter = (HeartbeatFilter, "pool")
    readonly_fields = (*(f.name for f in Worker._meta.fields), "heartbeat")

    class Media:
        css: ClassVar[dict[str, tuple[str, ...]]] = {"all": ("pipelines/admin.css",)}

    @admin.display(description="heartbeat", ordering="last_seen")
    def heartbeat(self, worker):
        return heartbeat_badge(worker.last_seen)
