"""Clients are django-oauth-toolkit's Applications; each is tied to a user of its own.

The one model here counts requests per key and time window for the throttles
(``apps.accounts.throttling``). It lives in the database because gunicorn runs several
workers: a per-process cache would give each worker its own count."""

from django.db import models


class RateCounter(models.Model):
    """How many hits ``key`` had in the fixed window starting at ``window_start`` (epoch
    seconds). One row per key: a new window resets it."""

    key = models.CharField(max_length=255, primary_key=True)
    window_start = models.BigIntegerField()
    hits = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}: {self.hits} since {self.window_start}"
