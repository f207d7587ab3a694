"""Bearer tokens from the client-credentials grant.

django-oauth-toolkit gives such tokens no user (no person authorised them); the API acts as
the client's own user instead, so ownership and staff rights work the same for tokens and
for admin sessions."""

from oauth2_provider.contrib.rest_framework import OAuth2Authentication


class ClientCredentialsAuthentication(OAuth2Authentication):
    def authenticate(self, request):
        # A token counts only in the Authorization header. oauthlib would also take one from
        # the query string (?access_token=, which lands in access logs) or a form body; with
        # the header present it reads the header alone.
        scheme = request.META.get("HTTP_AUTHORIZATION", "").split(" ", 1)[0]
        if scheme.lower() != "bearer":
            return None
        result = super().authenticate(request)
        if result is None:
            return None
        user, token = result
        if user is None and token.application is not None:
            user = token.application.user
        if user is None or not user.is_active:
            return None
        return user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
