"""python manage.py create_client NAME: an OAuth2 client-credentials client, printed ready
for curl (``curl -u ID:SECRET`` does the Basic encoding; no base64 by hand)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_application_model


class Command(BaseCommand):
    help = "Create an OAuth2 client (client-credentials grant) and print its id and secret."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--staff", action="store_true",
                            help="the client sees and stops every process, not only its own")
        parser.add_argument("--format", choices=["text", "env", "json"], default="text")
        parser.add_argument("--url", default="http://127.0.0.1:8000",
                            help="the base URL shown in the curl example")

    def handle(self, *args, name, staff, format, url, **options):
        Application = get_application_model()
        if Application.objects.filter(name=name).exists():
            raise CommandError(f"a client named {name!r} exists already; pick another name")
        username = f"client-{name}"
        # Never adopt an existing user: it may be staff (or anyone's) and the new client
        # would inherit its rights and its processes.
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"a user named {username!r} exists already; pick another client "
                               "name, or delete that user first")
        user = get_user_model().objects.create(username=username, is_staff=staff)
        secret = generate_client_secret()
        app = Application.objects.create(
            name=name,
            user=user,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            client_secret=secret,  # hashed on save: this is the only time it is shown
        )
        if format == "env":
            self.stdout.write(f"export ORCH_CLIENT_ID={app.client_id}\n"
                              f"export ORCH_CLIENT_SECRET={secret}")
        elif format == "json":
            import json

            self.stdout.write(json.dumps({"client_id": app.client_id, "client_secret": secret}))
        else:
            self.stdout.write(
                f"client_id:     {app.client_id}\nclient_secret: {secret}\n\n"
                "Get a token (the secret is shown only now; keep it):\n"
                f"  curl -s -u '{app.client_id}:{secret}' -d grant_type=client_credentials "
                f"{url}/o/token/"
            )
