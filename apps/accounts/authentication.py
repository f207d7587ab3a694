"""Bearer tokens from the client-credentials grant.

django-oauth-toolkit gives such tokens no user (no person authorised them); the API acts as
the client's own user instead, so ownership and staff rights work the same for tokens and
for admin sessions. A token it accepted is believed for a few seconds without asking it
again (``apps.accounts.token_cache``, which states the bound on revocation)."""

from oauth2_provider.contrib.rest_framework import OAuth2Authentication

from apps.accounts import token_cache


class ClientCredentialsAuthentication(OAuth2Authentication):
    # The benchmark's baseline turns the cache off: django-oauth-toolkit's check alone.
    uses_cache = True

    def authenticate(self, request):
        # A token counts only in the Authorization header. oauthlib would also take one from
        # the query string (?access_token=, which lands in access logs) or a form body; with
        # the header present it reads the header alone.
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        if self.uses_cache and token and (known := token_cache.cached(token)) is not None:
            return known
        result = super().authenticate(request)
        if result is None:
            return None
        user, access_token = result
        if user is None and access_token.application is not None:
            user = access_token.application.user
        if user is None or not user.is_active:
            return None
        if self.uses_cache:
            token_cache.remember(token, user, access_token)
        return user, access_token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
