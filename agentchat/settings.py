"""
Settings for AgentChat.

Every tunable has a safe default and an environment variable, so the same code
runs on a laptop (SQLite, in-memory channel layer, one process) and in
production (PostgreSQL, Redis, many daphne processes).
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}.") from None


def env_ints(name: str, default: tuple[int, ...]) -> list[int]:
    """A comma-separated list of as many integers as `default` has."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return list(default)
    try:
        numbers = [int(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != len(default):
        example = ",".join(map(str, default))
        raise ImproperlyConfigured(
            f"{name} must be {len(default)} comma-separated integers (like {example}), not {value!r}."
        )
    return numbers


# --- Django core -------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", True)
# The default key is for development only; `check --deploy` flags it.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-agentchat-development-key-change-me-in-production")
# Former keys (comma-separated) still verify what was signed with them: sessions,
# and the reply tokens agents hold (threads/services/reply_tokens.py).
SECRET_KEY_FALLBACKS = [key for key in os.environ.get("DJANGO_SECRET_KEY_FALLBACKS", "").split(",") if key]
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "daphne",  # its runserver serves the ASGI application, WebSockets included
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "agentchat",
    "agents",
    "threads",
    "console",  # the live console in the admin (conversation screen, presence, dashboard)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "agentchat.urls"
ASGI_APPLICATION = "agentchat.asgi.application"

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

# --- Database ----------------------------------------------------------------

# SQLite by default; DATABASE_URL (e.g. postgres://user@host:5432/agentchat)
# selects another database. Connections persist: every ORM call of the
# WebSocket consumer runs on one worker thread, which keeps one connection
# instead of opening one per request (or per minute). A connection that failed
# is dropped and reopened by the next request.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=None,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # BEGIN IMMEDIATE takes the write lock up front, so two concurrent posts
    # queue for it instead of failing to upgrade a read lock ("database is
    # locked"). The test database is a file, so a daphne process started by the
    # tests can share it.
    # WAL lets readers run beside the writer, and synchronous=NORMAL syncs at
    # checkpoints instead of at every commit (a power cut may lose the last
    # commits, never corrupt the file).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _db_file = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(_db_file.with_name(f"test_{_db_file.stem}.sqlite3"))}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Prepared statements: psycopg prepares a statement on a connection once
    # it has run there AGENTCHAT_DB_PREPARE_THRESHOLD times, and PostgreSQL
    # stops parsing and planning it. A post's statements then cost the
    # database about half the CPU (docs/performance.md). That takes
    # server-side parameter binding (Django's default binds client-side).
    # 0 turns preparing off, e.g. behind PgBouncer in transaction pooling
    # before version 1.21.
    _prepare_threshold = env_int("AGENTCHAT_DB_PREPARE_THRESHOLD", 5)
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=_prepare_threshold or None
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer -----------------------------------------------------------

# Each server process subscribes once per thread that has waiters (see
# threads/waiting_room.py), so a channel only ever holds a few wake-ups at a time;
# the capacity is generous anyway because a full channel drops messages.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # An idle subscriber blocks in BZPOPMIN for a long time;
                        # a read timeout (redis-py 8 defaults to 5 s) would kill it.
                        "socket_timeout": None,
                        "socket_keepalive": True,
                        "health_check_interval": 30,
                    }
                ],
                "capacity": 1000,
                # A process re-subscribes its groups every heartbeat interval,
                # so membership outlives any idle period.
                "group_expiry": 86400,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000},
        }
    }

# --- Cache ---------------------------------------------------------------------

# Holds who is waiting in msg_wait now (agents/events.py), which every server
# process must see: Redis when REDIS_URL is set, else this process's memory
# (the single-process default).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- AgentChat ----------------------------------------------------------------

