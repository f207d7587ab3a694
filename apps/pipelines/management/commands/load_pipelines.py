from django.core.management.base import BaseCommand

from apps.pipelines.services import pipelines_load


class Command(BaseCommand):
    help = "Load pipelines/*.yaml and pipelines/pools/*.yaml into the database."

    def add_arguments(self, parser):
        parser.add_argument("--dir", help="a pipelines directory other than ORCH_PIPELINES_DIR")
        parser.add_argument("--strict", action="store_true", help="exit 1 if any file is broken")

    def handle(self, *args, dir=None, strict=False, **options):
        report = pipelines_load(dir)
        for name in report.loaded:
            self.stdout.write(f"loaded    {name}")
        for name in report.unchanged:
            self.stdout.write(f"unchanged {name}")
        for name in report.retired:
            self.stdout.write(f"retired   {name} (its file is gone)")
        for file_name, reason in report.errors.items():
            self.stderr.write(f"error     {file_name}: {reason}")
        if strict and report.errors:
            raise SystemExit(1)
