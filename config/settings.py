"""Settings, read from the environment top to bottom.

Every variable has a default that works on one machine with nothing installed: SQLite and a
filesystem Celery broker under ``var/``, a secret key generated into ``var/``. Production sets
``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` (Redis), ``SECRET_KEY`` and ``DEBUG=false``.
"""
import secrets
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
VAR_DIR = Path(env("PS_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)


def _local_secret_key() -> str:
    """A key kept in var/ so sessions survive restarts; only ever used with DEBUG on."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


if DEBUG:
    SECRET_KEY = env("SECRET_KEY", default=None) or _local_secret_key()
else:
    SECRET_KEY = env("SECRET_KEY")  # required: raises ImproperlyConfigured when missing

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
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "annotation",
    "training",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Next item and submit for token clients, without DRF. Ahead of the three below, whose work on these two calls
    # it does itself: the CSP header (the same policy, built once: django-csp builds it on every response, a sixth
    # of the hot path's web CPU), axes has none (it watches logins), the text boundary's (its routes take only
    # short ids and no query string, its bodies go through the boundary's JSON reader, an over-large body goes on
    # to the boundary's 413).
    "annotation.api.hotpath.RaterHotPathMiddleware",
    "csp.middleware.CSPMiddleware",  # one policy on every response: pages, login, admin, API docs, errors
    "axes.middleware.AxesMiddleware",  # a locked-out login gets the lockout page
    # Paths, query strings and form fields pass the text boundary before a view reads them (its refusals
    # still get the headers of the middleware above).
    "annotation.api.boundary.TextBoundaryMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
# A kept connection is checked before a request reuses it: after a database restart the first request of each
# connection reconnects instead of failing.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", env.bool("CONN_HEALTH_CHECKS", default=True))
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Django's backend, checking a kept connection without a round trip (config/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    # Server-side parameters, and psycopg preparing a statement once a connection has run it
    # ``DB_PREPARE_THRESHOLD`` times (Django turns preparing off unless asked): the rater hot path's
    # statements are then parsed and planned once per connection instead of on every request.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options.setdefault("server_side_binding", env.bool("DB_SERVER_SIDE_BINDING", default=True))
    options.setdefault("prepare_threshold", env.int("DB_PREPARE_THRESHOLD", default=5))
    # A server that cannot be reached fails a connection attempt after this long instead of never.
    options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=10))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker) share the file: wait for locks instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is locked out for AXES_COOLOFF_MINUTES, the right password included; a success resets the count.
AUTHENTICATION_BACKENDS = ["frontend.auth.ThrottledLoginBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_MINUTES = env.int("AXES_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "frontend/locked_out.html"
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if SESSION_COOKIE_SECURE:
    # Served over HTTPS behind a proxy that terminates TLS: trust its X-Forwarded-Proto (set it there, and strip it
    # from clients), and tell browsers to come back over HTTPS only.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # usually the proxy's job
# The one Content-Security-Policy (django-csp), on every response: no inline script or style anywhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"], "script-src": ["'self'"], "style-src": ["'self'"], "img-src": ["'self'", "data:"],
        "font-src": ["'self'"], "connect-src": ["'self'"], "object-src": ["'none'"], "base-uri": ["'none'"],
        "form-action": ["'self'"], "frame-ancestors": ["'none'"],
    },
}

REST_FRAMEWORK = {
    # DRF's parsers, with every body through the text boundary (annotation.boundary)
    "DEFAULT_PARSER_CLASSES": [
        "annotation.api.boundary.JSONParser",
        "annotation.api.boundary.FormParser",
        "annotation.api.boundary.MultiPartParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotation.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "annotation.api.negotiation.JSONFirstNegotiation",
    "DEFAULT_SCHEMA_CLASS": "annotation.api.schema.AutoSchema",  # every status code each operation answers
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "annotation.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Preference Studio API",
    "DESCRIPTION": "Annotation, quality, export and training API (v1).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # served locally: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"BattleStatusEnum": "training.models.Battle.Status"},
}

# --- Preference Studio -----------------------------------------------------------------------
PS_DATA_DIR = Path(env("PS_DATA_DIR", default=str(VAR_DIR / "data")))
PS_LEASE_SECONDS = env.int("PS_LEASE_SECONDS", default=600)
PS_MAX_TEXT_CHARS = env.int("PS_MAX_TEXT_CHARS", default=100_000)
PS_IMPORT_BATCH_SIZE = env.int("PS_IMPORT_BATCH_SIZE", default=2000)
# The largest file one import takes (bytes): an upload over it is refused with a 413 before it is read.
PS_IMPORT_MAX_BYTES = env.int("PS_IMPORT_MAX_BYTES", default=256 * 1024 * 1024)
# How long a web process may reuse an API token's user without asking the database (0: never). A deleted
# token or a deactivated user stops working in the process that made the change at once, elsewhere
# within this many seconds.
PS_TOKEN_CACHE_SECONDS = env.float("PS_TOKEN_CACHE_SECONDS", default=30.0)
# A running training run whose worker sent no heartbeat for this long is marked failed (the worker died).
PS_RUN_HEARTBEAT_SECONDS = env.float("PS_RUN_HEARTBEAT_SECONDS", default=2.0)
PS_RUN_STALE_SECONDS = env.int("PS_RUN_STALE_SECONDS", default=300)
PS_RUN_REAP_SECONDS = env.float("PS_RUN_REAP_SECONDS", default=60.0)  # how often beat sends the reaper
# A running training task keeps its engine going through a database outage this long, keeping its events in
# memory and writing them when the database answers; a longer outage fails the run.
PS_RUN_DB_OUTAGE_SECONDS = env.float("PS_RUN_DB_OUTAGE_SECONDS", default=60.0)
# Messages the broker did not take on commit are sent again this often, by beat (training.outbox).
PS_OUTBOX_RESEND_SECONDS = env.float("PS_OUTBOX_RESEND_SECONDS", default=10.0)
# The AI judge's OpenAI-compatible chat endpoint (optional): base URL (".../v1"), key and model name.
PS_JUDGE_API_BASE = env("PS_JUDGE_API_BASE", default="")
PS_JUDGE_API_KEY = env("PS_JUDGE_API_KEY", default="")
PS_JUDGE_MODEL = env("PS_JUDGE_MODEL", default="")
PS_JUDGE_TIMEOUT = env.float("PS_JUDGE_TIMEOUT", default=60.0)
# The queue an arena battle's answers from a base model or checkpoint go to (they need the model's hardware; an
# endpoint's go to `default`). A worker of its own on it keeps battles from waiting behind training runs.
PS_ARENA_QUEUE = env("PS_ARENA_QUEUE", default="training")

# --- Celery ------------------------------------------------------------------------------------
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem"):
    for sub in ("out", "processed", "control"):
        (_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "out"),
        "data_folder_out": str(_BROKER_DIR / "out"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers unacknowledged tasks after this timeout: keep it longer than any run.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=48 * 3600)
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "training.tasks.run_train": {"queue": "training"},  # a run names its own pool's queue when sent
    "training.tasks.checkpoint_merge_task": {"queue": "training"},
    "training.tasks.checkpoint_evaluate_task": {"queue": "training"},
    # project jobs and arena battles: their services name the queue (training for a model, default for an endpoint)
    "training.reap_stale_runs": {"queue": "default"},
    "training.outbox_resend": {"queue": "default"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
# `celery -A config beat` sends these to the default queue, so they run on the short-task workers: never behind
# a run, and while every training worker is gone. A tick that waited longer than its period is dropped.
CELERY_BEAT_SCHEDULE = {
    "training-reap-stale-runs": {
        "task": "training.reap_stale_runs", "schedule": PS_RUN_REAP_SECONDS,
        "options": {"queue": "default", "expires": PS_RUN_REAP_SECONDS},
    },
    "training-outbox-resend": {
        "task": "training.outbox_resend", "schedule": PS_OUTBOX_RESEND_SECONDS,
        "options": {"queue": "default", "expires": PS_OUTBOX_RESEND_SECONDS},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
