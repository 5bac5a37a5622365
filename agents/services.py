"""
Agent operations: registration, credentials, heartbeats and presence.

Where a heartbeat gets written: `record_activity` (any op by a bound agent) and
`refresh_heartbeats` (agents waiting in msg_wait, one UPDATE per process per
tick). Both coalesce through `_due_for_write`, so an agent costs the database
at most two small UPDATEs per heartbeat interval however busy it is.
"""

import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from agentchat import tokens
from agentchat.errors import BadRequest, InvalidCredentials, NotFound
from agents import events
from agents.models import Agent, online_cutoff

# agent id -> monotonic time of the last heartbeat this process stored for it.
_last_written: dict[UUID, float] = {}
_last_written_lock = threading.Lock()


def _write_period() -> float:
    """Store a live agent's heartbeat at most this often (seconds).

    Half the interval: a write skipped now is made by the next op or tick at
    most half an interval later, so the stored heartbeat of a live agent never
    lags by more than one interval.
    """
    return settings.AGENTCHAT["HEARTBEAT_INTERVAL"] / 2


def _due_for_write(agent_ids: Iterable[UUID]) -> list[UUID]:
    now = time.monotonic()
    period = _write_period()
    with _last_written_lock:
        due = [pk for pk in agent_ids if now - _last_written.get(pk, float("-inf")) >= period]
        for pk in due:
            _last_written[pk] = now
    return due


def seconds_since_write(agent_id: UUID) -> float:
    """How long ago this process last stored the agent's heartbeat (infinite: never)."""
    with _last_written_lock:
        written = _last_written.get(agent_id)
    return float("inf") if written is None else time.monotonic() - written


def _forget_writes(agent_ids: Iterable[UUID]) -> None:
    with _last_written_lock:
        for pk in agent_ids:
            _last_written.pop(pk, None)


def _unique_name(ide: str, model: str) -> str:
    base = f"{ide} ({model})"
    taken = set(Agent.objects.filter(name__startswith=base).values_list("name", flat=True))
    if base not in taken:
        return base
    n = 2
    while f"{base} {n}" in taken:
        n += 1
    return f"{base} {n}"


def register_agent(
    *,
    ide: str,
    model: str,
    display_name: str = "",
    description: str = "",
    capabilities: list[str] | None = None,
) -> tuple[Agent, str]:
    """Create an agent and return it with its token (the only time it is shown)."""
    if not ide.strip():
        raise BadRequest("ide must not be empty.", field="ide")
    if not model.strip():
        raise BadRequest("model must not be empty.", field="model")
    token = tokens.new_token()
    now = timezone.now()
    # Two agents registering with the same IDE and model race for the same
    # name; the unique index settles it and the loser takes the next number.
    for _attempt in range(20):
        try:
            with transaction.atomic():
                agent = Agent.objects.create(
                    name=_unique_name(ide.strip(), model.strip()),
                    display_name=display_name,
                    ide=ide.strip(),
                    model=model.strip(),
                    description=description,
                    capabilities=capabilities or [],
                    token_hash=tokens.hash_token(token),
                    last_heartbeat=now,
                    status=Agent.Status.ONLINE,
                    last_activity="agent_register",
                    last_activity_at=now,
                    registered_at=now,
                )
        except IntegrityError:  # the name was taken in the meantime
            continue
        break
    else:  # pragma: no cover - needs 20 collisions in a row
        raise RuntimeError("Could not allocate a unique agent name.")
    _due_for_write([agent.pk])
    transaction.on_commit(lambda: events.announce_presence(agent, online=True))
    return agent, token


def authenticate(*, agent_id: str, token: str) -> Agent:
    """Return the agent the credentials belong to, or raise InvalidCredentials."""
    try:
        agent = Agent.objects.get(pk=agent_id, unregistered_at__isnull=True)
    except (Agent.DoesNotExist, ValidationError, ValueError):
        # Same answer as a wrong token: nothing tells which part was wrong.
        raise InvalidCredentials("Unknown agent or wrong token.") from None
    if not tokens.token_matches(token, agent.token_hash):
        raise InvalidCredentials("Unknown agent or wrong token.")
    return agent


def resume_agent(*, agent_id: str, token: str) -> Agent:
    """Bind a returning agent: check its credentials and count it as a heartbeat."""
    agent = authenticate(agent_id=agent_id, token=token)
    _forget_writes([agent.pk])  # store this heartbeat, and announce a return from offline
    record_activity(agent=agent, op="agent_resume")
    return agent


