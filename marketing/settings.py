"""Herald's settings. Every deployment-specific value comes from the environment.

See README.md for the variables. Storage and scheduling are UTC.
"""

from __future__ import annotations

from pathlib import Path

from kombu import Queue

from marketing.env import (
    env_bool,
    env_database_url,
    env_int,
    env_json,
    env_list,
    env_path_prefix,
    env_redis_url,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=False)
_secret = env_str("SECRET_KEY", default="")
if not _secret:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "The environment variable SECRET_KEY is not set. `make run` and `make test` set one for you; "
        "in production set a long random value."
    )
SECRET_KEY = _secret
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
HERALD_ADMIN_PATH = env_path_prefix("HERALD_ADMIN_PATH", "admin/")
# The public base URL shops use to reach us, shown in the admin next to each shop's webhook.
HERALD_PUBLIC_URL = env_str("HERALD_PUBLIC_URL", "http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "polymorphic",
    "django_celery_beat",
    "anymail",
    "orders.apps.OrdersConfig",
    "channels.apps.ChannelsConfig",
    "marketing.apps.MarketingConfig",
    "flows.apps.FlowsConfig",
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
]

ROOT_URLCONF = "marketing.urls"
WSGI_APPLICATION = "marketing.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASES = {"default": env_database_url("DATABASE_URL").as_django()}
# Several test runs may share one server (parallel checkouts): each can name its own test database.
DATABASES["default"]["TEST"] = {"NAME": env_str("HERALD_TEST_DATABASE", "test_" + str(DATABASES["default"]["NAME"]))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_redis_url("REDIS_URL")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "herald",
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# --- Celery -----------------------------------------------------------------
# At-least-once delivery: a task is acknowledged after it ran, re-queued when its
# worker dies, and never prefetched in bulk. Exactly-once effects come from unique
# keys in PostgreSQL, not from here.
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("HERALD_TASK_TIME_LIMIT", 300, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 5
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers an unacknowledged task after this long; it must exceed the longest task.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 4}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue("default"), Queue("webhooks"), Queue("sends"), Queue("flows")]
CELERY_TASK_ROUTES = {
    "orders.*": {"queue": "webhooks"},
    "channels.*": {"queue": "sends"},
    "flows.*": {"queue": "flows"},
}
# Publishing from a web request must not hang when the broker is down: the inbox row
# is already committed and the orders beat task re-enqueues it.
HERALD_ENQUEUE_RETRY_POLICY = {"max_retries": 0}

# --- Herald -----------------------------------------------------------------
HERALD_WEBHOOK_MAX_BYTES = env_int("HERALD_WEBHOOK_MAX_BYTES", 2 * 1024 * 1024, minimum=1024)
HERALD_REJECTED_LOG_CAP = env_int("HERALD_REJECTED_LOG_CAP", 1000, minimum=10)
HERALD_REJECTED_LOG_RETENTION_DAYS = env_int("HERALD_REJECTED_LOG_RETENTION_DAYS", 14, minimum=1)
# A delivery still unprocessed after this many seconds is re-enqueued by the orders tick.
HERALD_REENQUEUE_AFTER_SECONDS = env_int("HERALD_REENQUEUE_AFTER_SECONDS", 60, minimum=1)
HERALD_WOOCOMMERCE_SYNC_MINUTES = env_int("HERALD_WOOCOMMERCE_SYNC_MINUTES", 15, minimum=1)
# Each app that owns periodic work reports its health here (see marketing/health.py).
HERALD_HEALTH_CHECKS = ["orders.health.check", "channels.health.check", "flows.health.check"]
# What each room counts as waiting on staff, for the admin's front page.
HERALD_ATTENTION_CHECKS = ["orders.attention.attention", "channels.attention.attention", "flows.attention.attention"]
# Attribution windows in hours per channel (or per channel and touch); see marketing/conversions.py.
HERALD_ATTRIBUTION_WINDOWS = env_json("HERALD_ATTRIBUTION_WINDOWS", {})
HERALD_RECOMMENDATION_POPULAR_DAYS = env_int("HERALD_RECOMMENDATION_POPULAR_DAYS", 30, minimum=1)
# A message not sent within this long of being queued fails as expired.
HERALD_MESSAGE_MAX_AGE_SECONDS = env_int("HERALD_MESSAGE_MAX_AGE_SECONDS", 86400, minimum=60)

# ESP tracking webhooks (/anymail/<esp>/tracking/) use HTTP basic auth with this secret
# ("user:password"); see django-anymail's docs for each ESP's own signing key settings.
ANYMAIL = {"WEBHOOK_SECRET": env_str("HERALD_ANYMAIL_WEBHOOK_SECRET", "")} if env_str(
    "HERALD_ANYMAIL_WEBHOOK_SECRET", ""
) else {}

# --- Channel backends ----------------------------------------------------------
# alias -> {"BACKEND": dotted path, "KIND": kind (when the alias is not a kind),
#           "OPTIONS": {...}}; see docs/ADDING_A_CHANNEL.md. Without configuration every
# kind goes to a development backend: email is written to var/outbox/, the rest is
# printed by the worker, so a newcomer sees messages without accounts.
_OUTBOX = str(BASE_DIR / "var" / "outbox")
_DEV_CHANNELS = {
    "email": {"BACKEND": "channels.backends.file.FileBackend", "OPTIONS": {"PATH": _OUTBOX}},
    **{
        kind: {"BACKEND": "channels.backends.console.ConsoleBackend"}
        for kind in ("sms", "whatsapp", "viber", "telegram", "messenger", "line", "mobile_push", "web_push")
    },
}
CHANNEL_BACKENDS = env_json("HERALD_CHANNEL_BACKENDS", _DEV_CHANNELS)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
