"""Dataset throughput: one file uploaded with ``curl -F file=@...`` to POST /api/datasets/
and downloaded again from .../content/, through gunicorn as deploy/stack.sh runs it (the
control plane's web server: 2 worker processes of 4 threads), on the bench's own PostgreSQL
database; and the web server's memory while it happens (VmHWM, the peak resident memory of
each gunicorn worker process, read from /proc).

    .venv/bin/python -m bench.datasets --size-mib 1024

The store is a file store in the run's directory (the embedded default's kind); the upload's
temporary file goes to the run's directory too (TMPDIR). curl streams the file from disk and
writes the download to disk, as a user's would; the download is checked byte for byte (its
SHA-256) against the file uploaded. A second download to /dev/null gives the server's rate
without the client's disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import setup, stack, usage
from testbed.services import Service, free_port, http_status

CLIENT = "bench-datasets"
WRITE_CHUNK = 8 * 1024 * 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.datasets",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the file's size in MiB")
    parser.add_argument("--database", default="orchestration_bench",
                        help="the bench's own PostgreSQL database (made if missing)")
    parser.add_argument("--vhost", default="orchestration-bench",
                        help="the bench's own RabbitMQ vhost (made if missing)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's directory (logs, file, store) afterwards")
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(f"bench.datasets: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with setup.run_dir("orchestration-bench-datasets-", say, args.keep) as run_dir:
        say(f"{args.size_mib} MiB; files and logs in {run_dir}")
        results = measure(args, run_dir)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def measure(args: argparse.Namespace, run_dir: Path) -> dict:
    (run_dir / "tmp").mkdir()
    size = args.size_mib * 1024 * 1024
    env = {**os.environ, **setup.services_env(args.database, args.vhost)}
    env.update(
        DEBUG="false",
        ORCH_STORAGE_URL=f"file://{run_dir / 'storage'}",
        ORCH_DATASET_MAX_BYTES=str(size),
        TMPDIR=str(run_dir / "tmp"),
        PYTHONUNBUFFERED="1",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    setup.django_setup(env)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    client_id, secret = client_create()

    say(f"writing the {args.size_mib} MiB file")
    source = run_dir / "source.bin"
    digest = random_file(source, size)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = stack.web(env, run_dir / "logs", port).start()
    try:
        web.wait_for(lambda: http_status(f"{base}/api/health/") in (200, 503), 60,
                      "the API to answer")
        token = setup.token_get(base, client_id, secret)
        auth = f"Authorization: Bearer {token}"
        warm_up(base, auth)
        before = peaks(web)

        say("uploading")
        started = time.perf_counter()
        answer = curl(["-F", f"file=@{source}", f"{base}/api/datasets/"], auth)
        upload_s = time.perf_counter() - started
        dataset = json.loads(answer)
        assert dataset["sha256"] == digest, dataset  # noqa: S101 - the bench checks itself
        after_upload = peaks(web)

        say("downloading")
        target = run_dir / "download.bin"
        started = time.perf_counter()
        curl(["-o", str(target), f"{base}/api/datasets/{dataset['id']}/content/"], auth)
        download_s = time.perf_counter() - started
        assert sha256_of(target) == digest, "the download differs"  # noqa: S101
        say("downloading to /dev/null (the server's rate, without the client's disk)")
        started = time.perf_counter()
        curl(["-o", os.devnull, f"{base}/api/datasets/{dataset['id']}/content/"], auth)
        discard_s = time.perf_counter() - started
        after_download = peaks(web)
        curl(["-X", "DELETE", f"{base}/api/datasets/{dataset['id']}/"], auth)
    finally:
        web.stop()
    mib = size / 1024 / 1024
    return {
        "size_mib": args.size_mib,
        "machine": {"cpus": os.cpu_count()},
        "upload": {"seconds": round(upload_s, 2), "mib_per_s": round(mib / upload_s, 1)},
        "download": {"seconds": round(download_s, 2), "mib_per_s": round(mib / download_s, 1)},
        "download_to_null": {"seconds": round(discard_s, 2),
                             "mib_per_s": round(mib / discard_s, 1)},
        "web_workers_vmhwm_kib": {"before": before, "after_upload": after_upload,
                                  "after_download": after_download},
        "web_worker_peak_mib": round(max(after_download.values()) / 1024, 1),
        "web_worker_peak_growth_mib": round(
            max(after_download[pid] - before.get(pid, 0) for pid in after_download) / 1024, 1),
    }


def client_create() -> tuple[str, str]:
    """An OAuth2 client that is an operator of a team of its own."""
    from oauth2_provider.models import get_application_model

    from apps.teams.models import Team
    from apps.teams.services import team_client_add

    client_id, secret = setup.client_create(CLIENT)
    team, _ = Team.objects.get_or_create(slug=CLIENT, defaults={"name": CLIENT})
    team_client_add(team, get_application_model().objects.get(client_id=client_id))
    return client_id, secret


def random_file(path: Path, size: int) -> str:
    """``size`` random bytes at ``path``; their SHA-256."""
    sha256 = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(WRITE_CHUNK, left))
            sha256.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return sha256.hexdigest()


def sha256_of(path: Path) -> str:
    sha256 = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(WRITE_CHUNK):
            sha256.update(chunk)
    return sha256.hexdigest()


def curl(arguments: list[str], auth: str) -> bytes:
    program = shutil.which("curl")
    if program is None:
        raise SystemExit("bench.datasets needs curl: apt-get install curl")
    done = subprocess.run([program, "-sS", "--fail-with-body", "-H", auth, *arguments],
                          capture_output=True, check=False)
    if done.returncode:
        raise RuntimeError(f"curl {arguments[-1]}: {done.stderr.decode()} {done.stdout[:500]!r}")
    return done.stdout


def warm_up(base: str, auth: str) -> None:
    """Every worker process has served a few requests (imports done), as before a real
    upload: the memory measured after is the upload's."""
    for _ in range(8):
        curl([f"{base}/api/datasets/"], auth)


def peaks(web: Service) -> dict[int, int]:
    """VmHWM (peak resident memory, KiB) of each gunicorn worker process of ``web``."""
    found = {}
    for pid in usage.process_tree(web.pid):
        if pid == web.pid:
            continue
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                found[pid] = int(line.split()[1])
    return found


def table(results: dict) -> str:
    hwm = results["web_workers_vmhwm_kib"]
    worst = {name: round(max(values.values()) / 1024, 1) for name, values in hwm.items()}
    return "\n".join([
        f"dataset of {results['size_mib']} MiB through gunicorn "
        f"({results['machine']['cpus']} CPUs)",
        f"  upload   (curl -F file=@...)   {results['upload']['seconds']:>8} s  "
        f"{results['upload']['mib_per_s']:>8} MiB/s",
        f"  download (.../content/)        {results['download']['seconds']:>8} s  "
        f"{results['download']['mib_per_s']:>8} MiB/s",
        f"  download to /dev/null          {results['download_to_null']['seconds']:>8} s  "
        f"{results['download_to_null']['mib_per_s']:>8} MiB/s",
        f"  web worker peak RSS (VmHWM)    before {worst['before']} MiB, after the upload "
        f"{worst['after_upload']} MiB, after the download {worst['after_download']} MiB "
        f"(growth {results['web_worker_peak_growth_mib']} MiB)",
    ])


if __name__ == "__main__":
    sys.exit(main())
