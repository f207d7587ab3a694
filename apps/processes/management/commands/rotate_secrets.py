"""Re-seal every process's stored secrets with the newest key of ORCH_SECRETS_KEYS.

Run after a new key was put first in ORCH_SECRETS_KEYS everywhere (``NEW,OLD``); once it has
re-sealed everything, OLD can be dropped. Safe to run again: what the newest key already sealed
is left alone.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.processes.models import Process
from workers.secrets import SecretsError, key_count, reseal

SHOWN_IDS = 10


class Command(BaseCommand):
    help = ("Re-seal every process's secrets with the newest key of ORCH_SECRETS_KEYS, in "
            "batches; prints how many it re-sealed. Exit 1 when some open with no key.")

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500,
                            help="processes read and written per transaction (500)")

    def handle(self, *args, batch_size: int, **options):
        try:
            keys = key_count()
        except SecretsError as exc:
            raise CommandError(str(exc)) from None
        resealed = current = 0
        unopened: list[str] = []
        with_secrets = Process.objects.exclude(secret_env="").order_by("pk")
        last = None
        while True:
            batch = with_secrets.filter(pk__gt=last) if last else with_secrets
            rows = list(batch.values_list("pk", "secret_env")[:batch_size])
            if not rows:
                break
            last = rows[-1][0]
            with transaction.atomic():
                for pk, sealed in rows:
                    try:
                        new = reseal(sealed)
                    except SecretsError:
                        unopened.append(str(pk))
                        continue
                    if new is None:
                        current += 1
                        continue
                    # Only if unchanged since read: a concurrent writer's value is kept.
                    resealed += Process.objects.filter(pk=pk, secret_env=sealed).update(
                        secret_env=new)
        self.stdout.write(f"re-sealed {resealed} process(es) with the newest of {keys} key(s); "
                          f"{current} already were; {len(unopened)} open with no key")
        if unopened:
            shown = ", ".join(unopened[:SHOWN_IDS]) + (", ..." if len(unopened) > SHOWN_IDS
                                                       else "")
            raise CommandError(f"{len(unopened)} process(es) hold secrets that no key of "
                               f"ORCH_SECRETS_KEYS opens: {shown}")
