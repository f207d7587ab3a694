"""Settings of the control plane, read from the environment (see env.template).

Every default makes the embedded set-up work with no server: SQLite under ``var/`` and the
embedded broker (one SQLite file, ``workers.sqlite_broker``). Production sets DATABASE_URL
(PostgreSQL) and ORCH_BROKER_URL (RabbitMQ), a SECRET_KEY and DEBUG=false.
"""

from datetime import timedelta
from pathlib import Path

import environ

from orchestration.secret_key import secret_key
from workers.contract import CONTROL_QUEUE, TASK_HOUSEKEEPING, TASK_POLL_POOLS
from workers.environment import load_env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# The environment, then .env: the same source the Celery apps and the workers read.
load_env()
env = environ.Env()

# --- core ---------------------------------------------------------------------------------------
# Off unless set: an error never answers with the debug page (it shows headers and settings).
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
# Unset: generated once into var/secret-key, unless ALLOWED_HOSTS serves other hosts
# (production), which refuses to start without one (orchestration/secret_key.py).
SECRET_KEY = secret_key(
    env.str("SECRET_KEY", default=""), ALLOWED_HOSTS,
    Path(env.str("ORCH_SECRET_KEY_FILE", default=str(VAR_DIR / "secret-key"))),
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS behind a proxy (env.template's production block; `manage.py check --deploy`) ----------
# Only behind a proxy that sets this header itself: HTTP_X_FORWARDED_PROTO,https
if proxy_ssl_header := env.tuple("SECURE_PROXY_SSL_HEADER", default=()):
    SECURE_PROXY_SSL_HEADER = proxy_ssl_header
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^api/health/$"]  # a load balancer's plain-HTTP health check
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

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
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: no CDN
    "apps.accounts",
    "apps.pipelines",
    "apps.processes",
    "apps.teams",
    "apps.audit",
    "apps.datasets",
    "apps.webhooks",
    "apps.sweeps",
]

MIDDLEWARE = [
    "apps.accounts.middleware.BodySizeLimitMiddleware",
    "apps.accounts.middleware.JSONErrorMiddleware",
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
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend",
                           "apps.teams.backends.TeamRoleBackend"]  # team roles -> permissions

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
# Times to the second (2026-12-03 12:15:33) in the admin, not "Dec. 3, 2026, 12:15 p.m.".
FORMAT_MODULE_PATH = ["orchestration.formats"]

# --- admin --------------------------------------------------------------------------------------
# Where the admin's "View site" leads: the API's documentation, unless set.
ADMIN_SITE_URL = env.str("ORCH_ADMIN_SITE_URL", default="/api/docs/")

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
        "apps.accounts.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "apps.accounts.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Per client (its OAuth2 application) and scope, counted in the database so gunicorn's
    # workers share one count (apps/accounts/throttling.py): over the rate, 429 + Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["apps.accounts.throttling.ClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "read": env.str("ORCH_THROTTLE_RATE_READ", default="60000/min"),
        "write": env.str("ORCH_THROTTLE_RATE_WRITE", default="30000/min"),
    },
    # Escaped non-ASCII: no string a client sent can make an answer unwritable.
    "UNICODE_JSON": False,
}
# Bigger request bodies are refused with a JSON 413 naming the body, before anything is parsed.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# A config (used_config, secrets) written as JSON is at most this big; 32 levels deep at most.
CONFIG_MAX_BYTES = env.int("ORCH_CONFIG_MAX_BYTES", default=64 * 1024)

