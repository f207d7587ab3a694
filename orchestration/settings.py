"""Settings of the control plane, read from the environment (see env.template).

Every default makes the embedded set-up work with no server: SQLite under ``var/`` and the
embedded broker (one SQLite file, ``workers.sqlite_broker``). Production sets DATABASE_URL
(PostgreSQL) and ORCH_BROKER_URL (RabbitMQ), a SECRET_KEY and DEBUG=false.
"""

from datetime import timedelta
from pathlib import Path

import environ

from workers.environment import load_env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# The environment, then .env: the same source the Celery apps and the workers read.
load_env()
env = environ.Env()

# --- core ---------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str(
    "SECRET_KEY", default="insecure-development-key-set-SECRET_KEY-in-production-0123456789"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "oauth2_provider",
    "apps.accounts",
    "apps.pipelines",
    "apps.processes",
]

MIDDLEWARE = [
    "apps.accounts.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "orchestration.urls"
WSGI_APPLICATION = "orchestration.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- database -----------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web, consumer and beat share the file: wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# --- static files, locale -----------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ClientCredentialsAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.accounts.permissions.ReadWriteScope"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "apps.processes.pagination.ProcessPagination",
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "apps.accounts.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Bigger request bodies are refused with a 400 naming the body, before anything is parsed.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "Read pipelines and processes", "write": "Start and stop processes"},
    "DEFAULT_SCOPES": ["read", "write"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("ACCESS_TOKEN_EXPIRE_SECONDS", default=36000),
}

# --- orchestration ------------------------------------------------------------------------------
PIPELINES_DIR = env.path("ORCH_PIPELINES_DIR", default=BASE_DIR / "pipelines")
# Seconds between two rounds of the poll loop (every non-terminal process asked about once).
POLL_INTERVAL_S = env.float("ORCH_POLL_INTERVAL_S", default=2.0)
# A process whose handle its target no longer knows is LOST only after this long.
LOST_GRACE_S = env.float("ORCH_LOST_GRACE_S", default=120.0)
# A PENDING process not published after this long is published again (the outbox sweep).
REPUBLISH_AFTER_S = env.float("ORCH_REPUBLISH_AFTER_S", default=10.0)
# A worker, the control consumer or the beat that has not sent a heartbeat for this long is
# not counted as live (GET /api/health/ names the control consumer or the beat as down).
HEARTBEAT_INTERVAL_S = env.float("ORCH_HEARTBEAT_INTERVAL_S", default=10.0)
WORKER_TIMEOUT_S = env.float("ORCH_WORKER_TIMEOUT_S", default=3 * HEARTBEAT_INTERVAL_S)
# The control plane keeps at most this much of a process's log: its head and its end.
LOG_CAP_BYTES = env.int("ORCH_LOG_CAP_BYTES", default=8 * 1024 * 1024)
LOG_HEAD_BYTES = env.int("ORCH_LOG_HEAD_BYTES", default=64 * 1024)

# --- the control plane's Celery (shared broker settings come from workers.contract) -------------
CELERY_BEAT_SCHEDULE = {
    "poll-pools": {
        "task": "orchestration.control.poll_pools",
        "schedule": timedelta(seconds=POLL_INTERVAL_S),
        "options": {"queue": "control", "expires": POLL_INTERVAL_S * 2},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The beat's scheduler also writes the beat's heartbeat, which GET /api/health/ reads.
CELERY_BEAT_SCHEDULER = "orchestration.heartbeats:HeartbeatScheduler"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