AGENTCHAT = {
    # An agent that is not waiting sends agent_heartbeat this often (seconds).
    "HEARTBEAT_INTERVAL": env_int("AGENTCHAT_HEARTBEAT_INTERVAL", 40),
    # ...and is offline once its stored heartbeat is older than this. It must
    # stay well above the interval (agents.E001 / agents.W001 guard the pair).
    "AGENT_HEARTBEAT_TIMEOUT": env_int("AGENTCHAT_HEARTBEAT_TIMEOUT", 60),
    # Default msg_wait timeout; a client may ask for up to an hour.
    "MSG_WAIT_TIMEOUT_MS": env_int("AGENTCHAT_MSG_WAIT_TIMEOUT_MS", 300_000),
    # How many unseen messages a post may tolerate (0: it must have read all).
    "SEQ_TOLERANCE": env_int("AGENTCHAT_SEQ_TOLERANCE", 0),
    "REPLY_TOKEN_LEASE_SECONDS": env_int("AGENTCHAT_REPLY_TOKEN_LEASE_SECONDS", 3600),
    # Posts per agent per minute; 0 turns the limit off.
    "RATE_LIMIT_PER_MINUTE": env_int("AGENTCHAT_RATE_LIMIT_PER_MINUTE", 30),
    # Agents registered per client address per minute (0: off). A team's
    # agents often start together behind one address (one machine, one NAT):
    # a burst of a hundred is let through, a flood is not.
    "REGISTER_RATE_PER_MINUTE": env_int("AGENTCHAT_REGISTER_RATE_PER_MINUTE", 120),
    # Threads created per agent per minute (thread_create, bus_connect by name); 0: off.
    "THREAD_RATE_PER_MINUTE": env_int("AGENTCHAT_THREAD_RATE_PER_MINUTE", 20),
    "MAX_MESSAGE_CHARS": env_int("AGENTCHAT_MAX_MESSAGE_CHARS", 65536),
    "MAX_FRAME_BYTES": env_int("AGENTCHAT_MAX_FRAME_BYTES", 262144),
    # The largest reply the server sends, and the WebSocket message limit it
    # gives daphne (agentchat/transport.py). Lists and waits stop short of it
    # and say so (has_more, truncated); a message of MAX_MESSAGE_CHARS must fit
    # (agentchat.E001). 1 MiB is also what WebSocket clients accept by default.
    "MAX_REPLY_BYTES": env_int("AGENTCHAT_MAX_REPLY_BYTES", 1_048_576),
    # Refuse posts that look like they carry a secret (keys, access tokens).
    "CONTENT_FILTER_ENABLED": env_bool("AGENTCHAT_CONTENT_FILTER_ENABLED", True),
    # close_idle_threads closes threads idle this long; 0 turns it off.
    "THREAD_IDLE_TIMEOUT_MINUTES": env_int("AGENTCHAT_THREAD_IDLE_TIMEOUT_MINUTES", 0),
    # purge_inactive_agents deletes agents without a heartbeat for this many days; 0 turns it off.
    "INACTIVE_AGENT_DAYS": env_int("AGENTCHAT_INACTIVE_AGENT_DAYS", 30),
    # MCP transport (/mcp). Most MCP clients cut a tool call at 60 s, so
    # msg_wait over MCP defaults to 50 s and is capped at 300 s.
    "MCP_WAIT_DEFAULT_MS": env_int("AGENTCHAT_MCP_WAIT_DEFAULT_MS", 50_000),
    "MCP_WAIT_MAX_MS": env_int("AGENTCHAT_MCP_WAIT_MAX_MS", 300_000),
    # A waiting msg_wait sends a progress notification this often (seconds).
    "MCP_PROGRESS_INTERVAL": env_int("AGENTCHAT_MCP_PROGRESS_INTERVAL", 15),
    # A stateful MCP session with no request for this long is closed (seconds).
    "MCP_SESSION_IDLE_TIMEOUT": env_int("AGENTCHAT_MCP_SESSION_IDLE_TIMEOUT", 1800),
    # A message addressed to an agent, delivered and not answered this long
    # (seconds), is an overdue reply; 0 turns overdue replies off.
    "REPLY_EXPECTED_SECONDS": env_int("AGENTCHAT_REPLY_EXPECTED_SECONDS", 600),
    # Mail the ADMINS (mail_admins) once per new request for a human.
    "NOTIFY_ADMINS": env_bool("AGENTCHAT_NOTIFY_ADMINS", False),
    # The garbage collector's thresholds in a server process (gc.set_threshold:
    # allocations before a young collection, young collections before a
    # middle one, middle ones before a full one), set by agentchat/asgi.py.
    # Python's 700,10,10 runs a full collection, which scans every object of
    # every open socket (50-90 ms with 1,000 of them), every 70,000 net
    # allocations: several times while 1,000 waiters are woken. See
    # docs/performance.md for the figures.
    "GC_THRESHOLDS": env_ints("AGENTCHAT_GC_THRESHOLDS", (50_000, 20, 10)),
}

# --- Mail (requests for a human, with AGENTCHAT_NOTIFY_ADMINS) -------------------

# DJANGO_ADMINS: "Ada <ada@example.com>, ops@example.com".
ADMINS = [
    (address.split("<")[0].strip() or address.strip(), address.split("<")[-1].rstrip(">").strip())
    for address in os.environ.get("DJANGO_ADMINS", "").split(",")
    if address.strip()
]
# The console backend prints mails to the server's output, for development;
# production names a real one (e.g. django.core.mail.backends.smtp.EmailBackend).
EMAIL_BACKEND = os.environ.get("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
SERVER_EMAIL = os.environ.get("DJANGO_SERVER_EMAIL", "agentchat@localhost")

# --- Security (production values come from the environment) -------------------

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Joining the browsers' preload list is the domain owner's decision
        # (DJANGO_SECURE_HSTS_PRELOAD=true), not a default.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    CSRF_TRUSTED_ORIGINS = [
        origin.strip() for origin in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if origin.strip()
    ]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"

# Tokens never reach a log line: requests are logged by op name only.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "agentchat": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Django's default configuration gives "django" a console handler of
        # its own (with DEBUG on) and lets it propagate to the root's: every
        # line of django.request, django.channels.server (runserver's access
        # log) and the autoreloader was printed twice. One handler: the root's.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
