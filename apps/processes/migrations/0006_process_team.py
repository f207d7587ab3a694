"""Every process belongs to a team.

Existing clients and processes land in a team per client, named after it (the client an
``operator`` there: it keeps submitting for it by default), so nobody loses sight of their
runs; a process a browser user posted (no client) lands in a team per user, named after
them. Run again (after a migration back to 0005) it reuses the teams it made: a client or
user already in a team is placed in its first one, and only processes without a team move.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from apps.teams.slugs import unique_slug

OPERATOR = "operator"


def place_in_teams(apps, schema_editor):
    Application = apps.get_model(*settings.OAUTH2_PROVIDER_APPLICATION_MODEL.split("."))
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Team = apps.get_model("teams", "Team")
    TeamClient = apps.get_model("teams", "TeamClient")
    TeamMember = apps.get_model("teams", "TeamMember")
    Process = apps.get_model("processes", "Process")
    taken = set(Team.objects.values_list("slug", flat=True))

    def new_team(name: str, fallback: str):
        slug = unique_slug(name, taken.__contains__, fallback)
        taken.add(slug)
        return Team.objects.create(slug=slug, name=name)

    for app in Application.objects.order_by("pk").iterator():
        held = TeamClient.objects.filter(application=app).order_by("pk").first()
        if held is None:
            held = TeamClient.objects.create(
                team=new_team(app.name or f"client {app.pk}", f"client-{app.pk}"),
                application=app, role=OPERATOR)
        Process.objects.filter(application=app, team__isnull=True).update(team=held.team_id)
    owners = (Process.objects.filter(application__isnull=True, owner__isnull=False,
                                     team__isnull=True)
              .values_list("owner", flat=True).distinct())
    for user in User.objects.filter(pk__in=list(owners)).order_by("pk").iterator():
        held = TeamMember.objects.filter(user=user).order_by("pk").first()
        if held is None:
            held = TeamMember.objects.create(
                team=new_team(user.username, f"user-{user.pk}"), user=user, role=OPERATOR)
        Process.objects.filter(application__isnull=True, owner=user,
                               team__isnull=True).update(team=held.team_id)


class Migration(migrations.Migration):

    dependencies = [
        ("processes", "0005_bind_secrets_to_process"),
        ("teams", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(settings.OAUTH2_PROVIDER_APPLICATION_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="process",
            name="team",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                related_name="processes", to="teams.team"),
        ),
        # Backward, the field goes and the teams stay: forward again reuses them.
        migrations.RunPython(place_in_teams, migrations.RunPython.noop),
    ]
