"""Settings of the control plane, read from the environment (see env.template).

Every default makes the embedded set-up work with no server: SQLite under ``var/`` and the
embedded broker (one SQLite file, ``workers.sqlite_broker``). Production sets DATABASE_URL
(PostgreSQL) and ORCH_BROKER_URL (RabbitMQ), a SECRET_KEY and DEBUG=false.
"""

from datetime import timedelta
from pathlib import Path

import environ

from orchestration.secret_key import secret_key
from workers.contract import CONTROL_QUEUE, TASK_POLL_POOLS
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
    "ENUM_NAME_OVERRIDES": {"ProcessState": "apps.processes.models.STATE_CHOICES"},
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

# --- the control plane's Celery (shared broker settings: workers.broker_settings) ---------------
CELERY_BEAT_SCHEDULE = {
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
