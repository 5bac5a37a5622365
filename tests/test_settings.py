"""Settings come from the environment, with safe defaults."""

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "hosts": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts"),
    "agentchat": settings.AGENTCHAT,
    "db_options": settings.DATABASES["default"].get("OPTIONS", {}),
}))
"""


def run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENTCHAT_", "DJANGO_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        env={**clean, "DJANGO_SETTINGS_MODULE": "agentchat.settings", **env},
        timeout=60,
    )


def settings_with(env: dict[str, str]) -> dict:
    result = run(PRINT_SETTINGS, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_are_sqlite_in_memory_layer_and_the_spec_values():
    loaded = settings_with({})
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["layer"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["agentchat"] == {
        "HEARTBEAT_INTERVAL": 40,
        "AGENT_HEARTBEAT_TIMEOUT": 60,
        "MSG_WAIT_TIMEOUT_MS": 300000,
        "SEQ_TOLERANCE": 0,
        "REPLY_TOKEN_LEASE_SECONDS": 3600,
        "RATE_LIMIT_PER_MINUTE": 30,
        "REGISTER_RATE_PER_MINUTE": 120,
        "THREAD_RATE_PER_MINUTE": 20,
        "MAX_MESSAGE_CHARS": 65536,
        "MAX_FRAME_BYTES": 262144,
        "MAX_REPLY_BYTES": 1048576,
        "CONTENT_FILTER_ENABLED": True,
        "THREAD_IDLE_TIMEOUT_MINUTES": 0,
        "MCP_WAIT_DEFAULT_MS": 50000,
        "MCP_WAIT_MAX_MS": 300000,
        "MCP_PROGRESS_INTERVAL": 15,
        "MCP_SESSION_IDLE_TIMEOUT": 1800,
        "INACTIVE_AGENT_DAYS": 30,
        "REPLY_EXPECTED_SECONDS": 600,
        "NOTIFY_ADMINS": False,
        "GC_THRESHOLDS": [50000, 20, 10],
    }


def test_environment_selects_postgres_redis_and_tunables():
    loaded = settings_with(
        {
            "DATABASE_URL": "postgres://u@db.example:5432/chat",
            "REDIS_URL": "redis://cache.example:6379/2",
            "AGENTCHAT_HEARTBEAT_INTERVAL": "20",
            "AGENTCHAT_CONTENT_FILTER_ENABLED": "false",
        }
    )
    assert loaded["engine"] == "django.db.backends.postgresql"
    assert loaded["layer"] == "channels_redis.core.RedisChannelLayer"
    # No read timeout on the subscriber's blocking reads (redis-py 8 defaults to 5 s).
    assert loaded["hosts"][0]["address"] == "redis://cache.example:6379/2"
    assert loaded["hosts"][0]["socket_timeout"] is None
    assert loaded["agentchat"]["HEARTBEAT_INTERVAL"] == 20
    assert loaded["agentchat"]["CONTENT_FILTER_ENABLED"] is False


def test_postgres_binds_server_side_and_prepares_statements_unless_turned_off():
    postgres = {"DATABASE_URL": "postgres://u@db.example:5432/chat"}
    options = settings_with(postgres)["db_options"]
    assert options == {"server_side_binding": True, "prepare_threshold": 5}
    assert settings_with({**postgres, "AGENTCHAT_DB_PREPARE_THRESHOLD": "2"})["db_options"]["prepare_threshold"] == 2
    assert settings_with({**postgres, "AGENTCHAT_DB_PREPARE_THRESHOLD": "0"})["db_options"]["prepare_threshold"] is None


def test_a_malformed_number_is_refused_with_its_name():
    result = run(PRINT_SETTINGS, {"AGENTCHAT_SEQ_TOLERANCE": "two"})
    assert result.returncode != 0
    assert "AGENTCHAT_SEQ_TOLERANCE must be an integer" in result.stderr


def test_gc_thresholds_are_three_integers():
    assert settings_with({"AGENTCHAT_GC_THRESHOLDS": "700, 10,10"})["agentchat"]["GC_THRESHOLDS"] == [700, 10, 10]
    for value in ("700,10", "a,b,c", "1,2,3,4"):
        result = run(PRINT_SETTINGS, {"AGENTCHAT_GC_THRESHOLDS": value})
        assert result.returncode != 0
        assert "AGENTCHAT_GC_THRESHOLDS must be 3 comma-separated integers" in result.stderr


def test_check_refuses_an_interval_not_below_the_timeout():
    result = run(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check'])",
        {"AGENTCHAT_HEARTBEAT_INTERVAL": "60", "AGENTCHAT_HEARTBEAT_TIMEOUT": "60"},
    )
    assert result.returncode != 0
    assert "agents.E001" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = run(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        {
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "x" * 30 + "-production-secret-key-0123456789",
            "DJANGO_ALLOWED_HOSTS": "chat.example.com",
        },
    )
    assert result.returncode == 0, result.stderr


def test_former_secret_keys_come_from_the_environment():
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY_FALLBACKS)"
    assert run(code, {}).stdout.strip() == "[]"
    assert run(code, {"DJANGO_SECRET_KEY_FALLBACKS": "old-one,older-one"}).stdout.strip() == "['old-one', 'older-one']"
