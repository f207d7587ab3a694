"""The OAuth2 routes the product uses: a client-credentials token and its revocation. The
names are django-oauth-toolkit's own (``oauth2_provider:token``, ``:revoke-token``)."""

from django.urls import path

from apps.accounts.token_view import RevokeTokenView, TokenView

app_name = "oauth2_provider"

urlpatterns = [
    path("token/", TokenView.as_view(), name="token"),
    path("revoke_token/", RevokeTokenView.as_view(), name="revoke-token"),
]
