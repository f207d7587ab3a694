"""The audit trail: who did what to which team's objects, when, from where. Rows are only
ever added: the admin shows them read-only and no route changes one."""

from django.conf import settings
from django.db import models


class Action(models.TextChoices):
    SUBMIT = "submit"
    STOP = "stop"
    RERUN = "re-run"
    DELETE = "delete"
    UPLOAD = "upload"
    ROLE_CHANGE = "role-change"
    MEMBER_ADD = "member-add"
    MEMBER_REMOVE = "member-remove"
    CLIENT_CREATE = "client-create"
    CLIENT_REVOKE = "client-revoke"
    POOL_PAUSE = "pool-pause"
    POOL_RESUME = "pool-resume"
    PURGE = "purge"  # retention deleted finished processes
    WEBHOOK_CREATE = "webhook-create"
    WEBHOOK_DELETE = "webhook-delete"


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=200)  # "client:NAME", "user:NAME" or "system"
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.SET_NULL, related_name="+")
    application = models.ForeignKey(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, null=True,
                                    blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept when the team goes: the slug stays readable in team_slug.
    team = models.ForeignKey("teams.Team", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="audit_entries")
    team_slug = models.CharField(max_length=50, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    # "process <uuid>", "client <id>", "pool <name>"
    target = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ("-at", "-id")
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"
