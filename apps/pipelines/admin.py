from django.contrib import admin

from apps.pipelines.models import Pipeline, PipelineVersion, Pool, Worker


class PipelineVersionInline(admin.TabularInline):
    model = PipelineVersion
    fk_name = "pipeline"
    fields = ["number", "label", "target", "pool", "source_file", "loaded_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["name", "latest_version", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name"]
    readonly_fields = ["name", "latest_version", "active", "created_at"]
    inlines = [PipelineVersionInline]

    def has_add_permission(self, request):  # pipelines come from their YAML files
        return False


@admin.register(PipelineVersion)
class PipelineVersionAdmin(admin.ModelAdmin):
    list_display = ["pipeline", "number", "label", "target", "pool", "loaded_at"]
    list_filter = ["target", "pool"]
    readonly_fields = [f.name for f in PipelineVersion._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin):
    list_display = ["name", "target", "capacity", "queued_limit_s", "source_file"]
    readonly_fields = ["name", "target", "source_file", "updated_at"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["pool", "host", "name", "target", "version", "capacity", "busy", "last_seen"]
    list_filter = ["pool"]
    readonly_fields = [f.name for f in Worker._meta.fields]
