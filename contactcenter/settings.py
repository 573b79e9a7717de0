"""Switchboard settings, all read from the environment (see .env.example).

There is one settings module for every use — the run command, the test command and production —
so what is tested is what runs. The run command fills DATABASE_URL, REDIS_URL and SECRET_KEY with
its embedded engines when they are not set.
"""

import re
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from contactcenter.env import (
    database_settings_from_url,
    read_bool,
    read_int,
    read_list,
    read_str,
    read_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = read_bool("DEBUG", default=False)
SECRET_KEY = read_str("SECRET_KEY")
if len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long")

ALLOWED_HOSTS = read_list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# The base URL the channel providers (Twilio, the email relay) see. Behind a proxy the request's own
# URL differs from the one they signed, so webhook signatures are checked against this one.
PUBLIC_BASE_URL = read_url("PUBLIC_BASE_URL", default=None, schemes=("http", "https"))
if PUBLIC_BASE_URL:
    PUBLIC_BASE_URL = PUBLIC_BASE_URL.rstrip("/")
    _public_host = urlsplit(PUBLIC_BASE_URL).hostname
    if _public_host and _public_host not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(_public_host)
    CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL]

# Where Twilio's REST API is reached (unset: Twilio itself). See channels_inbound/twilio/rest.py.
TWILIO_API_BASE_URL = read_url("TWILIO_API_BASE_URL", default=None, schemes=("http", "https"))

# Cookies are marked Secure whenever the public URL is https; a plain-http demo on 127.0.0.1 could
# not sign in otherwise.
_served_over_https = bool(PUBLIC_BASE_URL and PUBLIC_BASE_URL.startswith("https://"))
SECURE_COOKIES = read_bool("SECURE_COOKIES", default=_served_over_https)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
if _served_over_https:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# The CSRF token reaches htmx through the page (base.html's hx-headers), so no script needs the cookie.
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
# Browsers that reached the site over https keep to it (only sent on https responses).
SECURE_HSTS_SECONDS = read_int("SECURE_HSTS_SECONDS", default=31_536_000 if _served_over_https else 0, minimum=0)
# Content-Security-Policy: scripts only from our own static files — no inline script, no event-handler
# attribute, no eval — so markup that slips into a page cannot run. Styles may be inline (the webchat
# widget styles its shadow root with a <style> element); websockets go back to our own origin.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "media-src": [CSP.SELF, "blob:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

INSTALLED_APPS = [
    "contactcenter.apps.SwitchboardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "django_htmx",
    "contactcenter",
    "conversations",
    "tasks",
    "channels_inbound",
    "desktop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "contactcenter.middleware.CurrentTenantMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "contactcenter.errors.DomainErrorMiddleware",
    "contactcenter.form_values.FormValuesMiddleware",
]

ROOT_URLCONF = "contactcenter.urls"
ASGI_APPLICATION = "contactcenter.asgi.application"
WSGI_APPLICATION = None

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
                "contactcenter.middleware.tenant_context_processor",
            ],
        },
    },
]

DATABASE_URL = read_url("DATABASE_URL", schemes=("postgres", "postgresql"))
DATABASES = {"default": database_settings_from_url(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = read_int("DATABASE_CONN_MAX_AGE", default=60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["TEST"] = {"NAME": read_str("TEST_DATABASE_NAME", default=None)}
# A pool of connections per process (psycopg_pool), shared by the threads that serve requests. Under
# ASGI every request runs in a thread of its own, so a kept connection (CONN_MAX_AGE) was never reused:
# each request opened a new one and left it open until garbage collection, until PostgreSQL refused
# more clients (bench/README.md, ingest). The pool reuses its connections and opens more only while
# more threads need one at once, up to this many; a thread beyond it waits for one (10 s at most).
# 20, not PostgreSQL's whole max_connections (100 by default): the web, every worker process and beat
# each have a pool of their own on the same server. 0 turns the pool off (then DATABASE_CONN_MAX_AGE
# applies).
DATABASE_POOL_MAX_SIZE = read_int("DATABASE_POOL_MAX_SIZE", default=20, minimum=0)
# When PostgreSQL goes away, the pool retries each lost connection in the background with a doubling
# delay (1, 2, 4, 8 … s) for reconnect_timeout (psycopg_pool's default: 5 minutes), so after a restart
# requests waited for the next retry: 4–10 s of 500s (bench/drill_database.py). Giving up after 2 s
# instead, the pool opens connections again as requests ask for them, as soon as PostgreSQL is back.
DATABASE_POOL_RECONNECT_SECONDS = 2.0
if DATABASE_POOL_MAX_SIZE:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django insists on 0
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": 10,
        "reconnect_timeout": DATABASE_POOL_RECONNECT_SECONDS,
    }
# Row-level security, the second wall between tenants (contactcenter/rowsecurity.py): our backend
# tells PostgreSQL the current tenant before each statement, and the application switches to a role
# that owns nothing and cannot bypass the policies (migrate creates it). Empty turns the switch off.
DATABASES["default"]["ENGINE"] = "contactcenter.postgresql"
DATABASE_APP_ROLE = read_str("DATABASE_APP_ROLE", default="switchboard_app") or None
if DATABASE_APP_ROLE:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", DATABASE_APP_ROLE):  # it is spliced into SQL
        raise ImproperlyConfigured(f"DATABASE_APP_ROLE={DATABASE_APP_ROLE!r} is not a plain lower-case role name")
    DATABASES["default"]["OPTIONS"]["assume_role"] = DATABASE_APP_ROLE
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = read_url("REDIS_URL", schemes=("redis", "rediss"))

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": read_str("CACHE_KEY_PREFIX", default="switchboard"),
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels-redis waits for messages with a 5-second blocking read; redis-py 8 also times
            # out reads after 5 seconds by default, and the two racing kill idle websockets. The
            # socket timeout must be longer than the blocking read.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 10}],
            "prefix": read_str("CHANNEL_LAYER_PREFIX", default="switchboard"),
            "capacity": 1000,
            "expiry": 60,
            "group_expiry": 86400,
        },
    }
}

SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
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

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = read_str("STATIC_ROOT", default=None)  # only for `collectstatic` in a container image
# Served by WhiteNoise straight from static/ in every mode, so no collectstatic step is needed.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(read_str("MEDIA_ROOT", default=str(BASE_DIR / ".switchboard" / "media")))

# Celery: one app (contactcenter/celery.py); jobs live in each app's jobs.py.
CELERY_BROKER_URL = REDIS_URL
# The queue jobs go to and workers read. A test run uses a queue of its own, so jobs its code
# enqueues never reach another run's (or the product's) workers.
CELERY_TASK_DEFAULT_QUEUE = read_str("CELERY_QUEUE", default="switchboard")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis re-delivers an unacknowledged message after the visibility timeout. It must be longer than
# any countdown or ETA we use (the longest is CELERY_MAX_COUNTDOWN_SECONDS), or a delayed job
# would be delivered twice.
CELERY_MAX_COUNTDOWN_SECONDS = 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * CELERY_MAX_COUNTDOWN_SECONDS}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": read_str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "twilio.http_client": {"level": "WARNING"},  # logs every request's headers at INFO
    },
}

# --- Email: replies on the email channel go out through Django's default mailer ------------------
# Django 6.1's MAILERS (the EMAIL_* settings are deprecated); the environment keeps the familiar names.
# Unset, it is SMTP to localhost:25 (a local MTA, as most servers have): a reply is never shown as
# sent unless a mail server took it; without one it fails visibly (retried, then failed with the reason).
_email_backend = read_str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
_smtp_options = {
    "host": read_str("EMAIL_HOST", default="localhost"),
    "port": read_int("EMAIL_PORT", default=25, minimum=1),
    "username": read_str("EMAIL_HOST_USER", default=""),
    "password": read_str("EMAIL_HOST_PASSWORD", default=""),
    "use_tls": read_bool("EMAIL_USE_TLS", default=False),  # STARTTLS, usually port 587
    "use_ssl": read_bool("EMAIL_USE_SSL", default=False),  # TLS from the start, usually port 465
    "timeout": read_int("EMAIL_TIMEOUT", default=10, minimum=1),  # Django's default waits forever
}
if _smtp_options["use_tls"] and _smtp_options["use_ssl"]:
    raise ImproperlyConfigured("set EMAIL_USE_TLS (STARTTLS) or EMAIL_USE_SSL (implicit TLS), not both")
MAILERS = {
    "default": {
        "BACKEND": _email_backend,
        # Only the SMTP backend takes these; the console or file backends refuse unknown options.
        "OPTIONS": _smtp_options if _email_backend.endswith("smtp.EmailBackend") else {},
    }
}
DEFAULT_FROM_EMAIL = read_str("DEFAULT_FROM_EMAIL", default="Switchboard <switchboard@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Inbound email attachments larger than this are not kept (the message says which were left out).
EMAIL_ATTACHMENT_MAX_BYTES = read_int("EMAIL_ATTACHMENT_MAX_MB", default=20, minimum=1) * 1024 * 1024

# --- Voice: what callers hear while they wait in Twilio's queue for an agent -----------------------
# A URL returning TwiML (<Play>/<Say>), fetched with GET by Twilio as the <Enqueue> waitUrl; unset,
# Twilio plays its own default hold music.
TWILIO_HOLD_MUSIC_URL = read_url("TWILIO_HOLD_MUSIC_URL", default=None, schemes=("http", "https"))