# --- datasets -----------------------------------------------------------------------------------
# Where datasets are kept: file:///absolute/path, or s3://bucket/prefix (endpoint from
# ORCH_S3_ENDPOINT_URL or AWS_ENDPOINT_URL, credentials from boto3's chain).
DATA_STORAGE_URL = env.str("ORCH_STORAGE_URL", default=f"file://{VAR_DIR / 'storage'}")
# The largest file POST /api/datasets/ keeps; a bigger one is a 413 naming this. That route's
# body may hold this plus MAX_REQUEST_BODY_BYTES (the rest of its form).
DATASET_MAX_BYTES = env.int("ORCH_DATASET_MAX_BYTES", default=10 * 1024**3)
# What a process's job may leave in its output dir, in bytes: the worker stores that much and
# names what is over it in the process's message.
OUTPUT_MAX_BYTES = env.int("ORCH_OUTPUT_MAX_BYTES", default=1024**3)
# Where workers reach the control plane when their pool says ``data_access: url`` (a Slurm
# submission node with neither the store's path nor its bucket): the base of the signed URLs
# its job specs carry, and how long one is good for (a job may wait in a queue for days).
PUBLIC_URL = env.str("ORCH_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
DATA_URL_EXPIRES_S = env.int("ORCH_DATA_URL_EXPIRES_S", default=7 * 24 * 3600)
# Store objects under datasets/ with no dataset row (a crash between storing an upload and
# recording it), older than this, are removed by ``manage.py sweep_orphans``.
ORPHAN_AGE_S = env.int("ORCH_ORPHAN_AGE_S", default=3600)

# The OpenAPI 3 schema (GET /api/schema/) and Swagger UI (/api/docs/), described on the views.
SPECTACULAR_SETTINGS = {
    "TITLE": "orchestration API",
    "DESCRIPTION": (
        "Run pipelines (processes) on local processes, Docker, Slurm and AWS ECS.\n\n"
        "Every call but `GET /api/health/` needs a bearer token of the OAuth2 "
        "client-credentials grant: `POST /o/token/` with the client id and secret (HTTP Basic) "
        "and `grant_type=client_credentials` (optional `scope`: `read`, `write` or both) "
        "answers `access_token`; send it as `Authorization: Bearer <token>`. A token needs "
        "`read` to read and `write` to start or stop a process.\n\n"
        "Every error answer is a JSON object (see the `Error` schema); a validation error "
        "names each field it refuses."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    # The states of every model field that uses them share one enum in the schema.
    "ENUM_NAME_OVERRIDES": {"ProcessState": "apps.processes.models.STATE_CHOICES",
                            "WebhookEvents": "apps.webhooks.models.WEBHOOK_EVENTS"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.accounts.schema.add_token_endpoint",  # /o/token/ is not a DRF view
    ],
}

OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "Read pipelines and processes", "write": "Start and stop processes"},
    "DEFAULT_SCOPES": ["read", "write"],
    # One hour: a leaked token is good for that long at most; clients ask for a new one.
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("ACCESS_TOKEN_EXPIRE_SECONDS", default=3600),
    # An unknown client id costs the same hashing as a wrong secret (no id enumeration).
    "OAUTH2_VALIDATOR_CLASS": "apps.accounts.oauth_validator.EvenTimeValidator",
    # RFC 9700 (OAuth 2.0 security BCP), what `check --deploy` asks: tokens kept hashed at rest,
    # accepted in the header only, no implicit or password grant, https redirect URIs only.
    **{f"COMPLIANT_BCP_RFC9700_{gate}": True for gate in (
        "IMPLICIT_GRANT", "PASSWORD_GRANT", "PKCE_METHOD", "ACCESS_TOKEN_TRANSPORT",
        "AUTHZ_RESPONSE_ISS", "TOKEN_STORAGE")},
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
}
# POST /o/token/: this many failed client authentications per client id or per address in a
# window of this many seconds, then 429 with Retry-After until the window ends.
TOKEN_FAILURE_LIMIT = env.int("ORCH_TOKEN_FAILURE_LIMIT", default=10)
TOKEN_FAILURE_WINDOW_S = env.int("ORCH_TOKEN_FAILURE_WINDOW_S", default=60)
# A bearer token django-oauth-toolkit found valid is believed this long by the web process
# that checked it (apps.accounts.token_cache): a token revoked, or a client cut off, within
# that time still works until it ends; an expired token fails at once. 0: check every time.
TOKEN_CACHE_TTL_S = env.float("ORCH_TOKEN_CACHE_TTL_S", default=5.0)

