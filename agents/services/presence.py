"""
Presence: where a heartbeat is written, and where agents are marked offline.

`store_heartbeats` is the one place a heartbeat reaches the database. It is
called for an op of a bound agent (`record_activity`), for the agents waiting
in a process (once per housekeeping tick, and when a wait starts or ends), and
writes are coalesced by `HeartbeatWrites`, so an agent costs the database at
most a couple of small UPDATEs per heartbeat interval however busy it is.
`mark_offline` is the one compare-and-set that takes agents offline, for the
cron sweep and the admin's action alike.
"""

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agentchat.errors import InvalidCredentials
from agents import events
from agents.models import Agent, online_cutoff
from agents.services.credentials import REVOKED


class HeartbeatWrites:
    """When this process last stored each agent's heartbeat (monotonic seconds), to coalesce writes.

    A write is due once half a heartbeat interval has passed since the last
    one: a write skipped now is made by the next op or tick at most half an
    interval later, so the stored heartbeat of a live agent never lags by more
    than one interval.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._written: dict[UUID, float] = {}
        self._lock = threading.Lock()

    def claim(self, agent_ids: Iterable[UUID], *, force: bool = False) -> list[UUID]:
        """Return the agents due for a write now (all of them with `force`), remembering them as written."""
        now = self.clock()
        period = settings.AGENTCHAT["HEARTBEAT_INTERVAL"] / 2
        with self._lock:
            due = [pk for pk in agent_ids if force or now - self._written.get(pk, float("-inf")) >= period]
            for pk in due:
                self._written[pk] = now
        return due

    def is_due(self, agent_id: UUID) -> bool:
        """Whether a write for the agent would be made now (no database, nothing remembered)."""
        period = settings.AGENTCHAT["HEARTBEAT_INTERVAL"] / 2
        with self._lock:
            return self.clock() - self._written.get(agent_id, float("-inf")) >= period

    def seconds_since(self, agent_id: UUID) -> float:
        """How long ago this process last stored the agent's heartbeat (infinite: never)."""
        with self._lock:
            written = self._written.get(agent_id)
        return float("inf") if written is None else self.clock() - written

    def forget(self, agent_ids: Iterable[UUID]) -> None:
        """Forget the agents' writes: their next heartbeat is stored, and checked for a return from offline."""
        with self._lock:
            for pk in agent_ids:
                self._written.pop(pk, None)

    def clear(self) -> None:
        with self._lock:
            self._written.clear()


# The process's record of heartbeat writes.
heartbeat_writes = HeartbeatWrites()


def store_heartbeats(agent_ids: Iterable[UUID], *, now: datetime | None = None, op: str | None = None) -> int:
    """Store a heartbeat (and, with `op`, the last activity) for these agents, in one UPDATE."""
    agent_ids = list(agent_ids)
    if not agent_ids:
        return 0
    now = now or timezone.now()
    fields: dict[str, Any] = {"last_heartbeat": now, "status": Agent.Status.ONLINE}
    if op is not None:
        fields.update(last_activity=op, last_activity_at=now)
    registered = Agent.objects.filter(pk__in=agent_ids, unregistered_at__isnull=True)
    return registered.update(**fields)


def note_activity(agent: Agent, *, op: str, now: datetime | None = None) -> datetime:
    """Update the in-memory agent for an op (what a stored heartbeat would store); no database."""
    now = now or timezone.now()
    agent.last_heartbeat = now
    agent.last_activity = op
    agent.last_activity_at = now
    agent.status = Agent.Status.ONLINE
    return now


def heartbeat_due(agent: Agent, *, always: bool = False) -> bool:
    """Whether an op of the agent now calls for `record_activity` to store a heartbeat.

    Cheap and local: the transports ask it first, so that the many ops whose
    heartbeat is coalesced away cost no hop to the database thread.
    """
    return always or heartbeat_writes.is_due(agent.pk)


