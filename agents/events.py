"""Presence events on the channel layer: online, offline, typing and waiting."""

import logging
import time
from collections.abc import Iterable
from uuid import UUID

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
# database: each process's waiting room publishes the waits that went to
# sleep or ended, in batches, on the presence group (live views update at
# once) and records them in Django's cache (Redis when REDIS_URL is set) with
# an expiry, so a view opened later reads the current state. Each process
# re-records its waiters once per heartbeat interval; the entries of a process
# that died expire after WAITING_TTL_INTERVALS intervals.

WAITING_TTL_INTERVALS = 2.5


def _waiting_key(agent_id: UUID | str) -> str:
    return f"agentchat:waiting:{agent_id}"


def _waiting_ttl() -> float:
    return settings.AGENTCHAT["HEARTBEAT_INTERVAL"] * WAITING_TTL_INTERVALS


def _live(entries: dict[str, float] | None, now: float) -> dict[str, float]:
    return {thread: expires for thread, expires in (entries or {}).items() if expires > now}


def record_waiting_changes(*, started: Iterable[tuple[UUID, str]], stopped: Iterable[tuple[UUID, str]]) -> None:
    """Record in the cache that these (agent, thread) waits started or stopped: one read and one write. Never raises."""
    changes: dict[str, dict[str, bool]] = {}
    for waiting, pairs in ((True, started), (False, stopped)):
        for agent_id, thread_id in pairs:
            changes.setdefault(str(agent_id), {})[str(thread_id)] = waiting
    if not changes:
        return
    now, ttl = time.time(), _waiting_ttl()
    try:
        stored = cache.get_many([_waiting_key(a) for a in changes])
        updates, gone = {}, []
        for agent_id, threads in changes.items():
            entries = _live(stored.get(_waiting_key(agent_id)), now)
            for thread_id, waiting in threads.items():
                if waiting:
                    entries[thread_id] = now + ttl
                else:
                    entries.pop(thread_id, None)
            if entries:
                updates[_waiting_key(agent_id)] = entries
            else:
                gone.append(_waiting_key(agent_id))
        if updates:
            cache.set_many(updates, ttl)
        if gone:
            cache.delete_many(gone)
    except Exception:
        logger.warning("Could not record waits in the cache", exc_info=True)


def waiting_event(*, started: Iterable[tuple[UUID, str]], stopped: Iterable[tuple[UUID, str]]) -> dict:
    """One presence event for a batch of waits that started or stopped (JSON types only)."""
    return {
        "type": "agent.waiting",
        "changes": [
            {"agent_id": str(agent_id), "thread_id": str(thread_id), "is_waiting": waiting}
            for waiting, pairs in ((True, started), (False, stopped))
            for agent_id, thread_id in pairs
        ],
    }


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


REVOCATIONS_GROUP = "agentchat.revocations"


def announce_revocation(*, agent_id: UUID, generation: int) -> None:
    """Tell every server process that the agent's sessions bound before `generation` are revoked."""
    from agents import revocations

    revocations.note(agent_id=str(agent_id), generation=generation)  # this process: at once
    group_send(REVOCATIONS_GROUP, {"type": "agent.revoked", "agent_id": str(agent_id), "generation": generation})
