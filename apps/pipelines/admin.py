from django.contrib import admin, messages

from apps.pipelines.models import Pipeline, PipelineVersion, Pool, Worker
from apps.pipelines.services import pipeline_versions_withdraw


class PipelineVersionInline(admin.TabularInline):
    model = PipelineVersion
    fk_name = "pipeline"
    fields = ("number", "label", "target", "pool", "source_file", "loaded_at", "withdrawn")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ("name", "latest_version", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("name",)
    readonly_fields = ("name", "latest_version", "active", "created_at")
    inlines = (PipelineVersionInline,)

    def has_add_permission(self, request):  # pipelines come from their YAML files
        return False


@admin.register(PipelineVersion)
class PipelineVersionAdmin(admin.ModelAdmin):
    list_display = ("pipeline", "number", "label", "target", "pool", "loaded_at", "withdrawn")
    list_filter = ("withdrawn", "target", "pool")
    # Read-only, ``withdrawn`` too: it changes through the actions below, which say what they did.
    readonly_fields = tuple(f.name for f in PipelineVersion._meta.fields)
    actions = ("withdraw", "restore")

    def has_add_permission(self, request):
        return False

    @admin.action(description="Withdraw the selected versions (no new run; history kept)")
    def withdraw(self, request, queryset):
        changed = pipeline_versions_withdraw(queryset, withdrawn=True)
        self.message_user(request, f"Withdrew {changed} version(s): they start no new run or "
                                   "re-run; the processes that ran them keep them.",
                          messages.SUCCESS)

    @admin.action(description="Restore the selected versions (runnable again)")
    def restore(self, request, queryset):
        changed = pipeline_versions_withdraw(queryset, withdrawn=False)
        self.message_user(request, f"Restored {changed} version(s).", messages.SUCCESS)


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin):
    """View only: workers follow a pool's settings (where the engine, slurmrestd or AWS endpoint
    is), so they come only from pipelines/pools/<name>.yaml, checked against the target's
    allow-list when ``manage.py load_pipelines`` loads them."""

    list_display = ("name", "target", "capacity", "queued_limit_s", "source_file")
    readonly_fields = tuple(f.name for f in Pool._meta.fields)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("pool", "host", "name", "target", "version", "capacity", "busy", "last_seen")
    list_filter = ("pool",)
    readonly_fields = tuple(f.name for f in Worker._meta.fields)
