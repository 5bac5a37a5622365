"""Presence events on the channel layer: online, offline, typing and waiting."""

import logging
import time
from collections.abc import Iterable
from uuid import UUID

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from agentchat.broadcast import group_send

logger = logging.getLogger("agentchat.presence")

PRESENCE_GROUP = "agentchat.presence"


def announce_presence(agent, *, online: bool) -> None:
    announce(agent_id=agent.pk, name=agent.name, online=online)


def announce_offline(*, agent_id: UUID, name: str) -> None:
    announce(agent_id=agent_id, name=name, online=False)


def announce(*, agent_id: UUID, name: str, online: bool) -> None:
    group_send(
        PRESENCE_GROUP,
        {"type": "agent.presence", "agent_id": str(agent_id), "name": name, "is_online": online},
    )


def announce_typing(agent, *, thread_id: str, is_typing: bool) -> None:
    group_send(
        PRESENCE_GROUP,
        {
            "type": "agent.typing",
            "agent_id": str(agent.pk),
            "name": agent.name,
            "thread_id": str(thread_id),
            "is_typing": is_typing,
        },
    )


# --- waiting now ------------------------------------------------------------------
#
# Who is inside msg_wait, known in every server process without touching the
# database: each wait announces its start and end on the presence group (live
# views update at once) and records itself in Django's cache (Redis when
# REDIS_URL is set) with an expiry, so a view opened later reads the current
# state. Each process re-records its waiters once per heartbeat interval; the
# entries of a process that died expire after WAITING_TTL_INTERVALS intervals.

WAITING_TTL_INTERVALS = 2.5


def _waiting_key(agent_id: UUID | str) -> str:
    return f"agentchat:waiting:{agent_id}"


def _waiting_ttl() -> float:
    return settings.AGENTCHAT["HEARTBEAT_INTERVAL"] * WAITING_TTL_INTERVALS


def _live(entries: dict[str, float] | None, now: float) -> dict[str, float]:
    return {thread: expires for thread, expires in (entries or {}).items() if expires > now}


def _record_waiting(*, agent_id: UUID | str, thread_id: UUID | str, waiting: bool) -> None:
    now, ttl, key = time.time(), _waiting_ttl(), _waiting_key(agent_id)
    try:
        entries = _live(cache.get(key), now)
        if waiting:
            entries[str(thread_id)] = now + ttl
        else:
            entries.pop(str(thread_id), None)
        if entries:
            cache.set(key, entries, ttl)
        else:
            cache.delete(key)
    except Exception:
        logger.warning("Could not record a wait in the cache", exc_info=True)


def _waiting_event(*, agent_id: UUID | str, thread_id: UUID | str, waiting: bool) -> dict:
    return {"type": "agent.waiting", "agent_id": str(agent_id), "thread_id": str(thread_id), "is_waiting": waiting}


def announce_waiting(*, agent_id: UUID, thread_id: UUID | str, waiting: bool) -> None:
    """Record and announce that an agent starts (or stops) waiting on a thread. Never raises."""
    _record_waiting(agent_id=agent_id, thread_id=thread_id, waiting=waiting)
    group_send(PRESENCE_GROUP, _waiting_event(agent_id=agent_id, thread_id=thread_id, waiting=waiting))


async def aannounce_waiting(*, agent_id: UUID, thread_id: UUID | str, waiting: bool) -> None:
    """announce_waiting for the event loop of a server process.

    The cache call runs on the process's one thread for synchronous work (the
    one database_sync_to_async uses): no extra threads. The event is sent from
    the loop itself.
    """
    await sync_to_async(_record_waiting)(agent_id=agent_id, thread_id=thread_id, waiting=waiting)
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(PRESENCE_GROUP, _waiting_event(agent_id=agent_id, thread_id=thread_id, waiting=waiting))
    except Exception:
        logger.warning("Could not announce a wait", exc_info=True)


def refresh_waiting(pairs: Iterable[tuple[UUID, str]]) -> None:
    """Re-record the waits of this process (one cache read and one write). Never raises."""
    by_agent: dict[str, set[str]] = {}
    for agent_id, thread_id in pairs:
        by_agent.setdefault(str(agent_id), set()).add(str(thread_id))
    if not by_agent:
        return
    now, ttl = time.time(), _waiting_ttl()
    try:
        stored = cache.get_many([_waiting_key(a) for a in by_agent])
        updates = {}
        for agent_id, threads in by_agent.items():
            entries = _live(stored.get(_waiting_key(agent_id)), now)
            entries.update(dict.fromkeys(threads, now + ttl))
            updates[_waiting_key(agent_id)] = entries
        cache.set_many(updates, ttl)
    except Exception:
        logger.warning("Could not refresh waits in the cache", exc_info=True)


def waiting_threads(agent_ids: Iterable[UUID | str]) -> dict[str, set[str]]:
    """The threads each given agent is waiting on now (agent id -> thread ids), from the cache."""
    agent_ids = [str(a) for a in agent_ids]
    if not agent_ids:
        return {}
    now = time.time()
    try:
        stored = cache.get_many([_waiting_key(a) for a in agent_ids])
    except Exception:
        logger.warning("Could not read waits from the cache", exc_info=True)
        return {}
    found = {a: set(_live(stored.get(_waiting_key(a)), now)) for a in agent_ids}
    return {a: threads for a, threads in found.items() if threads}


arefresh_waiting = sync_to_async(refresh_waiting)  # on the process's thread for synchronous work


REVOCATIONS_GROUP = "agentchat.revocations"


def announce_revocation(*, agent_id: UUID, generation: int) -> None:
    """Tell every server process that the agent's sessions bound before `generation` are revoked."""
    from agents import revocations

    revocations.note(agent_id=str(agent_id), generation=generation)  # this process: at once
    group_send(REVOCATIONS_GROUP, {"type": "agent.revoked", "agent_id": str(agent_id), "generation": generation})
