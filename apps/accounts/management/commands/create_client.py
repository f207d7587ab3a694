"""python manage.py create_client NAME [--team SLUG --role ROLE]: an OAuth2 client-credentials
client, printed ready for curl (``curl -u ID:SECRET`` does the Basic encoding; no base64 by
hand), in a team: the one named, or without --team a new team named after the client.

The client is made by the same service as ``POST /api/teams/<slug>/clients/``
(apps.teams.services.team_client_create), audit entry included (by "system")."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.teams.models import Team
from apps.teams.roles import Role
from apps.teams.services import team_client_create


class Command(BaseCommand):
    help = "Create an OAuth2 client (client-credentials grant) and print its id and secret."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--staff", action="store_true",
                            help="the client also sees every pool's workers and the health "
                                 "details (no team's processes)")
        parser.add_argument("--team", default=None,
                            help="the slug of the team it joins (default: a new team named "
                                 "after the client)")
        parser.add_argument("--role", choices=Role.values, default=Role.OPERATOR,
                            help="its role in that team (default: operator, which submits)")
        parser.add_argument("--format", choices=["text", "env", "json"], default="text")
        parser.add_argument("--url", default="http://127.0.0.1:8000",
                            help="the base URL shown in the curl example")

    def handle(self, *args, name, staff, team, role, format, url, **options):
        joins = None
        if team is not None and (joins := Team.objects.filter(slug=team).first()) is None:
            raise CommandError(f"no team {team!r}; create it first: manage.py create_team {team}")
        try:
            app, secret = team_client_create(joins, name, role, staff=staff)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if format == "env":
            self.stdout.write(f"export ORCH_CLIENT_ID={app.client_id}\n"
                              f"export ORCH_CLIENT_SECRET={secret}")
        elif format == "json":
            import json

            self.stdout.write(json.dumps({"client_id": app.client_id, "client_secret": secret}))
        else:
            self.stdout.write(
                f"client_id:     {app.client_id}\nclient_secret: {secret}\n\n"
                "Get a token (the secret is shown only now; keep it):\n"
                f"  curl -s -u '{app.client_id}:{secret}' -d grant_type=client_credentials "
                f"{url}/o/token/"
            )
