"""python manage.py create_team SLUG [--name NAME]: an empty team, for create_client --team."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug

from apps.teams.models import Team
from apps.teams.services import team_create


class Command(BaseCommand):
    help = "Create a team (clients join it with create_client NAME --team SLUG)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="", help="its name (default: the slug)")

    def handle(self, *args, slug, name, **options):
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"{slug!r}: {' '.join(exc.messages)}") from None
        if Team.objects.filter(slug=slug).exists():
            raise CommandError(f"a team {slug!r} exists already")
        team = team_create(slug=slug, name=name)
        self.stdout.write(f"team {team.slug} ({team.name})")
