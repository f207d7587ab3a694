"""The token endpoint's client check: a revoked client (its user made inactive when it left
its last team) gets no token, and every refusal costs the same time.

django-oauth-toolkit hashes the given secret only when the client id exists (about 0.2 s of
PBKDF2), so the answer's time told which ids exist. Here an unknown id hashes a dummy secret
with the same hasher, and both failures take as long. A revoked client is refused the same
way, as if its id were unknown: django-oauth-toolkit itself would still grant it tokens (its
``is_usable`` looks at nothing), which the API would then refuse one by one."""

from __future__ import annotations

import secrets
from functools import cache

from django.contrib.auth.hashers import check_password, make_password
from oauth2_provider.oauth2_validators import OAuth2Validator


@cache
def _dummy_hash() -> str:
    return make_password(secrets.token_urlsafe(32))  # the hasher client secrets are saved with


def _revoked(application) -> bool:
    """Whether the client was cut off: the user it acts as is inactive."""
    user = application.user if application.user_id is not None else None
    return user is not None and not user.is_active


class EvenTimeValidator(OAuth2Validator):
    def _load_application(self, client_id, request):
        application = super()._load_application(client_id, request)
        if application is not None and _revoked(application):
            request.client = None
            application = None
        # An id was given and it is unknown (or revoked): spend what checking its secret
        # would have. (No id at all, as in the body check after a Basic one, costs nothing.)
        if application is None and client_id:
            check_password(getattr(request, "client_secret", None) or "", _dummy_hash())
        return application
