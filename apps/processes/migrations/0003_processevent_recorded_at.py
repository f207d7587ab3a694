"""ProcessEvent.at becomes when a transition happened (settable) and recorded_at keeps when
the control plane applied it. Events recorded before knew only that time: recorded_at = at."""

import django.utils.timezone
from django.db import migrations, models
from django.db.models import F


def recorded_when_applied(apps, schema_editor):
    ProcessEvent = apps.get_model("processes", "ProcessEvent")
    ProcessEvent.objects.filter(recorded_at__isnull=True).update(recorded_at=F("at"))


class Migration(migrations.Migration):

    dependencies = [
        ("processes", "0002_process_secret_env"),
    ]

    operations = [
        migrations.AlterField(
            model_name="processevent",
            name="at",
            field=models.DateTimeField(default=django.utils.timezone.now,
                                       verbose_name="happened at"),
        ),
        migrations.AddField(
            model_name="processevent",
            name="recorded_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(recorded_when_applied, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="processevent",
            name="recorded_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="recorded at"),
        ),
    ]
