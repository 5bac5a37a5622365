"""
System checks for every AGENTCHAT setting (the heartbeat pair is agents/checks.py).

Each setting has its own id, so `SILENCED_SYSTEM_CHECKS` can name one and a
report says which variable to fix. A failing Error stops `check`,
`runserver`, `migrate` and the test run before a bad value can refuse posts
or waits at run time (e.g. `SEQ_TOLERANCE=-1` would refuse every post).

| id | setting | rule |
|---|---|---|
| agentchat.E001 | MSG_WAIT_TIMEOUT_MS | 1 .. 3,600,000 (the longest wait a client may ask for) |
| agentchat.E002 | SEQ_TOLERANCE | >= 0 |
| agentchat.E003 | REPLY_TOKEN_LEASE_SECONDS | > 0 |
| agentchat.E004 | RATE_LIMIT_PER_MINUTE | >= 0 (0: off) |
| agentchat.E005 | REGISTER_RATE_PER_MINUTE | >= 0 (0: off) |
| agentchat.W005 | REGISTER_RATE_PER_MINUTE | warns below 30: a team's agents starting at once are refused |
| agentchat.E006 | THREAD_RATE_PER_MINUTE | >= 0 (0: off) |
| agentchat.E007 | MAX_MESSAGE_CHARS | > 0 |
| agentchat.E008 | MAX_FRAME_BYTES | > 0 |
| agentchat.E009 | MAX_FRAME_BYTES, MAX_MESSAGE_CHARS | a frame carries a post of MAX_MESSAGE_CHARS ASCII chars |
| agentchat.E010 | THREAD_IDLE_TIMEOUT_MINUTES | >= 0 (0: off) |
| agentchat.E011 | INACTIVE_AGENT_DAYS | >= 0 (0: off) |
| agentchat.E012 | CONTENT_FILTER_ENABLED | true or false |
| agentchat.E013 | REPLY_EXPECTED_SECONDS | >= 0 (0: off) |
| agentchat.E014 | NOTIFY_ADMINS | true or false |
| agentchat.W014 | NOTIFY_ADMINS | warns when on with no ADMINS to mail (DJANGO_ADMINS) |
| agentchat.E015 | GC_THRESHOLDS | three integers, each at least 1 |
| agentchat.E050 | MAX_REPLY_BYTES, MAX_MESSAGE_CHARS | one message of MAX_MESSAGE_CHARS characters fits in a reply |
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

# The longest msg_wait a client may ask for (agentchat.ops.MAX_WAIT_MS).
MAX_WAIT_MS = 3_600_000
# Room in a frame for a post's envelope: op, ids, sync fields, metadata.
POST_ENVELOPE_BYTES = 1024
# Fewer registrations per minute than this refuse a team starting its agents together.
TEAM_BURST = 30


def _env(name: str) -> str:
    return f"AGENTCHAT_{'HEARTBEAT_TIMEOUT' if name == 'AGENT_HEARTBEAT_TIMEOUT' else name}"


def _integer(
    conf: dict[str, Any], name: str, check_id: str, *, low: int, high: int | None = None, hint: str
) -> list[CheckMessage]:
    """An Error unless conf[name] is an integer in [low, high]."""
    value = conf.get(name)
    bounds = f"at least {low}" if high is None else f"between {low} and {high}"
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        return [
            Error(
                f"{name} must be an integer {bounds} (it is {value!r}).", hint=f"Set {_env(name)}: {hint}", id=check_id
            )
        ]
    return []


def check_timing(conf: dict[str, Any]) -> list[CheckMessage]:
    return [
        *_integer(
            conf,
            "MSG_WAIT_TIMEOUT_MS",
            "agentchat.E001",
            low=1,
            high=MAX_WAIT_MS,
            hint="the default msg_wait timeout in milliseconds, e.g. 300000 (5 minutes).",
        ),
        *_integer(
            conf,
            "REPLY_TOKEN_LEASE_SECONDS",
            "agentchat.E003",
            low=1,
            hint="how long a reply token stays valid in seconds, e.g. 3600.",
        ),
        *_integer(
            conf,
            "THREAD_IDLE_TIMEOUT_MINUTES",
            "agentchat.E010",
            low=0,
            hint="minutes of inactivity before close_idle_threads closes a thread, or 0 to keep threads open.",
        ),
        *_integer(
            conf,
            "INACTIVE_AGENT_DAYS",
            "agentchat.E011",
            low=0,
            hint="days without a heartbeat before purge_inactive_agents deletes an agent, or 0 to keep them.",
        ),
        *_integer(
            conf,
            "REPLY_EXPECTED_SECONDS",
            "agentchat.E013",
            low=0,
            hint="seconds an agent may take to answer a message addressed to it (e.g. 600), or 0: no overdue replies.",
        ),
    ]


def check_sync(conf: dict[str, Any]) -> list[CheckMessage]:
    return _integer(
        conf,
        "SEQ_TOLERANCE",
        "agentchat.E002",
        low=0,
        hint="how many unread messages a post may tolerate; 0 (the default) means it must have read them all.",
    )


def check_limits(conf: dict[str, Any]) -> list[CheckMessage]:
    messages = [
        *_integer(
            conf, "RATE_LIMIT_PER_MINUTE", "agentchat.E004", low=0, hint="posts per agent per minute, 0 for no limit."
        ),
        *_integer(
            conf,
            "REGISTER_RATE_PER_MINUTE",
            "agentchat.E005",
            low=0,
            hint="agent registrations per client address per minute, 0 for no limit.",
        ),
        *_integer(
            conf,
            "THREAD_RATE_PER_MINUTE",
            "agentchat.E006",
            low=0,
            hint="threads created per agent per minute, 0 for no limit.",
        ),
    ]
    register_rate = conf.get("REGISTER_RATE_PER_MINUTE")
    if not any(m.id == "agentchat.E005" for m in messages) and 0 < register_rate < TEAM_BURST:
        messages.append(
            Warning(
                f"REGISTER_RATE_PER_MINUTE is {register_rate}: a team whose agents start together "
                "behind one address (one machine, one NAT) will have some refused.",
                hint=f"Set AGENTCHAT_REGISTER_RATE_PER_MINUTE to at least {TEAM_BURST} (the default is 120), or 0.",
                id="agentchat.W005",
            )
        )
    return messages


def check_sizes(conf: dict[str, Any]) -> list[CheckMessage]:
    messages = [
        *_integer(
            conf, "MAX_MESSAGE_CHARS", "agentchat.E007", low=1, hint="the longest message in characters, e.g. 65536."
        ),
        *_integer(
            conf, "MAX_FRAME_BYTES", "agentchat.E008", low=1, hint="the largest request frame in bytes, e.g. 262144."
        ),
    ]
    if not messages:
        chars, frame = conf["MAX_MESSAGE_CHARS"], conf["MAX_FRAME_BYTES"]
        if frame < chars + POST_ENVELOPE_BYTES:
            messages.append(
                Error(
                    f"MAX_FRAME_BYTES ({frame}) cannot carry a post of MAX_MESSAGE_CHARS ({chars}) characters: "
                    "messages the bus accepts could never be sent.",
                    hint=f"Raise AGENTCHAT_MAX_FRAME_BYTES to at least {chars + POST_ENVELOPE_BYTES} "
                    "(non-ASCII text takes up to 4 bytes a character), or lower AGENTCHAT_MAX_MESSAGE_CHARS.",
                    id="agentchat.E009",
                )
            )
    return messages


def _switch(conf: dict[str, Any], name: str, check_id: str) -> list[CheckMessage]:
    value = conf.get(name)
    if not isinstance(value, bool):
        return [
            Error(
                f"{name} must be true or false (it is {value!r}).",
                hint=f"Set {_env(name)} to true or false.",
                id=check_id,
            )
        ]
    return []


def check_switches(conf: dict[str, Any]) -> list[CheckMessage]:
    messages = [
        *_switch(conf, "CONTENT_FILTER_ENABLED", "agentchat.E012"),
        *_switch(conf, "NOTIFY_ADMINS", "agentchat.E014"),
    ]
    if conf.get("NOTIFY_ADMINS") is True and not settings.ADMINS:
        messages.append(
            Warning(
                "NOTIFY_ADMINS is on but ADMINS is empty: nobody is mailed about requests for a human.",
                hint='Set DJANGO_ADMINS, e.g. "Ada <ada@example.com>", or turn AGENTCHAT_NOTIFY_ADMINS off.',
                id="agentchat.W014",
            )
        )
    return messages


def check_reply_size(conf: dict[str, Any]) -> list[CheckMessage]:
    """A reply (at most MAX_REPLY_BYTES, also daphne's WebSocket message limit) carries the largest message.

    Every list and wait stops short of MAX_REPLY_BYTES (agentchat/transport.py);
    that only works if the largest message the bus accepts fits in one reply,
    or no msg_list or msg_wait could ever return it.
    """
    from agentchat.transport import REPLY_OVERHEAD_BYTES
    from threads.services.posting import largest_message_bytes

    reply, chars = conf.get("MAX_REPLY_BYTES"), conf.get("MAX_MESSAGE_CHARS")
    if not all(isinstance(value, int) and value > 0 for value in (reply, chars)):
        return []  # E007 (and the reply size's own range) report it
    needed = REPLY_OVERHEAD_BYTES + largest_message_bytes(chars)
    if reply >= needed:
        return []
    return [
        Error(
            f"MAX_REPLY_BYTES ({reply}) cannot carry one message of MAX_MESSAGE_CHARS ({chars}) characters, "
            f"which takes up to {needed} bytes in a reply (6 bytes a character when escaped).",
            hint=f"Raise AGENTCHAT_MAX_REPLY_BYTES to at least {needed}, or lower AGENTCHAT_MAX_MESSAGE_CHARS "
            f"to at most {max(0, (reply - needed) // 6 + chars)}.",
            id="agentchat.E050",
        )
    ]


def check_gc(conf: dict[str, Any]) -> list[CheckMessage]:
    value = conf.get("GC_THRESHOLDS")
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in value)
    ):
        return [
            Error(
                f"GC_THRESHOLDS must be three integers, each at least 1 (it is {value!r}).",
                hint="Set AGENTCHAT_GC_THRESHOLDS, e.g. 50000,20,10 (0 would turn collections off).",
                id="agentchat.E015",
            )
        ]
    return []


GROUPS: list[Callable[[dict[str, Any]], list[CheckMessage]]] = [
    check_timing,
    check_sync,
    check_limits,
    check_sizes,
    check_reply_size,
    check_switches,
    check_gc,
]


@register("agentchat")
def check_agentchat_settings(app_configs, **kwargs) -> list[CheckMessage]:
    conf = settings.AGENTCHAT
    return [message for group in GROUPS for message in group(conf)]
