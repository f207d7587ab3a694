"""Teams: the wall between users. Browser users (TeamMember) and OAuth2 clients (TeamClient)
belong to one or more teams, each once, with a role; a process belongs to one team."""

from django.conf import settings
from django.db import models

from apps.teams.roles import Role
from apps.teams.slugs import SLUG_MAX


class Team(models.Model):
    slug = models.SlugField(max_length=SLUG_MAX, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("slug",)

    def __str__(self) -> str:
        return self.slug


class TeamMember(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="team_memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        ordering = ("team", "user")
        constraints = (
            models.UniqueConstraint(fields=("team", "user"), name="one_membership_per_team"),
        )

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class TeamClient(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="clients")
    application = models.ForeignKey(settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
                                    on_delete=models.CASCADE, related_name="team_memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)

    class Meta:
        ordering = ("team", "application")
        constraints = (
            models.UniqueConstraint(fields=("team", "application"),
                                    name="one_client_membership_per_team"),
        )

    def __str__(self) -> str:
        return f"{self.application} in {self.team} as {self.role}"
