from __future__ import annotations

from rest_framework import serializers

from apps.webhooks.models import Delivery, Webhook
from apps.webhooks.receivers import ReceiverRefused, receiver_check


def receiver_url(value: str) -> None:
    try:
        receiver_check(value)
    except ReceiverRefused as exc:
        raise serializers.ValidationError(str(exc)) from None


class WebhookSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", read_only=True)

    class Meta:
        model = Webhook
        fields = ("id", "team", "url", "events", "created_at", "created_by")
        read_only_fields = ("id", "team", "created_at", "created_by")


class WebhookCreateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, validators=[receiver_url])
    events = serializers.ChoiceField(choices=Webhook.EVENTS, default=Webhook.END,
                                     help_text="`end`: terminal states only (the default); "
                                               "`all`: every transition.")
    team = serializers.CharField(required=False, max_length=50,
                                 help_text="The team's slug; needed when you administer "
                                           "several.")


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(read_only=True, help_text=(
        "The HMAC-SHA256 key of X-Orch-Signature: shown this once."))

    class Meta(WebhookSerializer.Meta):
        fields = (*WebhookSerializer.Meta.fields, "secret")  # type: ignore[assignment]


class DeliverySerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", default=None)
    kind = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = ("id", "team", "kind", "webhook", "process_id", "url", "from_state",
                  "to_state", "happened_at", "state", "attempts", "next_attempt_at",
                  "last_status", "last_error", "created_at", "delivered_at")

    def get_kind(self, delivery: Delivery) -> str:
        return "webhook" if delivery.webhook_id else "callback"