def record_activity(*, agent: Agent, op: str, always: bool = False, now: datetime | None = None) -> bool:
    """Count an op as a heartbeat; store it unless one was stored very recently.

    `always` stores it regardless (agent_heartbeat: a heartbeat that arrives
    late must not be hidden behind an older coalesced write). Returns whether
    a write happened. Also updates the in-memory `agent`.
    """
    now = now or timezone.now()
    agent.last_heartbeat = now
    agent.last_activity = op
    agent.last_activity_at = now
    agent.status = Agent.Status.ONLINE
    with _last_written_lock:
        previous = _last_written.get(agent.pk)
    if not _due_for_write([agent.pk]) and not always:
        return False
    fields = {"last_heartbeat": now, "status": Agent.Status.ONLINE, "last_activity": op, "last_activity_at": now}
    registered = Agent.objects.filter(pk=agent.pk, unregistered_at__isnull=True)
    timeout = settings.AGENTCHAT["AGENT_HEARTBEAT_TIMEOUT"]
    if previous is None or time.monotonic() - previous >= timeout:
        # Silent long enough for mark_offline_agents to have flipped it: the
        # write itself tells whether it comes back online.
        if registered.filter(status=Agent.Status.OFFLINE).update(**fields):
            transaction.on_commit(lambda: events.announce_presence(agent, online=True))
            return True
    registered.update(**fields)
    return True


def refresh_heartbeats(*, agent_ids: Iterable[UUID], now: datetime | None = None) -> int:
    """Store a fresh heartbeat for every given agent, in one UPDATE.

    Each process calls this once per heartbeat interval for the agents waiting
    in it: the tick is the coalescing, so every agent is written.
    """
    agent_ids = set(agent_ids)
    if not agent_ids:
        return 0
    moment = time.monotonic()
    with _last_written_lock:
        for pk in agent_ids:
            _last_written[pk] = moment
    return Agent.objects.filter(pk__in=agent_ids, unregistered_at__isnull=True).update(
        last_heartbeat=now or timezone.now(), status=Agent.Status.ONLINE
    )


def update_agent(
    *,
    agent: Agent,
    display_name: str | None = None,
    description: str | None = None,
    capabilities: list[str] | None = None,
) -> Agent:
    fields = []
    if display_name is not None:
        agent.display_name = display_name
        fields.append("display_name")
    if description is not None:
        agent.description = description
        fields.append("description")
    if capabilities is not None:
        agent.capabilities = capabilities
        fields.append("capabilities")
    if fields:
        agent.save(update_fields=fields)
    return agent


def unregister_agent(*, agent: Agent, now: datetime | None = None) -> None:
    """Take the agent offline at once and void its token."""
    now = now or timezone.now()
    Agent.objects.filter(pk=agent.pk).update(unregistered_at=now, status=Agent.Status.OFFLINE, token_hash="")
    agent.unregistered_at = now
    agent.status = Agent.Status.OFFLINE
    agent.token_hash = ""
    _forget_writes([agent.pk])
    transaction.on_commit(lambda: events.announce_presence(agent, online=False))


def rotate_token(*, agent: Agent) -> str:
    """Give the agent a new token; the old one stops working at once."""
    token = tokens.new_token()
    Agent.objects.filter(pk=agent.pk).update(token_hash=tokens.hash_token(token))
    agent.token_hash = tokens.hash_token(token)
    return token


def list_agents(*, online_only: bool = False, now: datetime | None = None) -> list[Agent]:
    queryset = Agent.objects.online(now=now) if online_only else Agent.objects.registered()
    return list(queryset.order_by("name"))


def get_agent(*, agent_id: str) -> Agent:
    try:
        return Agent.objects.get(pk=agent_id)
    except (Agent.DoesNotExist, ValidationError, ValueError):
        raise NotFound("agent") from None


def set_typing(*, agent: Agent, thread_id: str, is_typing: bool) -> None:
    """Tell observers the agent is (not) typing in a thread. Nothing is stored."""
    events.announce_typing(agent, thread_id=thread_id, is_typing=is_typing)


def mark_offline_agents(
    *, timeout: int | None = None, dry_run: bool = False, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Mark agents offline whose stored heartbeat is older than the timeout.

    One conditional UPDATE does it: the staleness test sits in its WHERE, so a
    heartbeat committed before the UPDATE reaches the row keeps the agent
    online, and one committed after it flips the agent back to online. Running
    it twice, or in two processes at once, changes nothing more. Returns the
    agents it marked (or, with dry_run, would mark).
    """
    cutoff = online_cutoff(now) if timeout is None else (now or timezone.now()) - timedelta(seconds=timeout)
    stale = Agent.objects.filter(status=Agent.Status.ONLINE, last_heartbeat__lt=cutoff)
    if dry_run:
        return list(stale.values("id", "name"))
    table = Agent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" SET "status" = %s WHERE "status" = %s AND "last_heartbeat" < %s RETURNING "id", "name"',
            [Agent.Status.OFFLINE, Agent.Status.ONLINE, connection.ops.adapt_datetimefield_value(cutoff)],
        )
        rows = cursor.fetchall()
    marked = [{"id": _as_uuid(pk), "name": name} for pk, name in rows]
    _forget_writes(row["id"] for row in marked)
    for row in marked:
        transaction.on_commit(lambda row=row: events.announce_offline(agent_id=row["id"], name=row["name"]))
    return marked


def _as_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
