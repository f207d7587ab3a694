"""The token endpoint's client check, costing the same for an unknown client id as for a
known id with a wrong secret.

django-oauth-toolkit hashes the given secret only when the client id exists (about 0.2 s of
PBKDF2), so the answer's time told which ids exist. Here an unknown id hashes a dummy secret
with the same hasher, and both failures take as long."""

from __future__ import annotations

import secrets
from functools import cache

from django.contrib.auth.hashers import check_password, make_password
from oauth2_provider.oauth2_validators import OAuth2Validator


@cache
def _dummy_hash() -> str:
    return make_password(secrets.token_urlsafe(32))  # the hasher client secrets are saved with


class EvenTimeValidator(OAuth2Validator):
    def _load_application(self, client_id, request):
        application = super()._load_application(client_id, request)
        # An id was given and it is unknown: spend what checking its secret would have.
        # (No id at all, as in the body check after a Basic one, costs nothing either way.)
        if application is None and client_id:
            check_password(getattr(request, "client_secret", None) or "", _dummy_hash())
        return application
