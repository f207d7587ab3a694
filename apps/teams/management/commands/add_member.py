"""python manage.py add_member TEAM USERNAME [--role viewer] [--new-user]: a browser user in a
team (their role changed when they are in it already). ``--new-user`` makes the user first:
staff, so that they may sign in to the admin, with no password until ``changepassword`` sets
one. What they see there and in the API is their teams' alone."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.teams.models import Team, TeamMember
from apps.teams.roles import Role
from apps.teams.services import LastAdminError, team_member_join, team_member_role_change


class Command(BaseCommand):
    help = "Put a user in a team with a role (or change their role there)."

    def add_arguments(self, parser):
        parser.add_argument("team", help="the team's slug")
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, default=Role.VIEWER,
                            help="viewer (reads), operator (also submits, stops, re-runs) or "
                                 "admin (also manages the team); default viewer")
        parser.add_argument("--new-user", action="store_true",
                            help="create the user (staff, no password yet: set it with "
                                 "manage.py changepassword USERNAME)")

    def handle(self, *args, team, username, role, new_user, **options):
        found = Team.objects.filter(slug=team).first()
        if found is None:
            raise CommandError(f"no team {team!r}; create it first: manage.py create_team {team}")
        users = get_user_model().objects
        if new_user:
            if users.filter(username=username).exists():
                raise CommandError(f"a user {username!r} exists already; leave out --new-user")
            users.create_user(username=username, password=None, is_staff=True)
        user = users.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r} (--new-user makes one)")
        membership = TeamMember.objects.filter(team=found, user=user).first()
        try:
            if membership is None:
                team_member_join(found, user, role)
            else:
                team_member_role_change(membership, role)
        except LastAdminError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{username} is {role} in {found.slug}")
