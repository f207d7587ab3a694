"""Re-seal every process's stored secrets for itself and its pool, with the newest key of
ORCH_SECRETS_KEYS.

Run after a new key was put first in ORCH_SECRETS_KEYS everywhere (``NEW,OLD``); once it has
re-sealed everything, OLD can be dropped. Values sealed before secrets were bound to their
process are bound to the process whose row holds them. Safe to run again: what the newest key
already sealed for its process is left alone.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.processes.models import Process
from workers.secrets import SecretsError, key_count, reseal

SHOWN_IDS = 10


class Command(BaseCommand):
    help = ("Re-seal every process's secrets for itself and its pool with the newest key of "
            "ORCH_SECRETS_KEYS, in batches; prints how many it re-sealed. Exit 1 when some "
            "cannot be re-sealed (no key opens them, or they were sealed for another process).")

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500,
                            help="processes read and written per transaction (500)")

    def handle(self, *args, batch_size: int, **options):
        try:
            keys = key_count()
        except SecretsError as exc:
            raise CommandError(str(exc)) from None
        resealed = current = 0
        refused: list[str] = []
        with_secrets = Process.objects.exclude(secret_env="").order_by("pk")
        last = None
        while True:
            batch = with_secrets.filter(pk__gt=last) if last else with_secrets
            rows = list(batch.values_list("pk", "pool", "secret_env")[:batch_size])
            if not rows:
                break
            last = rows[-1][0]
            with transaction.atomic():
                for pk, pool, sealed in rows:
                    try:
                        new = reseal(sealed, process_id=pk, pool=pool)
                    except SecretsError:
                        refused.append(str(pk))
                        continue
                    if new is None:
                        current += 1
                        continue
                    # Only if unchanged since read: a concurrent writer's value is kept.
                    resealed += Process.objects.filter(pk=pk, secret_env=sealed).update(
                        secret_env=new)
        self.stdout.write(f"re-sealed {resealed} process(es) with the newest of {keys} key(s); "
                          f"{current} already were; {len(refused)} cannot be re-sealed")
        if refused:
            shown = ", ".join(refused[:SHOWN_IDS]) + (", ..." if len(refused) > SHOWN_IDS
                                                      else "")
            raise CommandError(f"{len(refused)} process(es) hold secrets that no key of "
                               f"ORCH_SECRETS_KEYS opens, or that were sealed for another "
                               f"process: {shown}")
