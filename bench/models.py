"""The table of the plain-POST baseline. The bench creates it itself (schema editor) in its
own database: it is no part of the product and has no migration."""

from django.db import models


class PlainRow(models.Model):
    name = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "bench"
        db_table = "bench_plain_row"

    def __str__(self) -> str:
        return self.name