def record_activity(*, agent: Agent, op: str, always: bool = False, now: datetime | None = None) -> bool:
    """Count an op as a heartbeat; store it unless one was stored very recently.

    `always` stores it regardless (agent_heartbeat: a heartbeat that arrives
    late must not be hidden behind an older coalesced write). Returns whether
    a write happened. Also updates the in-memory `agent`. InvalidCredentials
    when the write finds the agent's credentials (as the caller holds them)
    revoked.
    """
    now = note_activity(agent, op=op, now=now)
    silent_for = heartbeat_writes.seconds_since(agent.pk)
    if not heartbeat_writes.claim([agent.pk], force=always):
        return False
    # Only the row of the credentials the caller holds: a write that finds no
    # row means they were revoked (a broadcast of it may have been lost).
    mine = Agent.objects.filter(
        pk=agent.pk, unregistered_at__isnull=True, credential_generation=agent.credential_generation
    )
    if silent_for >= settings.AGENTCHAT["AGENT_HEARTBEAT_TIMEOUT"]:
        # Silent here long enough for mark_offline_agents (or an admin) to have
        # taken it offline: the write itself tells whether it comes back online.
        back = mine.filter(status=Agent.Status.OFFLINE)
        if back.update(last_heartbeat=now, status=Agent.Status.ONLINE, last_activity=op, last_activity_at=now):
            transaction.on_commit(lambda: events.announce_presence(agent, online=True))
            return True
    if not mine.update(last_heartbeat=now, status=Agent.Status.ONLINE, last_activity=op, last_activity_at=now):
        heartbeat_writes.forget([agent.pk])
        raise InvalidCredentials(REVOKED)
    return True


def refresh_heartbeats(*, agent_ids: Iterable[UUID], now: datetime | None = None) -> int:
    """Store a heartbeat for agents waiting in msg_wait, in one UPDATE (the caller's tick is the coalescing)."""
    return store_heartbeats(heartbeat_writes.claim(set(agent_ids), force=True), now=now)


def heartbeat_would_lag(agent_id: UUID, *, seconds_to_next_write: float) -> bool:
    """Whether the agent's stored heartbeat would lag by more than an interval before that write.

    A wait that starts long before its process's next housekeeping tick
    stores its agent's heartbeat at once when this is true.
    """
    lag = heartbeat_writes.seconds_since(agent_id) + seconds_to_next_write
    return lag > settings.AGENTCHAT["HEARTBEAT_INTERVAL"]


def set_typing(*, agent: Agent, thread_id: str, is_typing: bool) -> None:
    """Tell observers the agent is (not) typing in a thread. Nothing is stored."""
    events.announce_typing(agent, thread_id=thread_id, is_typing=is_typing)


def mark_offline(
    *, stale_before: datetime | None = None, agent_ids: Iterable[UUID] | None = None, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Mark online agents offline in one compare-and-set UPDATE, and announce each change.

    `stale_before` keeps only agents whose stored heartbeat is older (the cron
    sweep); `agent_ids` keeps only those agents (the admin's action). The
    conditions sit in the UPDATE's WHERE, so a heartbeat committed before the
    UPDATE reaches the row keeps its agent online, and running it twice, or in
    two processes at once, changes nothing more. Returns the agents marked
    (with dry_run, those that would be), as {"id", "name"}.
    """
    conditions, params = ['"status" = %s'], [Agent.Status.ONLINE]
    queryset = Agent.objects.filter(status=Agent.Status.ONLINE)
    if stale_before is not None:
        conditions.append('"last_heartbeat" < %s')
        params.append(connection.ops.adapt_datetimefield_value(stale_before))
        queryset = queryset.filter(last_heartbeat__lt=stale_before)
    if agent_ids is not None:
        agent_ids = [UUID(str(pk)) for pk in agent_ids]
        if not agent_ids:
            return []
        conditions.append(f'"id" IN ({", ".join(["%s"] * len(agent_ids))})')
        params.extend(_db_uuid(pk) for pk in agent_ids)
        queryset = queryset.filter(pk__in=agent_ids)
    if dry_run:
        return list(queryset.values("id", "name"))
    # Equivalent to queryset.update(status=OFFLINE), also returning the rows it changed.
    sql = f'UPDATE "{Agent._meta.db_table}" SET "status" = %s WHERE {" AND ".join(conditions)} RETURNING "id", "name"'
    with connection.cursor() as cursor:
        cursor.execute(sql, [Agent.Status.OFFLINE, *params])
        rows = cursor.fetchall()
    marked = [{"id": _as_uuid(pk), "name": name} for pk, name in rows]
    heartbeat_writes.forget(row["id"] for row in marked)
    for row in marked:
        transaction.on_commit(lambda row=row: events.announce_offline(agent_id=row["id"], name=row["name"]))
    return marked


def mark_offline_agents(
    *, timeout: int | None = None, dry_run: bool = False, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The cron sweep: mark agents offline whose stored heartbeat is older than the timeout."""
    cutoff = online_cutoff(now) if timeout is None else (now or timezone.now()) - timedelta(seconds=timeout)
    return mark_offline(stale_before=cutoff, dry_run=dry_run)


def _db_uuid(pk: UUID) -> Any:
    return Agent._meta.pk.get_db_prep_value(pk, connection)


def _as_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
