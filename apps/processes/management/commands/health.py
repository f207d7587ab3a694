import json

from django.core.management.base import BaseCommand

from apps.processes.health import PARTS, health_report

LABELS = {"database": "database", "broker": "broker", "control": "control consumer",
          "beat": "beat"}


class Command(BaseCommand):
    help = ("The health of every part, as GET /api/health/ reports it: exit 1 when the "
            "database, the broker, the control consumer or the beat is down.")

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        report = health_report()
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write("\n".join(lines(report)))
        if report["status"] != "ok":
            raise SystemExit(1)


def lines(report: dict) -> list[str]:
    verdict = report["status"]
    if report["down"]:
        verdict += " (down: " + ", ".join(LABELS[name] for name in report["down"]) + ")"
    out = [f"health: {verdict}"]
    for name in PARTS:
        part = report[name]
        state = {True: "ok", False: "DOWN", None: "unknown"}[part["ok"]]
        out.append(f"  {LABELS[name]:<17} {state:<8} {part['detail']}")
    for name, pool in sorted(report["pools"].items()):
        out.append(f"  pool {name:<12} ok       {pool['workers']} live worker(s), "
                   f"{pool['busy']}/{pool['capacity']} slots busy")
    for name in report["pools_down"]:
        out.append(f"  pool {name:<12} no live worker (its runs wait QUEUED)")
    for reason, refused in sorted(report.get("refused", {}).items()):
        out.append(f"  refused {refused['count']} x {reason} (last at {refused['last_seen']}: "
                   f"it {refused['last_detail']})")
    return out
