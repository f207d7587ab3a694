# Clients are django-oauth-toolkit's Applications; each is tied to a user of its own.