# --- orchestration ------------------------------------------------------------------------------
PIPELINES_DIR = env.path("ORCH_PIPELINES_DIR", default=BASE_DIR / "pipelines")
# Seconds between two rounds of the poll loop (every non-terminal process asked about once).
POLL_INTERVAL_S = env.float("ORCH_POLL_INTERVAL_S", default=2.0)
# A process whose handle its target no longer knows is LOST only after this long.
LOST_GRACE_S = env.float("ORCH_LOST_GRACE_S", default=120.0)
# The relay (apps.processes.relay, in the control consumer) admits and publishes when a
# commit wakes it (PostgreSQL's NOTIFY) and at the latest every this many seconds (the only
# wake-up on SQLite); it sends at most this many job specs per batch, then waits at most
# this long for the broker's confirms of a batch.
RELAY_INTERVAL_S = env.float("ORCH_RELAY_INTERVAL_S", default=1.0)
RELAY_BATCH = env.int("ORCH_RELAY_BATCH", default=200)
RELAY_CONFIRM_TIMEOUT_S = env.float("ORCH_RELAY_CONFIRM_TIMEOUT_S", default=10.0)
# A POST over its team's waiting quota on a pool is a 429 asking to come back after this.
QUOTA_RETRY_AFTER_S = env.int("ORCH_QUOTA_RETRY_AFTER_S", default=30)
# The most runs one POST /api/sweeps/ may create; a bigger sweep is a 413 naming this.
SWEEP_MAX_SIZE = env.int("ORCH_SWEEP_MAX_SIZE", default=10_000)
# A worker, the control consumer or the beat that has not sent a heartbeat for this long is
# not counted as live (GET /api/health/ names the control consumer or the beat as down).
HEARTBEAT_INTERVAL_S = env.float("ORCH_HEARTBEAT_INTERVAL_S", default=10.0)
WORKER_TIMEOUT_S = env.float("ORCH_WORKER_TIMEOUT_S", default=3 * HEARTBEAT_INTERVAL_S)
# The control plane keeps at most this much of a process's log: its head and its end.
LOG_CAP_BYTES = env.int("ORCH_LOG_CAP_BYTES", default=8 * 1024 * 1024)
LOG_HEAD_BYTES = env.int("ORCH_LOG_HEAD_BYTES", default=64 * 1024)
# Finished processes (with their events, logs and outputs) are purged this many days after they
# ended, on the beat, RETENTION_BATCH per transaction; 0 keeps everything.
RETENTION_DAYS = env.float("ORCH_RETENTION_DAYS", default=0)
RETENTION_BATCH = env.int("ORCH_RETENTION_BATCH", default=500)
# How often the beat asks for housekeeping (retention, webhook deliveries due).
HOUSEKEEPING_INTERVAL_S = env.float("ORCH_HOUSEKEEPING_INTERVAL_S", default=5.0)
# Webhooks: each send waits this long for an answer; a failed delivery is retried with backoff
# (WEBHOOK_BACKOFF_S doubling, at most 10 min) for WEBHOOK_RETRY_FOR_S, then given up. Each
# housekeeping round sends for at most WEBHOOK_ROUND_S. Receivers on private or local addresses
# are refused unless WEBHOOK_ALLOW_PRIVATE.
WEBHOOK_TIMEOUT_S = env.float("ORCH_WEBHOOK_TIMEOUT_S", default=5.0)
WEBHOOK_BACKOFF_S = env.float("ORCH_WEBHOOK_BACKOFF_S", default=5.0)
WEBHOOK_RETRY_FOR_S = env.float("ORCH_WEBHOOK_RETRY_FOR_S", default=24 * 3600.0)
WEBHOOK_ROUND_S = env.float("ORCH_WEBHOOK_ROUND_S", default=4.0)
WEBHOOK_ALLOW_PRIVATE = env.bool("ORCH_WEBHOOK_ALLOW_PRIVATE", default=False)
# The bearer token a Prometheus scraper presents at /metrics; unset, /metrics is a 404.
METRICS_TOKEN = env.str("ORCH_METRICS_TOKEN", default="")

# --- the control plane's Celery (shared broker settings: workers.broker_settings) ---------------
CELERY_BEAT_SCHEDULE = {
    "housekeeping": {
        "task": TASK_HOUSEKEEPING,
        "schedule": timedelta(seconds=HOUSEKEEPING_INTERVAL_S),
        "options": {"queue": CONTROL_QUEUE, "expires": HOUSEKEEPING_INTERVAL_S},
    },
    "poll-pools": {
        "task": TASK_POLL_POOLS,
        "schedule": timedelta(seconds=POLL_INTERVAL_S),
        "options": {"queue": CONTROL_QUEUE, "expires": POLL_INTERVAL_S * 2},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The beat's scheduler also writes the beat's heartbeat, which GET /api/health/ reads.
CELERY_BEAT_SCHEDULER = "orchestration.heartbeats:HeartbeatScheduler"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Masks any secret value this process sealed or opened, should one reach a log line.
    "filters": {"mask_secrets": {"()": "workers.log_masking.SecretMaskingFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["mask_secrets"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
