"""Agents: registration, credentials, profile and token rotation."""

import base64
import binascii
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentchat import tokens
from agentchat.errors import BadRequest, InvalidCredentials, NotFound
from agents import events
from agents.models import Agent
from agents.services.presence import heartbeat_writes, record_activity

# Room left in Agent.name for the " 12345" that tells same-named agents apart.
NAME_NUMBER_ROOM = 12


def name_base(ide: str, model: str) -> str:
    """ "IDE (Model)", cut to fit Agent.name with room for a number (ide and model may be 100 characters each)."""
    room = Agent._meta.get_field("name").max_length - NAME_NUMBER_ROOM - len(" ()")
    if len(ide) + len(model) > room:
        # Cut each to half the room (the shorter one keeps what the longer cannot use); "…" marks the cut.
        half = room // 2
        ide_room = max(half, room - len(model))
        model_room = room - min(len(ide), ide_room)
        ide = ide if len(ide) <= ide_room else ide[: ide_room - 1] + "…"
        model = model if len(model) <= model_room else model[: model_room - 1] + "…"
    return f"{ide} ({model})"


def _unique_name(ide: str, model: str) -> str:
    base = name_base(ide, model)
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
    heartbeat_writes.claim([agent.pk])  # registering stored a heartbeat
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


def authenticate_token(*, token: str) -> Agent:
    """Return the agent a token belongs to (a bearer token alone), or raise InvalidCredentials.

    The lookup is by hash; the stored hash is then compared in constant time,
    as for `authenticate`. A rotated or voided token matches no agent.
    """
    agent = Agent.objects.filter(token_hash=tokens.hash_token(token), unregistered_at__isnull=True).first()
    if token == "" or agent is None or not tokens.token_matches(token, agent.token_hash):
        raise InvalidCredentials("Unknown agent or wrong token.")
    return agent


def resume_agent(*, agent_id: str, token: str) -> Agent:
    """Bind a returning agent: check its credentials and count it as a heartbeat."""
    agent = authenticate(agent_id=agent_id, token=token)
    heartbeat_writes.forget([agent.pk])  # store this heartbeat, and announce a return from offline
    record_activity(agent=agent, op="agent_resume")
    return agent


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
    heartbeat_writes.forget([agent.pk])
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


def page_agents(
    *, online_only: bool = False, limit: int = 100, after: str | None = None, now: datetime | None = None
) -> tuple[list[Agent], bool]:
    """agent_list: up to `limit` agents by name after the cursor, and whether more follow."""
    queryset = Agent.objects.online(now=now) if online_only else Agent.objects.registered()
    if after is not None:
        queryset = queryset.filter(name__gt=decode_agent_cursor(after))
    page = list(queryset.order_by("name")[: limit + 1])
    return page[:limit], len(page) > limit


def encode_agent_cursor(agent: Agent) -> str:
    """An opaque cursor after this agent (names are unique, and agents are listed by name)."""
    return base64.urlsafe_b64encode(agent.name.encode()).decode().rstrip("=")


def decode_agent_cursor(cursor: str) -> str:
    try:
        padded = (cursor + "=" * (-len(cursor) % 4)).encode()
        name = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        name = "\x00"
    if "\x00" in name:
        raise BadRequest("cursor is not a cursor returned by agent_list.", field="cursor")
    return name


def get_agent(*, agent_id: str) -> Agent:
    try:
        return Agent.objects.get(pk=agent_id)
    except (Agent.DoesNotExist, ValidationError, ValueError):
        raise NotFound("agent") from None
