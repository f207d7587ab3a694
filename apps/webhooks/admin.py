"""Webhooks and their deliveries in the admin: read-only, scoped by the API's selectors."""

from django.contrib import admin

from apps.teams.access import Caller
from apps.webhooks.models import Delivery, Webhook
from apps.webhooks.selectors import delivery_list, webhook_list


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Webhook)
class WebhookAdmin(ReadOnly):
    list_display = ("url", "team", "events", "created_at", "created_by")
    exclude = ("secret",)

    def get_queryset(self, request):
        return webhook_list(Caller.of(request))


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly):
    list_display = ("created_at", "process_id", "to_state", "url", "state", "attempts",
                    "last_status", "delivered_at")
    list_filter = ("state", "to_state")
    search_fields = ("process_id", "url")

    def get_queryset(self, request):
        return delivery_list(Caller.of(request))

    def has_delete_permission(self, request, obj=None):
        return False
