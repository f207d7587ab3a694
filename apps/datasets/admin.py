"""Datasets in the admin, read-only and as the caller may see them: every list and page goes
through ``dataset_list(Caller.of(request), deleted=True)`` (the deleted ones too, marked, as
the history of what processes used). Uploads and deletes go through the API, where the
audit records them."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from apps.datasets.models import Dataset
from apps.datasets.selectors import dataset_list
from apps.teams.access import Caller


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("no", "present"), ("yes", "deleted")]

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(deleted_at__isnull=self.value() == "no")
        return queryset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "team", "owner", "size", "created_at", "deleted_at")
    list_filter = (DeletedFilter, ("team", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "sha256")
    date_hierarchy = "created_at"
    list_select_related = ("team", "owner")
    exclude = ("processes",)
    readonly_fields = (*(f.name for f in Dataset._meta.fields), "download")

    def get_queryset(self, request):
        # The wall: changelist and pages start from here, so a dataset outside the caller's
        # teams is "not found" everywhere in the admin.
        return dataset_list(Caller.of(request), deleted=True)

    @admin.display(description="content")
    def download(self, dataset):
        if dataset.deleted_at is not None:
            return "deleted: its bytes are gone"
        return format_html('<a href="{}">download</a>',
                           reverse("dataset-content", args=[dataset.pk]))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
