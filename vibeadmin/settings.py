"""vibeadmin's one settings module.

Every knob is an environment variable with an embedded default that runs out of the box:
SQLite, channels' in-memory layer, the small GGUF that ships as a Python package. A bad
value raises ImproperlyConfigured with one line naming the variable; manage.py prints it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from pool.private_files import private_dir, private_secret
from vibeadmin.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_path,
    env_public_url,
    env_str,
    env_time_zone,
    env_url,
)

# Everything vibeadmin writes (the database and its journal, logs, the secret key, the admin
# password) is for its own user only, from the moment it is created: no window where a
# file is readable by others before a chmod.
os.umask(os.umask(0o077) | 0o077)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = private_dir(env_path("VIBEADMIN_DATA_DIR", BASE_DIR / "var"))

# A key from the environment, else one generated once and kept in the data folder.
SECRET_KEY = env_str("VIBEADMIN_SECRET_KEY", "") or private_secret(
    DATA_DIR / "secret-key", secrets.token_urlsafe(50)
)
DEBUG = env_bool("VIBEADMIN_DEBUG", False)

HOST = env_str("VIBEADMIN_HOST", "127.0.0.1")
PORT = env_int("VIBEADMIN_PORT", 8000, minimum=1, maximum=65535)
# The API's own port (pool/gateway/listener.py): /v1/ without daphne's cost; 0 for none.
API_PORT = env_int("VIBEADMIN_API_PORT", 8001, minimum=0, maximum=65535)
ALLOWED_HOSTS = env_list("VIBEADMIN_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", HOST])
CSRF_TRUSTED_ORIGINS = env_list("VIBEADMIN_CSRF_TRUSTED_ORIGINS", [])
# Client addresses are taken from X-Forwarded-For only when the peer is one of these.
VIBEADMIN_TRUSTED_PROXIES = env_networks("VIBEADMIN_TRUSTED_PROXIES")
# Per-address caps and the log-in throttle count an IPv6 network of this prefix as one
# address: one host is routinely given a whole /64 (or a /56, /48: set 56 or 48 then).
VIBEADMIN_IPV6_PREFIX = env_int("VIBEADMIN_IPV6_PREFIX", 64, minimum=16, maximum=128)
# A dashboard websocket asks this often whether its log-in still holds (expiry, a changed
# password, staff removed) and closes when not.
VIBEADMIN_WS_RECHECK_S = env_float("VIBEADMIN_WS_RECHECK_S", 5.0, minimum=0.1)
# Prometheus sends it as `Authorization: Bearer ...`; without it /metrics is for staff sessions.
VIBEADMIN_METRICS_TOKEN = env_str("VIBEADMIN_METRICS_TOKEN", "")
if VIBEADMIN_METRICS_TOKEN and len(VIBEADMIN_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured(
        "VIBEADMIN_METRICS_TOKEN must be at least 16 characters (try: openssl rand -hex 24)"
    )

# --- production: one switch ------------------------------------------------------------
# The address users reach the site at. With https://, behind a TLS-terminating proxy
# listed in VIBEADMIN_TRUSTED_PROXIES: secure cookies, HSTS, redirects to https.
PUBLIC_URL = env_public_url("VIBEADMIN_PUBLIC_URL")
if PUBLIC_URL:
    _public_host = urlparse(PUBLIC_URL).hostname or ""
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, _public_host if ":" not in _public_host else f"[{_public_host}]"]
    CSRF_TRUSTED_ORIGINS = [*CSRF_TRUSTED_ORIGINS, PUBLIC_URL]
if PUBLIC_URL and PUBLIC_URL.startswith("https://"):
    if not VIBEADMIN_TRUSTED_PROXIES:
        raise ImproperlyConfigured(
            "VIBEADMIN_PUBLIC_URL is https:// but VIBEADMIN_TRUSTED_PROXIES names no proxy: list the address "
            "of the proxy that terminates TLS (e.g. 127.0.0.1), whose X-Forwarded-Proto is then believed"
        )
    # Believed only from the trusted proxies: vibeadmin.headers drops it from anyone else.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^metrics$"]  # Prometheus may scrape the app's port directly
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("VIBEADMIN_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("VIBEADMIN_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("VIBEADMIN_HSTS_PRELOAD", True)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "django_prometheus",
    "pool",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "vibeadmin.headers.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "vibeadmin.headers.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "vibeadmin.urls"
ASGI_APPLICATION = "vibeadmin.asgi.application"

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

_database_url = env_url("DATABASE_URL", ("sqlite", "postgres", "postgresql", "pgsql"))
DATABASES: dict[str, Mapping[str, Any]]
# The supervisor thread and the web threads write at once: wait, don't fail. A transaction
# that reads and then writes (update_or_create, the heartbeat's) cannot wait for the lock
# once another writer has committed after its read ("database is locked" at once, whatever
# the timeout): IMMEDIATE takes the write lock when the transaction begins, so it waits there.
SQLITE_OPTIONS = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
if _database_url:
    _default: dict[str, Any] = dict(dj_database_url.parse(_database_url, conn_max_age=60))
    if _default["ENGINE"] == "django.db.backends.sqlite3":
        _default["OPTIONS"] = {**SQLITE_OPTIONS, **_default.get("OPTIONS", {})}
    DATABASES = {"default": _default}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            # Tests run the gateway's refresh and the supervisor in threads beside the test:
            # a file waits for its lock where a shared in-memory database fails at once.
            "TEST": {"NAME": DATA_DIR / f"test-db-{os.getpid()}.sqlite3"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Log-in throttling counts failures here: in Redis, every web process sees the same counts.
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # In this process. Django's default keeps 300 entries and then drops the least recently
    # used third: a flood of failed log-ins under made-up names would evict an account's
    # lock, and its guessing could start again. 100,000 entries of a few hundred bytes.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
# The operator's time zone: quotas count calendar days and months in it.
TIME_ZONE = env_time_zone("VIBEADMIN_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
NODE_MODULES = BASE_DIR / "node_modules"
# Browser libraries come from npm; only their built files are exposed, under vendor/.
STATICFILES_DIRS = [BASE_DIR / "static"] + [
    (f"vendor/{name}", NODE_MODULES / dist)
    for name, dist in [
        ("htmx", "htmx.org/dist"),
        ("uplot", "uplot/dist"),
        ("katex", "katex/dist"),
        ("marked", "marked/lib"),
        ("dompurify", "dompurify/dist"),
        ("highlight", "@highlightjs/cdn-assets"),
        ("axe-core", "axe-core"),  # no page loads it: the accessibility tests inject it
    ]
    if (NODE_MODULES / dist).is_dir()
]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "vibeadmin": {"handlers": ["console"], "level": env_str("VIBEADMIN_LOG_LEVEL", "INFO")},
        "pool": {"handlers": ["console"], "level": env_str("VIBEADMIN_LOG_LEVEL", "INFO")},
    },
}

# --- the model and its members -------------------------------------------------------
VIBEADMIN_MODEL = env_path("VIBEADMIN_MODEL", Path()) if env_str("VIBEADMIN_MODEL", "") else None
VIBEADMIN_MODEL_ID = env_str("VIBEADMIN_MODEL_ID", "")  # defaults to the GGUF's file stem
VIBEADMIN_CHAT_FORMAT = env_str("VIBEADMIN_CHAT_FORMAT", "")  # "" = from the GGUF, gemma for the default
VIBEADMIN_MEMBERS = env_int("VIBEADMIN_MEMBERS", 2, minimum=0, maximum=256)
VIBEADMIN_MAX_MEMBERS = env_int("VIBEADMIN_MAX_MEMBERS", 64, minimum=1)
VIBEADMIN_N_GPU_LAYERS = env_int("VIBEADMIN_N_GPU_LAYERS", -1, minimum=-1)
# Context per slot: a member with N slots gets N times this (reasoning answers are long).
VIBEADMIN_N_CTX = env_int("VIBEADMIN_N_CTX", 4096, minimum=256)
VIBEADMIN_N_THREADS = env_int("VIBEADMIN_N_THREADS", 1, minimum=1)
# New members' engine and slots; see BENCHMARKS.md for why these are the defaults.
VIBEADMIN_ENGINE = env_choice("VIBEADMIN_ENGINE", "llama-server", ("llama-server", "llama-cpp-python"))
VIBEADMIN_SLOTS = env_int("VIBEADMIN_SLOTS", 8, minimum=1, maximum=256)
# The llama-server binary; unset: the build `make install` caches (bin/build-llama-server).
VIBEADMIN_LLAMA_SERVER = (
    env_path("VIBEADMIN_LLAMA_SERVER", Path()) if env_str("VIBEADMIN_LLAMA_SERVER", "") else None
)
VIBEADMIN_NODE = env_str("VIBEADMIN_NODE", "local")

# --- supervisor and health -----------------------------------------------------------
VIBEADMIN_TICK_S = env_float("VIBEADMIN_TICK_S", 0.5, minimum=0.05)
VIBEADMIN_PROBE_INTERVAL_S = env_float("VIBEADMIN_PROBE_INTERVAL_S", 2.0, minimum=0.1)
VIBEADMIN_PROBE_TIMEOUT_S = env_float("VIBEADMIN_PROBE_TIMEOUT_S", 2.0, minimum=0.1)
VIBEADMIN_UNHEALTHY_AFTER = env_int("VIBEADMIN_UNHEALTHY_AFTER", 3, minimum=1)
VIBEADMIN_HEALTHY_AFTER = env_int("VIBEADMIN_HEALTHY_AFTER", 2, minimum=1)
# A local member that stays unhealthy this long is restarted (remote ones are only probed).
VIBEADMIN_UNHEALTHY_RESTART_S = env_float("VIBEADMIN_UNHEALTHY_RESTART_S", 60.0, minimum=1)
VIBEADMIN_START_TIMEOUT_S = env_float("VIBEADMIN_START_TIMEOUT_S", 300.0, minimum=1)
VIBEADMIN_MAX_RESTARTS = env_int("VIBEADMIN_MAX_RESTARTS", 5, minimum=0)
VIBEADMIN_BACKOFF_S = env_float("VIBEADMIN_BACKOFF_S", 1.0, minimum=0.0)
VIBEADMIN_BACKOFF_MAX_S = env_float("VIBEADMIN_BACKOFF_MAX_S", 60.0, minimum=0.0)
VIBEADMIN_STOP_GRACE_S = env_float("VIBEADMIN_STOP_GRACE_S", 10.0, minimum=0.0)
# A member whose supervisor died without stopping it waits this long for a restarted one to
# adopt it, then stops by itself (pool/supervisor/watchdog.py).
VIBEADMIN_ORPHAN_GRACE_S = env_float("VIBEADMIN_ORPHAN_GRACE_S", 30.0, minimum=0.0)
VIBEADMIN_STOP_DRAIN_S = env_float("VIBEADMIN_STOP_DRAIN_S", 30.0, minimum=0.0)
VIBEADMIN_DRAIN_TIMEOUT_S = env_float("VIBEADMIN_DRAIN_TIMEOUT_S", 300.0, minimum=0.0)
VIBEADMIN_NODE_LOST_AFTER_S = env_float("VIBEADMIN_NODE_LOST_AFTER_S", 15.0, minimum=1.0)
# Members listen here; other hosts reach them at the advertised address (scale-out).
VIBEADMIN_MEMBER_BIND = env_str("VIBEADMIN_MEMBER_BIND", "127.0.0.1")
VIBEADMIN_ADVERTISE_HOST = env_str("VIBEADMIN_ADVERTISE_HOST", "127.0.0.1")

# --- gateway limits ------------------------------------------------------------------
VIBEADMIN_MAX_BODY_BYTES = env_int("VIBEADMIN_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
VIBEADMIN_MAX_PROMPT_CHARS = env_int("VIBEADMIN_MAX_PROMPT_CHARS", 32_000, minimum=1)
VIBEADMIN_MAX_TOKENS = env_int("VIBEADMIN_MAX_TOKENS", 8192, minimum=1)
VIBEADMIN_DEFAULT_MAX_TOKENS = env_int("VIBEADMIN_DEFAULT_MAX_TOKENS", 2048, minimum=1)
# Each door's bounds on a client's connection (README, Security): its request's headers
# must arrive within HEADER_TIMEOUT_S of connecting (or of the previous answer), its body
# within BODY_TIMEOUT_S; an idle kept-alive connection closes after KEEPALIVE_S; at most
# MAX_CONNECTIONS are open on each door, and MAX_CONNECTIONS_PER_NETWORK from one client
# network (0: no such cap; our own proxies are exempt), and the next gets a 503.
VIBEADMIN_HEADER_TIMEOUT_S = env_float("VIBEADMIN_HEADER_TIMEOUT_S", 10.0, minimum=0.1)
VIBEADMIN_BODY_TIMEOUT_S = env_float("VIBEADMIN_BODY_TIMEOUT_S", 30.0, minimum=0.1)
VIBEADMIN_KEEPALIVE_S = env_float("VIBEADMIN_KEEPALIVE_S", 5.0, minimum=0.1)
VIBEADMIN_MAX_CONNECTIONS = env_int("VIBEADMIN_MAX_CONNECTIONS", 8000, minimum=1)
VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK = env_int("VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK", 1000, minimum=0)
VIBEADMIN_MAX_RETRIES = env_int("VIBEADMIN_MAX_RETRIES", 2, minimum=0, maximum=10)
# Requests sharing a system prompt and task go back to the member whose cache holds it.
VIBEADMIN_PROMPT_AFFINITY = env_bool("VIBEADMIN_PROMPT_AFFINITY", True)
VIBEADMIN_CONNECT_TIMEOUT_S = env_float("VIBEADMIN_CONNECT_TIMEOUT_S", 2.0, minimum=0.1)
# A member silent this long owes a byte and is at fault (retried, ejected); an answer that
# takes longer than UPSTREAM_TIMEOUT_S in all is only ended, with a 504 (pool/gateway/upstream.py).
VIBEADMIN_UPSTREAM_IDLE_S = env_float("VIBEADMIN_UPSTREAM_IDLE_S", 60.0, minimum=0.1)
VIBEADMIN_UPSTREAM_TIMEOUT_S = env_float("VIBEADMIN_UPSTREAM_TIMEOUT_S", 900.0, minimum=1)
VIBEADMIN_REFRESH_S = env_float("VIBEADMIN_REFRESH_S", 0.5, minimum=0.05)
# With REDIS_URL: how long a crashed gateway's in-flight slots outlive it.
VIBEADMIN_LEASE_S = env_float("VIBEADMIN_LEASE_S", 15.0, minimum=1.0)

# --- answer cache and quotas (pool/gateway/answers.py, quotas.py) -------------------
# Stored answers kept at most (the least recently used go first) and for how long.
VIBEADMIN_CACHE_ENTRIES = env_int("VIBEADMIN_CACHE_ENTRIES", 20_000, minimum=0)
VIBEADMIN_CACHE_TTL_S = env_float("VIBEADMIN_CACHE_TTL_S", 7 * 24 * 3600.0, minimum=1.0)
# A quota's share at which the alert webhook is told, once a period.
VIBEADMIN_QUOTA_WARN_AT = env_float("VIBEADMIN_QUOTA_WARN_AT", 0.8, minimum=0.01)
