"""
The agent WebSocket at /ws/agent/ (PROTOCOL.md).

Where a frame becomes a domain call: `receive` parses and checks the frame,
`handle` runs one request as its own task (so a pending msg_wait never blocks
the socket), and each `op_*` method turns `args` into one call of
agents.services, threads.services or threads.selectors, and the result into a
reply. Rules live in those modules, not here.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError

from agentchat.errors import BadRequest, NotFound, PayloadTooLarge, ProtocolError, Unauthenticated
from agentchat.protocol import Args
from agents import services as agent_services
from agents.models import Agent
from agents.serializers import agent_to_dict
from threads import selectors, services
from threads.models import Thread
from threads.serializers import message_to_dict, messages_to_list, thread_to_dict
from threads.waiters import wait_for_messages

logger = logging.getLogger("agentchat.consumer")

PROTOCOL_VERSION = 1
MAX_WAIT_MS = 3_600_000

# Ops an anonymous socket may use.
ANONYMOUS_OPS = {"agent_register", "agent_resume", "bus_connect", "bus_get_config"}

db = database_sync_to_async

Handler = Callable[["AgentConsumer", Args], Awaitable[dict[str, Any]]]
OPS: dict[str, Handler] = {}


def op(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPS[name] = handler
        return handler

    return register


def canonical_uuid(value: str, *, resource: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise NotFound(resource) from None


class AgentConsumer(AsyncWebsocketConsumer):
    # No channel per socket: the process's waiting room (threads/waiters.py)
    # holds the one subscription that wakes every wait. An alias that names no
    # layer makes Channels skip the per-socket channel and its receive loop.
    channel_layer_alias = "agentchat-no-per-socket-channel"

    agent: Agent | None = None

    async def connect(self) -> None:
        self.agent = None
        self.requests: set[asyncio.Task] = set()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        # Cancels pending waits; their `finally` blocks leave the waiting room.
        for task in list(self.requests):
            task.cancel()
        await asyncio.gather(*self.requests, return_exceptions=True)

    # --- frames ---------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.reply_error(None, BadRequest("Frames must be JSON text, not binary."))
            return
        limit = settings.AGENTCHAT["MAX_FRAME_BYTES"]
        if len(text_data) > limit or len(text_data.encode()) > limit:
            await self.reply_error(None, PayloadTooLarge(f"Frames are limited to {limit} bytes.", limit=limit))
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.reply_error(None, BadRequest("The frame is not valid JSON."))
            return
        if not isinstance(frame, dict):
            await self.reply_error(None, BadRequest("A frame must be a JSON object."))
            return
        request_id = frame.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int, type(None))):
            await self.reply_error(None, BadRequest("id must be a string or an integer.", field="id"))
            return
        name, args = frame.get("op"), frame.get("args", {})
        if not isinstance(name, str):
            await self.reply_error(request_id, BadRequest("The frame has no op.", field="op"))
            return
        if args is None:
            args = {}
        if not isinstance(args, dict):
            await self.reply_error(request_id, BadRequest("args must be an object.", field="args"))
            return
        task = asyncio.create_task(self.handle(request_id, name, Args(args)))
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)

    async def handle(self, request_id: Any, name: str, args: Args) -> None:
        try:
            handler = OPS.get(name)
            if handler is None:
                raise BadRequest(f"Unknown op {name!r}.", field="op")
            if self.agent is None and name not in ANONYMOUS_OPS:
                raise Unauthenticated("Bind this socket first with agent_register, agent_resume or bus_connect.")
            if self.agent is not None and name not in ("agent_register", "agent_resume", "agent_unregister"):
                # Any op by a bound agent counts as a heartbeat; agent_heartbeat is always stored.
                await db(agent_services.record_activity)(agent=self.agent, op=name, always=name == "agent_heartbeat")
            result = await handler(self, args)
        except ProtocolError as error:
            await self.reply_error(request_id, error)
        except (OperationalError, InterfaceError) as error:
            # Connection lost or database restarting: nothing was committed, so a
            # retry (msg_post with the same client_msg_id) is safe.
            logger.warning("Op %s failed on the database: %s", name, error.__class__.__name__)
            await self.reply_error(
                request_id,
                ProtocolError("The database is unavailable; retry the request.", retryable=True),
            )
        except Exception:
            # A bug: log it (the op name only, never the args: they may hold tokens).
            logger.exception("Op %s failed", name)
            await self.reply_error(request_id, ProtocolError("Internal error; the request was not completed."))
        else:
            await self.send(text_data=json.dumps({"id": request_id, "ok": True, "result": result}))

    async def reply_error(self, request_id: Any, error: ProtocolError) -> None:
        await self.send(text_data=json.dumps({"id": request_id, "ok": False, "error": error.as_dict()}))

    # --- agents -----------------------------------------------------------------

    @op("agent_register")
    async def op_agent_register(self, args: Args) -> dict[str, Any]:
        agent, token = await db(agent_services.register_agent)(
            ide=args.str("ide", required=True, max_length=100),
            model=args.str("model", required=True, max_length=100),
            display_name=args.str("display_name", default="", max_length=200),
            description=args.str("description", default=""),
            capabilities=args.str_list("capabilities"),
        )
        self.agent = agent
        return {"agent_id": str(agent.pk), "token": token, "name": agent.name, "agent": agent_to_dict(agent)}

    @op("agent_resume")
    async def op_agent_resume(self, args: Args) -> dict[str, Any]:
        agent = await db(agent_services.resume_agent)(
            agent_id=args.id("agent_id", required=True), token=args.str("token", required=True)
        )
        self.agent = agent
        return {"agent": agent_to_dict(agent)}

    @op("agent_heartbeat")
    async def op_agent_heartbeat(self, args: Args) -> dict[str, Any]:
        return {"ok": True, "next_heartbeat_in": settings.AGENTCHAT["HEARTBEAT_INTERVAL"]}

    @op("agent_update")
    async def op_agent_update(self, args: Args) -> dict[str, Any]:
        agent = await db(agent_services.update_agent)(
            agent=self.agent,
            display_name=args.str("display_name", max_length=200),
            description=args.str("description"),
            capabilities=args.str_list("capabilities"),
        )
        return {"agent": agent_to_dict(agent)}

    @op("agent_unregister")
    async def op_agent_unregister(self, args: Args) -> dict[str, Any]:
        await db(agent_services.unregister_agent)(agent=self.agent)
        self.agent = None
        return {"ok": True}

    @op("agent_list")
    async def op_agent_list(self, args: Args) -> dict[str, Any]:
        agents = await db(agent_services.list_agents)(online_only=args.bool("online_only", default=False))
        return {"agents": [agent_to_dict(agent) for agent in agents]}

    @op("agent_set_typing")
    async def op_agent_set_typing(self, args: Args) -> dict[str, Any]:
        thread_id = args.id("thread_id", required=True)
        is_typing = args.bool("is_typing", required=True)
        await db(selectors.get_thread)(thread_id=thread_id)
        await db(agent_services.set_typing)(agent=self.agent, thread_id=thread_id, is_typing=is_typing)
        return {"ok": True}

    # --- threads ----------------------------------------------------------------

    @op("thread_create")
    async def op_thread_create(self, args: Args) -> dict[str, Any]:
        thread, sync = await db(services.create_thread)(
            agent=self.agent,
            topic=args.str("topic", required=True, max_length=services.MAX_TOPIC_CHARS),
            system_prompt=args.text("system_prompt") or "",
            template_id=args.id("template"),
            metadata=args.object("metadata"),
        )
        return {"thread": thread_to_dict(thread), **sync.as_dict()}

    @op("thread_list")
    async def op_thread_list(self, args: Args) -> dict[str, Any]:
        status = args.str("status", max_length=20)
        if status is not None and status not in Thread.Status.values:
            raise BadRequest(f"status must be one of {', '.join(Thread.Status.values)}.", field="status")
        threads, has_more = await db(selectors.list_threads)(
            status=status, limit=args.limit("limit", default=50, maximum=200), before=args.str("before")
        )
        return {
            "threads": [thread_to_dict(thread) for thread in threads],
            "next_cursor": selectors.encode_cursor(threads[-1]) if has_more else None,
            "has_more": has_more,
        }

    @op("thread_get")
    async def op_thread_get(self, args: Args) -> dict[str, Any]:
        thread = await db(selectors.get_thread)(thread_id=args.id("thread_id", required=True))
        return {"thread": thread_to_dict(thread)}

    @op("thread_set_state")
    async def op_thread_set_state(self, args: Args) -> dict[str, Any]:
        thread = await db(services.set_thread_state)(
            thread_id=args.id("thread_id", required=True), state=args.str("state", required=True, max_length=20)
        )
        return {"thread": thread_to_dict(thread)}

    @op("thread_close")
    async def op_thread_close(self, args: Args) -> dict[str, Any]:
        thread = await db(services.close_thread)(
            thread_id=args.id("thread_id", required=True), summary=args.text("summary")
        )
        return {"thread": thread_to_dict(thread)}

    @op("thread_archive")
    async def op_thread_archive(self, args: Args) -> dict[str, Any]:
        thread = await db(services.archive_thread)(thread_id=args.id("thread_id", required=True))
        return {"thread": thread_to_dict(thread)}

    @op("bus_get_config")
    async def op_bus_get_config(self, args: Args) -> dict[str, Any]:
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

    @op("bus_connect")
    async def op_bus_connect(self, args: Args) -> dict[str, Any]:
        connection = await db(services.bus_connect)(
            agent=self.agent,
            thread_id=args.id("thread_id"),
            thread_name=args.str("thread_name", max_length=services.MAX_TOPIC_CHARS),
            ide=args.str("ide", max_length=100),
            model=args.str("model", max_length=100),
            agent_id=args.id("agent_id"),
            token=args.str("token"),
            after_seq=args.int("after_seq", default=0, minimum=0),
        )
        self.agent = connection.agent
        result = {
            "agent": agent_to_dict(connection.agent),
            "thread": thread_to_dict(connection.thread),
            "created": connection.created,
            "is_administrator": connection.is_administrator,
            "system_prompt": connection.system_prompt,
            "messages": messages_to_list(connection.messages),
            "truncated": connection.truncated,
            **connection.sync.as_dict(),
        }
        if connection.token is not None:
            result["token"] = connection.token
        return result

    # --- messages ---------------------------------------------------------------

    @op("msg_post")
    async def op_msg_post(self, args: Args) -> dict[str, Any]:
        message, sync = await db(services.post_message)(
            agent=self.agent,
            thread_id=args.id("thread_id", required=True),
            content=args.text("content", required=True),
            expected_last_seq=args.int("expected_last_seq"),
            reply_token=args.str("reply_token"),
            role=args.str("role", default="assistant", max_length=20),
            priority=args.str("priority", default="normal", max_length=20),
            reply_to_msg_id=args.id("reply_to_msg_id"),
            metadata=args.object("metadata"),
            client_msg_id=args.str("client_msg_id", max_length=200),
        )
        return {"message": message_to_dict(message), **sync.as_dict()}

    @op("msg_list")
    async def op_msg_list(self, args: Args) -> dict[str, Any]:
        thread_id = args.id("thread_id", required=True)
        after_seq = args.int("after_seq", default=0, minimum=0)
        limit = args.limit("limit", default=100, maximum=1000)

        def read() -> tuple[list, int]:
            thread = selectors.get_thread(thread_id=thread_id)
            return selectors.list_messages(thread=thread, after_seq=after_seq, limit=limit), thread.last_seq

        messages, current_seq = await db(read)()
        return {"messages": messages_to_list(messages), "current_seq": current_seq}

    @op("msg_get")
    async def op_msg_get(self, args: Args) -> dict[str, Any]:
        message = await db(selectors.get_message)(msg_id=args.id("msg_id", required=True))
        # Reactions arrive with msg_react; until then a message has none.
        return {"message": message_to_dict(message), "reactions": []}

    @op("msg_wait")
    async def op_msg_wait(self, args: Args) -> dict[str, Any]:
        # The canonical form names the thread's group and keys the waiting room.
        thread_id = canonical_uuid(args.id("thread_id", required=True), resource="thread")
        after_seq = args.int("after_seq", required=True, minimum=0)
        default_ms = settings.AGENTCHAT["MSG_WAIT_TIMEOUT_MS"]
        timeout_ms = args.int("timeout_ms", default=default_ms, minimum=0, maximum=MAX_WAIT_MS)
        for_agent = args.id("for_agent")
        limit = args.limit("limit", default=100, maximum=1000)
        result = await wait_for_messages(
            agent=self.agent,
            thread_id=thread_id,
            after_seq=after_seq,
            timeout=timeout_ms / 1000,
            for_agent=for_agent,
            limit=limit,
        )
        return {"messages": messages_to_list(result.messages), "has_more": result.has_more, **result.sync.as_dict()}
