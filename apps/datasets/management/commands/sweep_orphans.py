"""Remove store objects under datasets/ that no present dataset accounts for, once they are
older than ORCH_ORPHAN_AGE_S (an hour): see apps.datasets.sweep. Safe to run at any time
(cron, a systemd timer); an upload in progress is younger than that."""

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.datasets.storage import data_storage
from apps.datasets.sweep import orphans_sweep


class Command(BaseCommand):
    help = ("Remove objects under datasets/ in the store (ORCH_STORAGE_URL) with no dataset, "
            "older than ORCH_ORPHAN_AGE_S; prints each key it removes.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None, metavar="SECONDS",
                            help="only objects older than this (default ORCH_ORPHAN_AGE_S)")
        parser.add_argument("--dry-run", action="store_true", help="list, remove nothing")

    def handle(self, *args, older_than: int | None, dry_run: bool, **options):
        age = settings.ORPHAN_AGE_S if older_than is None else older_than
        removed = orphans_sweep(data_storage(), age, dry_run=dry_run)
        for key in removed:
            self.stdout.write(key)
        verb = "would remove" if dry_run else "removed"
        self.stderr.write(f"{verb} {len(removed)} orphan object(s) older than {age} s")
