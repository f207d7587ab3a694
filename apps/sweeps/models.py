"""A sweep: many processes of one pipeline version created by one request, from a list of
configs or a parameter grid over a base config. Its processes point back to it
(``Process.sweep``); its counts by state are theirs."""

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models


class Sweep(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The wall around it, as around its processes (all of the same team).
    team = models.ForeignKey("teams.Team", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="sweeps")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="sweeps")
    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL, null=True, blank=True,
        on_delete=models.SET_NULL, related_name="sweeps")
    pipeline = models.ForeignKey("pipelines.Pipeline", on_delete=models.PROTECT,
                                 related_name="sweeps")
    pipeline_version = models.ForeignKey("pipelines.PipelineVersion", on_delete=models.PROTECT,
                                         related_name="sweeps")
    # What every run's config starts from (over the pipeline's defaults), and the grid when
    # the runs came from one (null: a list of configs).
    base_config = models.JSONField(default=dict, blank=True)
    grid = models.JSONField(null=True, blank=True)
    size = models.PositiveIntegerField()
    # "<client or user>/<Idempotency-Key header>", and a digest of the request it came with:
    # a retried POST finds the first sweep, another request under the same key is refused.
    idempotency_key = models.CharField(max_length=300, null=True, blank=True, unique=True)
    request_digest = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at"]
        indexes = (models.Index(fields=["team", "-created_at"], name="sweep_team_created"),)

    def __str__(self) -> str:
        return f"sweep {self.id} of {self.size}"
