"""The control plane's settings plus the benchmark's baseline view (a plain DRF POST)."""

from orchestration.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]  # noqa: F405
ROOT_URLCONF = "bench.urls"
