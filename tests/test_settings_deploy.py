"""Safe by default: DEBUG off unless set, a SECRET_KEY made once where one machine is served and
demanded where others are, and `manage.py check --deploy` clean with the production settings
env.template documents. Each case starts Django as its own process, the way the stack does."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = """
import django, json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestration.settings")
django.setup()
from django.conf import settings
print(json.dumps({"debug": settings.DEBUG, "key": settings.SECRET_KEY}))
"""


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """Nothing of this machine's settings: an empty .env, the key file under tmp_path."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    keep = {"PATH", "HOME", "LANG", "TMPDIR"}
    return {**{k: v for k, v in os.environ.items() if k in keep}, "ORCH_ENV_FILE": str(empty),
            "ORCH_SECRET_KEY_FILE": str(tmp_path / "var" / "secret-key"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", **settings}


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def read_settings(env: dict[str, str]) -> dict:
    import json

    done = run(["-c", SETTINGS], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_debug_is_off_unless_set(tmp_path):
    assert read_settings(clean_env(tmp_path))["debug"] is False
    assert read_settings(clean_env(tmp_path, DEBUG="true"))["debug"] is True


def test_a_local_set_up_makes_its_secret_key_once(tmp_path):
    first = read_settings(clean_env(tmp_path))["key"]
    key_file = tmp_path / "var" / "secret-key"
    assert len(first) >= 50
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert read_settings(clean_env(tmp_path))["key"] == first  # kept across restarts
    given = "a-given-key-" + "x" * 50
    assert read_settings(clean_env(tmp_path, SECRET_KEY=given))["key"] == given


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    env = clean_env(tmp_path, ALLOWED_HOSTS="orchestration.example.org")
    done = run(["manage.py", "check"], env)
    assert done.returncode != 0
    assert "SECRET_KEY is not set" in done.stderr
    assert not (tmp_path / "var" / "secret-key").exists()


def production_settings() -> dict[str, str]:
    """The settings env.template's production block names (commented out there)."""
    text = (ROOT / "env.template").read_text()
    block = text.split("# --- production: HTTPS", 1)[1].split("\n# ---", 1)[0]
    found = dict(re.findall(r"^# ([A-Z_]+)=(\S+)", block, flags=re.MULTILINE))
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER"} <= set(found), found
    return found


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    env = clean_env(tmp_path, **production_settings(), DEBUG="false",
                    ALLOWED_HOSTS="orchestration.example.org",
                    SECRET_KEY="K7pQ2vX9-zR4mW8nB3cY6tF1hJ5sL0dG_aE7uI2oP9kV4xN8qM3wZ6rT1yH5bC0")
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_warns_without_them(tmp_path):
    """The test above passes because of those settings, not because the check is silent."""
    env = clean_env(tmp_path, DEBUG="false", ALLOWED_HOSTS="orchestration.example.org",
                    SECRET_KEY="K7pQ2vX9-zR4mW8nB3cY6tF1hJ5sL0dG_aE7uI2oP9kV4xN8qM3wZ6rT1yH5bC0")
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert done.returncode != 0
    assert "security.W004" in done.stderr
    assert "security.W008" in done.stderr
