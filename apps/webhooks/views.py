from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from apps.accounts.schema import errors
from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.processes.filters import GivenChoiceFilter, GivenNumberFilter, GivenUUIDFilter
from apps.teams.access import Caller
from apps.webhooks.models import Delivery
from apps.webhooks.selectors import delivery_list, managed_team, webhook_for, webhook_list
from apps.webhooks.serializers import (
    DeliverySerializer,
    WebhookCreatedSerializer,
    WebhookCreateSerializer,
    WebhookSerializer,
)
from apps.webhooks.services import webhook_create


@extend_schema_view(
    list=extend_schema(summary="Your teams' webhooks",
                       responses={200: WebhookSerializer(many=True), **errors(400, 404)}),
    retrieve=extend_schema(summary="One webhook", responses={200: WebhookSerializer,
                                                            **errors(404)}),
    create=extend_schema(
        summary="Register a receiver of the team's process ends (team admins)",
        description="Each delivery is a JSON POST signed in `X-Orch-Signature: "
                    "t=<unix time>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">` under the "
                    "`secret` answered here once.",
        request=WebhookCreateSerializer, responses={201: WebhookCreatedSerializer,
                                                    **errors(400)}),
    destroy=extend_schema(summary="Delete a webhook (team admins)",
                          responses={204: None, **errors(404)}),
)
class WebhookViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     viewsets.GenericViewSet):
    serializer_class = WebhookSerializer

    def get_queryset(self):
        return webhook_list(Caller.of(self.request)).order_by("-created_at")

    def get_object(self, action: str = "read"):
        return webhook_for(Caller.of(self.request), self.kwargs["pk"], action)

    def create(self, request):
        incoming = WebhookCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        caller = Caller.of(request)
        team = managed_team(incoming.validated_data.get("team"), caller)
        hook, secret = webhook_create(team, incoming.validated_data["url"],
                                      incoming.validated_data["events"], caller)
        audit_record(caller, Action.WEBHOOK_CREATE, team=team, target=f"webhook {hook.pk}",
                     detail={"url": hook.url, "events": hook.events})
        hook.secret = secret
        return Response(WebhookCreatedSerializer(hook).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        caller = Caller.of(request)
        hook = self.get_object("manage")
        audit_record(caller, Action.WEBHOOK_DELETE, team=hook.team, target=f"webhook {hook.pk}",
                     detail={"url": hook.url})
        hook.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryFilter(filters.FilterSet):
    process = GivenUUIDFilter(field_name="process_id", help_text="Of this process.")
    webhook = GivenNumberFilter(field_name="webhook_id", help_text="To this webhook.")
    state = GivenChoiceFilter(choices=Delivery.STATES,
                                 help_text="pending, delivered or failed.")

    class Meta:
        model = Delivery
        fields = ("process", "webhook", "state")


@extend_schema_view(
    list=extend_schema(summary="Webhook and callback deliveries of your teams' processes, "
                               "newest first",
                       responses={200: DeliverySerializer(many=True), **errors(400, 404)}),
    retrieve=extend_schema(summary="One delivery", responses={200: DeliverySerializer,
                                                             **errors(404)}),
)
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                      viewsets.GenericViewSet):
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter

    def get_queryset(self):
        return delivery_list(Caller.of(self.request))
