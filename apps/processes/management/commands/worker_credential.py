"""python manage.py worker_credential --pool POOL --worker NAME@HOST: the keys of one worker
(``workers.credential``), printed as the line to put in its environment (or, without the
``ORCH_WORKER_CREDENTIAL=``, in the file ``ORCH_WORKER_CREDENTIAL_FILE`` names), and the
pool's secrets keys (``ORCH_POOL_SECRETS_KEYS=``, derived: ``workers.secrets``).

It holds the pool's keys and the worker's own key, derived from every master signing key, and
no master key: a worker given it verifies its pool's job specs and signs its events, and can
sign nothing for another pool nor in another worker's name. After a rotation (a new master key
put first), make the credentials again and restart the workers before the control plane signs
with the new key."""

import contextlib

from django.core.management.base import BaseCommand, CommandError

from apps.pipelines.models import Pool
from workers import secrets
from workers.credential import CREDENTIAL_ENV, derive
from workers.signing import SignatureError, master_keys, worker_host


class Command(BaseCommand):
    help = ("Print the credential of one worker (ORCH_WORKER_CREDENTIAL=...): its pool's keys "
            "and its own, never a master key.")

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True,
                            help="the pool the worker serves (a file of pipelines/pools/)")
        parser.add_argument("--worker", required=True,
                            help="the worker's identity NAME@HOST: its --name (by default its "
                            "pool's name) and its host's short name, as in its Celery node "
                            "name")

    def handle(self, *args, pool, worker, **options):
        if not Pool.objects.filter(name=pool).exists():
            known = ", ".join(Pool.objects.values_list("name", flat=True)) or "none loaded"
            raise CommandError(f"--pool: no pool named {pool!r} (pools are the files of "
                               f"pipelines/pools/, loaded by manage.py load_pipelines; "
                               f"known: {known})")
        if not worker_host(worker) or any(c.isspace() or c == "\0" for c in worker):
            raise CommandError(f"--worker: expected NAME@HOST (the worker's --name, by default "
                               f"its pool's name, then @ and its host's short name), not "
                               f"{worker!r}")
        try:
            held = derive(pool, worker, master_keys(create=True))
        except SignatureError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{CREDENTIAL_ENV}={held.to_text()}")
        # The pool's secrets keys (never a master key), when the control plane seals any.
        with contextlib.suppress(secrets.SecretsError):
            self.stdout.write(f"{secrets.POOL_KEYS_VAR}={secrets.pool_keys_text(pool)}")
