from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save
        from oauth2_provider.models import get_access_token_model

        from apps.accounts import schema  # noqa: F401 - registers the OpenAPI extensions
        from apps.accounts.token_cache import forget_on_revocation

        post_delete.connect(forget_on_revocation, sender=get_access_token_model(),
                            dispatch_uid="token-cache-token-deleted")
        post_save.connect(forget_on_revocation, sender=get_user_model(),
                          dispatch_uid="token-cache-user-saved")
