"""Webhooks: a team's receivers told of its processes' ends (or every transition), a
process's own ``callback_url``, and one delivery record per message sent to either."""

from __future__ import annotations

from django.db import models

# Which transitions a hook hears: "end" (terminal states only) or "all".
WEBHOOK_EVENTS = (("end", "terminal states"), ("all", "every transition"))


class Webhook(models.Model):
    """A receiver a team admin registered for the team's processes."""

    END = "end"  # terminal states only
    ALL = "all"  # every transition
    EVENTS = WEBHOOK_EVENTS

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    events = models.CharField(max_length=8, choices=EVENTS, default=END)
    # The HMAC-SHA256 key of the signatures: shown once when the hook is made.
    secret = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.team.slug}: {self.url}"


class Callback(models.Model):
    """A process's own receiver (``callback_url`` of its POST), told of its end."""

    process = models.OneToOneField("processes.Process", on_delete=models.CASCADE,
                                   related_name="callback")
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=64, editable=False)

    def __str__(self) -> str:
        return f"callback of {self.process_id}: {self.url}"


class Delivery(models.Model):
    """One message to one receiver, from the transition that caused it to the receiver's 2xx
    (or giving up). Kept after its process is deleted (``process_id`` is a plain value)."""

    PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
    STATES = ((PENDING, PENDING), (DELIVERED, DELIVERED), (FAILED, FAILED))

    team = models.ForeignKey("teams.Team", null=True, on_delete=models.CASCADE,
                             related_name="deliveries")
    webhook = models.ForeignKey(Webhook, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="deliveries")
    process_id = models.UUIDField(db_index=True)
    url = models.URLField(max_length=2000)
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    happened_at = models.DateTimeField()
    state = models.CharField(max_length=12, choices=STATES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name_plural = "deliveries"
        indexes = (models.Index(fields=["state", "next_attempt_at"], name="delivery_due"),)

    def __str__(self) -> str:
        return f"{self.to_state} of {self.process_id} to {self.url}: {self.state}"
