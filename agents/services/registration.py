"""Agents: registration, credentials, profile and token rotation."""

import base64
import binascii
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from agentchat import tokens
from agentchat.errors import BadRequest, InvalidCredentials, NotFound
from agents import events
from agents.models import Agent, AgentNameCounter
from agents.services import credentials
from agents.services.limits import check_registration_rate
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
    """The next generated name for the pair: "IDE (Model)", then "IDE (Model) 2", "... 3".

    One upsert of the pair's counter row, whatever the number of agents: the
    database serializes concurrent registrations of the same pair, and a
    number it hands out is never handed out again (names freed by
    purge_inactive_agents are not reused).
    """
    base = name_base(ide, model)
    table = AgentNameCounter._meta.db_table
    # Equivalent to: counter, _ = get_or_create(base=base); counter.last_number += 1; counter.save()
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" ("base", "last_number") VALUES (%s, 1) '
            f'ON CONFLICT ("base") DO UPDATE SET "last_number" = "{table}"."last_number" + 1 '
            'RETURNING "last_number"',
            [base],
        )
        (number,) = cursor.fetchone()
    return base if number == 1 else f"{base} {number}"


def register_agent(
    *,
    ide: str,
    model: str,
    display_name: str = "",
    description: str = "",
    capabilities: list[str] | None = None,
    client_address: str | None = None,
    now: datetime | None = None,
) -> tuple[Agent, str]:
    """Create an agent and return it with its token (the only time it is shown).

    `client_address` (the address the request came from, given by the
    transports) is held to REGISTER_RATE_PER_MINUTE.
    """
    if not ide.strip():
        raise BadRequest("ide must not be empty.", field="ide")
    if not model.strip():
        raise BadRequest("model must not be empty.", field="model")
    now = now or timezone.now()
    with transaction.atomic():
        if client_address is not None:
            check_registration_rate(client_address, now=now)
        return _create_agent(
            ide=ide.strip(),
            model=model.strip(),
            display_name=display_name,
            description=description,
            capabilities=capabilities,
            client_address=client_address or "",
            now=now,
        )


def _create_agent(
    *,
    ide: str,
    model: str,
    display_name: str,
    description: str,
    capabilities: list[str] | None,
    client_address: str,
    now: datetime,
) -> tuple[Agent, str]:
    token = tokens.new_token()
    # The counter hands out each number once; a name taken anyway (by an agent
    # registered before the counter existed) makes us take the next number.
    for _attempt in range(20):
        name = _unique_name(ide, model)  # outside the savepoint: a collision keeps the number used
        try:
            with transaction.atomic():
                agent = Agent.objects.create(
                    name=name,
                    display_name=display_name,
                    ide=ide,
                    model=model,
                    description=description,
                    capabilities=capabilities or [],
                    token_hash=tokens.hash_token(token),
                    last_heartbeat=now,
                    status=Agent.Status.ONLINE,
                    last_activity="agent_register",
                    last_activity_at=now,
                    registered_at=now,
                    registered_from=client_address,
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


@transaction.atomic
def update_agent(
    *,
    agent: Agent,
    display_name: str | None = None,
    description: str | None = None,
    capabilities: list[str] | None = None,
) -> Agent:
    credentials.lock_agent(agent)
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


@transaction.atomic
def unregister_agent(*, agent: Agent, now: datetime | None = None) -> None:
    """Take the agent offline at once and void its token: every socket bound to it is refused from the commit on."""
    now = now or timezone.now()
    credentials.revoke(agent, unregistered_at=now, status=Agent.Status.OFFLINE, token_hash="")
    heartbeat_writes.forget([agent.pk])
    transaction.on_commit(lambda: events.announce_presence(agent, online=False))


@transaction.atomic
def rotate_token(*, agent: Agent) -> str:
    """Give the agent a new token; the old one, and every socket bound with it, stops working from the commit on."""
    token = tokens.new_token()
    credentials.revoke(agent, token_hash=tokens.hash_token(token))
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


def inactive_agents(*, days: int, now: datetime | None = None):
    """Agents without a heartbeat (nor a registration) for `days` days, unregistered ones included."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return Agent.objects.filter(last_heartbeat__lt=cutoff, registered_at__lt=cutoff)


@transaction.atomic
def purge_inactive_agents(*, days: int, dry_run: bool = False, now: datetime | None = None) -> list[dict]:
    """Delete agents inactive for `days` days; return them as {"id", "name"} (with dry_run, those that would be).

    Their messages stay, under the author's name (`author_name`; the author
    link becomes null), and so do their threads; their reply tokens go. The
    rows are locked and re-checked before the delete, so a heartbeat that
    commits first keeps its agent, and two runs at once delete each agent once.
    """
    if days <= 0:
        raise ValueError("days must be positive")
    stale = inactive_agents(days=days, now=now)
    if dry_run:
        return list(stale.order_by("registered_at").values("id", "name"))
    gone = list(stale.select_for_update().order_by("registered_at").values("id", "name"))
    if gone:
        Agent.objects.filter(pk__in=[row["id"] for row in gone]).delete()
        heartbeat_writes.forget(row["id"] for row in gone)
    return gone
