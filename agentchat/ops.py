"""
The protocol's operations (docs/PROTOCOL.md), whatever the transport.

Where a request becomes a domain call: `dispatch` finds the op, checks that
the session may run it, counts it as a heartbeat, and runs its handler. Each
handler checks the types and limits of its `args` (agentchat/protocol.py),
makes one call into agents.services, threads.services or threads.selectors,
and shapes the result. Rules live in those modules, not here; the WebSocket
consumer (threads/consumers.py) only turns frames into `dispatch` calls.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError

from agentchat.errors import BadRequest, InvalidCredentials, NotFound, ProtocolError, Unauthenticated
from agentchat.protocol import Args
from agentchat.transport import reply_budget, size, take_within
from agents import revocations
from agents import services as agent_services
from agents.models import Agent
from agents.serializers import agent_to_dict
from agents.services.credentials import REVOKED
from threads import search, selectors, services
from threads.models import Message, Thread, ThreadTemplate
from threads.serializers import (
    edit_to_dict,
    message_to_dict,
    messages_to_list,
    participant_to_dict,
    reaction_to_dict,
    receipt_to_dict,
    template_to_dict,
    thread_to_dict,
)
from threads.waiting_room import wait_for_messages

logger = logging.getLogger("agentchat.ops")

PROTOCOL_VERSION = 1
MAX_WAIT_MS = 3_600_000
MAX_SEARCH_QUERY_CHARS = 1000
MAX_PARTICIPANTS = 1000
# Receipts in one msg_receipts reply at most (a message addressed to nobody has one per participant).
MAX_RECEIPTS = 1000

db = database_sync_to_async


def max_length(model: type, field: str) -> int:
    """The longest string a model field stores: the edge refuses longer ones before the database sees them."""
    return model._meta.get_field(field).max_length


@dataclass(eq=False)
class Session:
    """One agent's conversation with the bus: anonymous until an op binds it to an agent.

    The transport creates it with the client's address (for the registration
    limit; None when the transport has none) and calls `close` when the
    conversation ends.
    """

    agent: Agent | None = None
    client_address: str | None = None

    def bind(self, agent: Agent | None) -> None:
        """Bind the session to an agent (None: anonymous again); hear revocations while bound."""
        self.agent = agent
        if agent is not None:
            revocations.listener().add(self)

    async def close(self) -> None:
        await revocations.listener().discard(self)


Handler = Callable[[Session, Args], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Op:
    name: str
    handler: Handler
    # Allowed on an anonymous session (PROTOCOL.md, Fine points).
    anonymous: bool
    # Ops that bind or unbind a session are not heartbeats of the agent bound before them.
    heartbeat: bool


OPS: dict[str, Op] = {}


def op(name: str, *, anonymous: bool = False, heartbeat: bool = True) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPS[name] = Op(name=name, handler=handler, anonymous=anonymous, heartbeat=heartbeat)
        return handler

    return register


async def dispatch(session: Session, name: str, raw_args: dict[str, Any]) -> dict[str, Any]:
    """Run one request; every failure comes out as a ProtocolError (never a stack trace)."""
    try:
        operation = OPS.get(name)
        if operation is None:
            raise BadRequest(f"Unknown op {name[:64]!r}.", field="op")
        if session.agent is None and not operation.anonymous:
            raise Unauthenticated("Bind this session first with agent_register, agent_resume or bus_connect.")
        if session.agent is not None and revocations.is_revoked(session.agent):
            # Unregistered or token rotated, here or in another process: the
            # session may bind afresh (the anonymous ops); anything else is refused.
            if not operation.anonymous:
                raise InvalidCredentials(REVOKED)
            session.bind(None)
        # Values no database stores alike are refused here, before any of them is touched.
        args = Args(raw_args)
        if session.agent is not None and operation.heartbeat:
            # Any op by a bound agent counts as a heartbeat; agent_heartbeat is always stored.
            # Most are coalesced away, decided here without a hop to the database thread.
            always = name == "agent_heartbeat"
            if agent_services.heartbeat_due(session.agent, always=always):
                await db(agent_services.record_activity)(agent=session.agent, op=name, always=always)
            else:
                agent_services.note_activity(session.agent, op=name)
        return await operation.handler(session, args)
    except ProtocolError:
        raise
    except (OperationalError, InterfaceError) as error:
        # Connection lost or database restarting: nothing was committed, so a
        # retry (msg_post with the same client_msg_id) is safe.
        logger.warning("Op %s failed on the database: %s", name, error.__class__.__name__)
        raise ProtocolError("The database is unavailable; retry the request.", retryable=True) from None
    except Exception:
        # A bug: log it (the op name only, never the args: they may hold tokens).
        logger.exception("Op %s failed", name)
        raise ProtocolError("Internal error; the request was not completed.") from None


def page_within_reply(
    rows: list[Any], has_more: bool, *, serialize: Callable[[Any], dict], cursor: Callable[[Any], str]
) -> tuple[list[dict[str, Any]], str | None, bool]:
    """A page of `rows` cut to what fits in one reply: (items, next_cursor, has_more)."""
    listed = take_within([serialize(row) for row in rows], reply_budget())
    has_more = has_more or len(listed) < len(rows)
    return listed, cursor(rows[len(listed) - 1]) if has_more else None, has_more


def canonical_uuid(value: str, *, resource: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise NotFound(resource) from None


# --- agents ---------------------------------------------------------------------


@op("agent_register", anonymous=True, heartbeat=False)
async def agent_register(session: Session, args: Args) -> dict[str, Any]:
    agent, token = await db(agent_services.register_agent)(
        ide=args.str("ide", required=True, max_length=max_length(Agent, "ide")),
        model=args.str("model", required=True, max_length=max_length(Agent, "model")),
        display_name=args.str("display_name", default="", max_length=max_length(Agent, "display_name")),
        description=args.str("description", default=""),
        capabilities=args.str_list("capabilities"),
        client_address=session.client_address,
    )
    session.bind(agent)
    return {"agent_id": str(agent.pk), "token": token, "name": agent.name, "agent": agent_to_dict(agent)}


@op("agent_resume", anonymous=True, heartbeat=False)
async def agent_resume(session: Session, args: Args) -> dict[str, Any]:
    agent = await db(agent_services.resume_agent)(
        agent_id=args.id("agent_id", required=True), token=args.str("token", required=True)
    )
    session.bind(agent)
    return {"agent": agent_to_dict(agent)}


@op("agent_heartbeat")
async def agent_heartbeat(session: Session, args: Args) -> dict[str, Any]:
    return {"ok": True, "next_heartbeat_in": settings.AGENTCHAT["HEARTBEAT_INTERVAL"]}


@op("agent_update")
async def agent_update(session: Session, args: Args) -> dict[str, Any]:
    agent = await db(agent_services.update_agent)(
        agent=session.agent,
        display_name=args.str("display_name", max_length=max_length(Agent, "display_name")),
        description=args.str("description"),
        capabilities=args.str_list("capabilities"),
    )
    return {"agent": agent_to_dict(agent)}


@op("agent_unregister", heartbeat=False)
async def agent_unregister(session: Session, args: Args) -> dict[str, Any]:
    await db(agent_services.unregister_agent)(agent=session.agent)
    session.bind(None)
    return {"ok": True}


@op("agent_list")
async def agent_list(session: Session, args: Args) -> dict[str, Any]:
    agents, has_more = await db(agent_services.page_agents)(
        online_only=args.bool("online_only", default=False),
        limit=args.limit("limit", default=100, maximum=500),
        after=args.str("cursor", max_length=2000),
    )
    listed, next_cursor, has_more = page_within_reply(
        agents, has_more, serialize=agent_to_dict, cursor=agent_services.encode_agent_cursor
    )
    return {"agents": listed, "next_cursor": next_cursor, "has_more": has_more}


@op("agent_set_typing")
async def agent_set_typing(session: Session, args: Args) -> dict[str, Any]:
    thread_id = args.id("thread_id", required=True)
    is_typing = args.bool("is_typing", required=True)
    await db(selectors.get_thread)(thread_id=thread_id)
    await db(agent_services.set_typing)(agent=session.agent, thread_id=thread_id, is_typing=is_typing)
    return {"ok": True}


# --- threads ----------------------------------------------------------------------


@op("thread_create")
async def thread_create(session: Session, args: Args) -> dict[str, Any]:
    thread, sync = await db(services.create_thread)(
        agent=session.agent,
        topic=args.str("topic", required=True, max_length=max_length(Thread, "topic")),
        system_prompt=args.text("system_prompt") or "",
        template_id=args.id("template"),
        metadata=args.object("metadata"),
    )
    return {"thread": thread_to_dict(thread), **sync.as_dict()}


@op("thread_list")
async def thread_list(session: Session, args: Args) -> dict[str, Any]:
    threads, has_more = await db(selectors.list_threads)(
        status=args.choice("status", Thread.Status.values),
        limit=args.limit("limit", default=50, maximum=200),
        before=args.str("before"),
    )
    listed, next_cursor, has_more = page_within_reply(
        threads, has_more, serialize=thread_to_dict, cursor=selectors.encode_cursor
    )
    return {"threads": listed, "next_cursor": next_cursor, "has_more": has_more}


@op("thread_get")
async def thread_get(session: Session, args: Args) -> dict[str, Any]:
    thread, overdue = await db(selectors.thread_with_overdue_count)(thread_id=args.id("thread_id", required=True))
    return {"thread": thread_to_dict(thread), "overdue_replies": overdue}


@op("thread_participants")
async def thread_participants(session: Session, args: Args) -> dict[str, Any]:
    participants, has_more = await db(selectors.thread_participants)(
        thread_id=args.id("thread_id", required=True),
        limit=args.limit("limit", default=200, maximum=MAX_PARTICIPANTS),
    )
    listed = take_within([participant_to_dict(p) for p in participants], reply_budget())
    return {"participants": listed, "has_more": has_more or len(listed) < len(participants)}


@op("thread_set_state")
async def thread_set_state(session: Session, args: Args) -> dict[str, Any]:
    thread = await db(services.set_thread_state)(
        thread_id=args.id("thread_id", required=True),
        state=args.str("state", required=True, max_length=max_length(Thread, "status")),
        agent=session.agent,
    )
    return {"thread": thread_to_dict(thread)}


@op("thread_close")
async def thread_close(session: Session, args: Args) -> dict[str, Any]:
    thread = await db(services.close_thread)(
        thread_id=args.id("thread_id", required=True), summary=args.text("summary"), agent=session.agent
    )
    return {"thread": thread_to_dict(thread)}


@op("thread_archive")
async def thread_archive(session: Session, args: Args) -> dict[str, Any]:
    thread = await db(services.archive_thread)(thread_id=args.id("thread_id", required=True), agent=session.agent)
    return {"thread": thread_to_dict(thread)}


@op("thread_set_administrator")
async def thread_set_administrator(session: Session, args: Args) -> dict[str, Any]:
    thread, announcement = await db(services.set_administrator)(
        thread_id=args.id("thread_id", required=True),
        agent_id=args.id("administrator_agent_id", required=True),
        agent=session.agent,
    )
    return {
        "thread": thread_to_dict(thread),
        "announcement": message_to_dict(announcement) if announcement is not None else None,
    }


@op("bus_get_config", anonymous=True)
async def bus_get_config(session: Session, args: Args) -> dict[str, Any]:
    conf = settings.AGENTCHAT
    return {
        "version": PROTOCOL_VERSION,
        "heartbeat_interval": conf["HEARTBEAT_INTERVAL"],
        "heartbeat_timeout": conf["AGENT_HEARTBEAT_TIMEOUT"],
        "msg_wait_timeout_ms": conf["MSG_WAIT_TIMEOUT_MS"],
        "seq_tolerance": conf["SEQ_TOLERANCE"],
        "rate_limit_per_minute": conf["RATE_LIMIT_PER_MINUTE"],
        "max_message_chars": conf["MAX_MESSAGE_CHARS"],
    }


@op("bus_connect", anonymous=True, heartbeat=False)
async def bus_connect(session: Session, args: Args) -> dict[str, Any]:
    joined = await db(services.bus_connect)(
        agent=session.agent,
        thread_id=args.id("thread_id"),
        thread_name=args.str("thread_name", max_length=max_length(Thread, "topic")),
        ide=args.str("ide", max_length=max_length(Agent, "ide")),
        model=args.str("model", max_length=max_length(Agent, "model")),
        agent_id=args.id("agent_id"),
        token=args.str("token"),
        after_seq=args.int("after_seq", default=0, minimum=0),
        client_address=session.client_address,
    )
    session.bind(joined.agent)
    result = {
        "agent": agent_to_dict(joined.agent),
        "thread": thread_to_dict(joined.thread),
        "created": joined.created,
        "is_administrator": joined.is_administrator,
        "system_prompt": joined.system_prompt,
        "messages": [],
        "truncated": joined.truncated,
        **joined.sync.as_dict(),
    }
    if joined.token is not None:
        result["token"] = joined.token
    # The newest unseen messages that fit beside the rest; the token does not
    # depend on them (it covers the whole thread), so older ones can be left
    # to msg_list.
    messages = messages_to_list(joined.messages)
    result["messages"] = take_within(messages, reply_budget() - size(result), newest_first=True, at_least_one=False)
    result["truncated"] = joined.truncated or len(result["messages"]) < len(messages)
    return result


# --- messages ---------------------------------------------------------------------


@op("msg_post")
async def msg_post(session: Session, args: Args) -> dict[str, Any]:
    message, sync = await db(services.post_message)(
        agent=session.agent,
        thread_id=args.id("thread_id", required=True),
        content=args.text("content", required=True),
        expected_last_seq=args.int("expected_last_seq", minimum=0),
        reply_token=args.str("reply_token"),
        role=args.str("role", default=Message.Role.ASSISTANT, max_length=max_length(Message, "role")),
        priority=args.str("priority", default=Message.Priority.NORMAL, max_length=max_length(Message, "priority")),
        reply_to_msg_id=args.id("reply_to_msg_id"),
        metadata=args.object("metadata"),
        client_msg_id=args.str("client_msg_id", max_length=max_length(Message, "client_msg_id")),
    )
    return {"message": message_to_dict(message), **sync.as_dict()}


@op("msg_list")
async def msg_list(session: Session, args: Args) -> dict[str, Any]:
    listed, has_more, current_seq = await db(services.list_messages_for)(
        agent=session.agent,
        thread_id=args.id("thread_id", required=True),
        after_seq=args.int("after_seq", default=0, minimum=0),
        limit=args.limit("limit", default=100, maximum=1000),
    )
    return {"messages": listed, "has_more": has_more, "current_seq": current_seq}


@op("msg_get")
async def msg_get(session: Session, args: Args) -> dict[str, Any]:
    message, reactions = await db(services.get_message_for)(
        agent=session.agent, msg_id=args.id("msg_id", required=True)
    )
    return {"message": message_to_dict(message), "reactions": [reaction_to_dict(r) for r in reactions]}


@op("msg_receipts")
async def msg_receipts(session: Session, args: Args) -> dict[str, Any]:
    message, receipts, has_more = await db(selectors.message_receipts)(
        msg_id=args.id("msg_id", required=True), limit=MAX_RECEIPTS
    )
    result = {"message": message_to_dict(message), "receipts": [], "has_more": has_more}
    listed = take_within([receipt_to_dict(r) for r in receipts], reply_budget() - size(result), at_least_one=False)
    result["receipts"] = listed
    result["has_more"] = has_more or len(listed) < len(receipts)
    return result


@op("msg_wait")
async def msg_wait(session: Session, args: Args) -> dict[str, Any]:
    # The canonical form names the thread's group and keys the waiting room.
    thread_id = canonical_uuid(args.id("thread_id", required=True), resource="thread")
    after_seq = args.int("after_seq", required=True, minimum=0)
    timeout_ms = args.int(
        "timeout_ms", default=settings.AGENTCHAT["MSG_WAIT_TIMEOUT_MS"], minimum=0, maximum=MAX_WAIT_MS
    )
    for_agent = args.id("for_agent")
    limit = args.limit("limit", default=100, maximum=1000)
    agent = session.agent
    # A wait ends early, refused, when the agent's credentials are revoked meanwhile:
    # the revocation cancels this task (no task or event per wait).
    task = asyncio.current_task()
    revoked = False

    def on_revoked() -> None:
        nonlocal revoked
        revoked = True
        task.cancel()

    revocations.watch(agent, on_revoked)
    try:
        result = await wait_for_messages(
            agent=agent,
            thread_id=thread_id,
            after_seq=after_seq,
            timeout=timeout_ms / 1000,
            for_agent=for_agent,
            limit=limit,
        )
    except asyncio.CancelledError:
        if not revoked:
            raise
        task.uncancel()
        raise InvalidCredentials(REVOKED) from None
    finally:
        revocations.unwatch(agent, on_revoked)
    # The messages are encoded once for every waiter the same read served (transport.EncodedList).
    return {"messages": result.payload, "has_more": result.has_more, **result.sync.as_dict()}


@op("msg_edit")
async def msg_edit(session: Session, args: Args) -> dict[str, Any]:
    edited = await db(services.edit_message)(
        msg_id=args.id("msg_id", required=True), content=args.text("content", required=True), agent=session.agent
    )
    return {"message": message_to_dict(edited.message), "no_change": not edited.changed}


@op("msg_edit_history")
async def msg_edit_history(session: Session, args: Args) -> dict[str, Any]:
    message, edits = await db(selectors.edit_history)(msg_id=args.id("msg_id", required=True))
    # The old content of a human-only message is as hidden from agents as its content.
    return {"msg_id": str(message.pk), "edits": [edit_to_dict(e, hidden=message.is_human_only) for e in edits]}


@op("msg_react")
async def msg_react(session: Session, args: Args) -> dict[str, Any]:
    reaction, created = await db(services.react)(
        agent=session.agent,
        msg_id=args.id("msg_id", required=True),
        reaction=args.str("reaction", required=True, max_length=services.MAX_REACTION_CHARS),
    )
    return {"reaction": reaction_to_dict(reaction), "created": created}


@op("msg_unreact")
async def msg_unreact(session: Session, args: Args) -> dict[str, Any]:
    removed = await db(services.unreact)(
        agent=session.agent,
        msg_id=args.id("msg_id", required=True),
        reaction=args.str("reaction", required=True, max_length=services.MAX_REACTION_CHARS),
    )
    return {"removed": removed}


@op("msg_search")
async def msg_search(session: Session, args: Args) -> dict[str, Any]:
    hits, next_cursor = await db(search.search_messages)(
        query=args.str("query", required=True, max_length=MAX_SEARCH_QUERY_CHARS),
        thread_id=args.id("thread_id"),
        limit=args.limit("limit", default=20, maximum=100),
        cursor=args.str("cursor", max_length=200),
    )
    return {
        "results": [
            {"message": message_to_dict(hit.message), "snippet": hit.snippet, "rank": hit.rank} for hit in hits
        ],
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
    }


# --- templates --------------------------------------------------------------------


@op("template_list")
async def template_list(session: Session, args: Args) -> dict[str, Any]:
    templates = await db(selectors.list_templates)()
    return {"templates": [template_to_dict(template) for template in templates]}


@op("template_get")
async def template_get(session: Session, args: Args) -> dict[str, Any]:
    template = await db(selectors.get_template)(
        template_id=args.str("template_id", required=True, max_length=max_length(ThreadTemplate, "id"))
    )
    return {"template": template_to_dict(template)}
