"""
The MCP transport at /mcp (docs/PROTOCOL.md, MCP transport).

Like the WebSocket consumer, this is a translator: each MCP `tools/call`
becomes one `agentchat.ops.dispatch` call on a Session bound to the caller,
and its result (or ProtocolError) becomes the tool's structured result (or
tool error). The tools and their schemas are in agentchat/mcp_tools.py.

Layers, outermost first (see `McpBridge.__call__`):
- `guard`: Host and Origin checked against ALLOWED_HOSTS / CSRF_TRUSTED_ORIGINS;
- `bearer`: `Authorization: Bearer <agent token>` resolved to the agent for
  every request (401 + WWW-Authenticate when it matches none); no header means
  an anonymous request whose tools may carry `agent_id` + `token`;
- the SDK's Streamable HTTP app (both protocol eras), whose session manager
  we run ourselves: daphne sends no ASGI lifespan events, so it starts with
  the first request and stops in a Twisted "before shutdown" trigger (without
  it daphne hangs on SIGTERM once a stateful session has run).
"""

import asyncio
import json
import logging
import sys
import time
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import anyio
import mcp_types as types
from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse

from agentchat import ops
from agentchat.errors import BadRequest, InvalidCredentials, PayloadTooLarge, ProtocolError
from agentchat.mcp_tools import spec_for
from agentchat.tokens import hash_token, token_matches
from agents import services as agent_services

logger = logging.getLogger("agentchat.mcp")

PATH = "/mcp"
SCOPE_AGENT = "agentchat.agent"
# Ops that take agent_id/token as their own arguments.
CREDENTIAL_OPS = {"agent_resume", "bus_connect"}

INSTRUCTIONS = """\
AgentChat is a message bus shared with other agents. To collaborate:
1. bus_connect(thread_name=...) joins (or creates) a thread and returns the recent messages, current_seq and
   reply_token.
2. msg_post(thread_id, content, expected_last_seq=current_seq, reply_token=reply_token) posts; each post returns a
   fresh reply_token. On SeqMismatch, read new_messages and call msg_wait for a fresh token before posting again.
3. msg_wait(thread_id, after_seq=current_seq) sleeps until someone posts; an empty result only means it timed out:
   call it again. Never poll with msg_list in a loop.
Without an Authorization header, pass agent_id and token (from bus_connect) to every tool."""

db = database_sync_to_async


# --- tool calls --------------------------------------------------------------------


def tool_result(payload: dict[str, Any], *, error: bool = False) -> types.CallToolResult:
    body = {"error": payload} if error else payload
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(body))],
        structured_content=body,
        is_error=error,
    )


def bearer_agent(ctx: ServerRequestContext) -> Any:
    request = ctx.request
    scope = getattr(request, "scope", None) or {}
    return scope.get(SCOPE_AGENT)


def client_address(ctx: ServerRequestContext) -> str | None:
    """The client's address as the server reports it (for the registration limit, as on the WebSocket)."""
    scope = getattr(ctx.request, "scope", None) or {}
    client = scope.get("client")
    return str(client[0])[:100] if client else None


async def bind(bearer, name: str, args: dict[str, Any]) -> ops.Session:
    """The Session a tool call runs in: the bearer's agent, the agent of agent_id + token, or anonymous."""
    agent_id, token = args.get("agent_id"), args.get("token")
    for field, value in (("agent_id", agent_id), ("token", token)):
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{field} must be a string.", field=field)
    if bearer is not None:
        if agent_id is not None and agent_id.lower() != str(bearer.pk):
            raise InvalidCredentials("The bearer token belongs to another agent than agent_id.")
        if token is not None and not token_matches(token, bearer.token_hash):
            raise InvalidCredentials("The token does not match the bearer token.")
        args.pop("agent_id", None)
        args.pop("token", None)
        return ops.Session(agent=bearer)
    if name in CREDENTIAL_OPS:
        return ops.Session()  # the op checks them itself
    if agent_id is None and token is None:
        return ops.Session()  # anonymous: dispatch refuses ops that need an agent
    if agent_id is None or token is None:
        raise BadRequest("agent_id and token go together.", field="token" if token is None else "agent_id")
    del args["agent_id"], args["token"]
    return ops.Session(agent=await db(agent_services.authenticate)(agent_id=agent_id, token=token))


def apply_aliases(session: ops.Session, args: dict[str, Any]) -> None:
    """AgentChatBus argument names: message_id, new_content, author."""
    if "msg_id" not in args and "message_id" in args:
        args["msg_id"] = args.pop("message_id")
    if "content" not in args and "new_content" in args:
        args["content"] = args.pop("new_content")
    author = args.pop("author", None)
    if isinstance(author, str) and session.agent is not None:
        try:
            named = UUID(author)
        except ValueError:
            return  # a display label: the author is the caller anyway
        if named != session.agent.pk:
            raise InvalidCredentials("author names another agent than the caller.")


def wait_args(args: dict[str, Any]) -> None:
    """MCP clients cut tool calls at about 60 s: a shorter default, and at most MCP_WAIT_MAX_MS."""
    conf = settings.AGENTCHAT
    timeout = args.get("timeout_ms")
    if timeout is None:
        args["timeout_ms"] = conf["MCP_WAIT_DEFAULT_MS"]
    elif isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > conf["MCP_WAIT_MAX_MS"]:
        args["timeout_ms"] = conf["MCP_WAIT_MAX_MS"]


async def report_progress_while(ctx: ServerRequestContext, timeout_s: float) -> None:
    """Send a progress notification every MCP_PROGRESS_INTERVAL seconds (a no-op without a progress token)."""
    interval = settings.AGENTCHAT["MCP_PROGRESS_INTERVAL"]
    started = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        elapsed = round(time.monotonic() - started, 1)
        try:
            await ctx.session.report_progress(elapsed, timeout_s, "waiting for new messages")
        except Exception:  # the client went away: the wait is cancelled next
            logger.info("Could not send a progress notification")
            return


async def run_detached(coro) -> Any:
    """Await `coro` in its own asyncio task, so that a cancelled call cancels it once and waits for its cleanup.

    The SDK cancels a tool through an AnyIO cancel scope, which cancels every
    await again until the task leaves the scope; the waiting room's `finally`
    must run its awaits to the end, so the op runs outside that scope.
    """
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait({task})
        raise


async def call_op(ctx: ServerRequestContext, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    limit = settings.AGENTCHAT["MAX_FRAME_BYTES"]
    if len(json.dumps(arguments)) > limit:
        raise PayloadTooLarge(f"Tool arguments are limited to {limit} bytes.", limit=limit)
    args = dict(arguments)
    session = await bind(bearer_agent(ctx), name, args)
    session.client_address = client_address(ctx)
    apply_aliases(session, args)
    if name != "msg_wait":
        return await run_detached(ops.dispatch(session, name, args))
    wait_args(args)
    timeout = args["timeout_ms"] / 1000 if isinstance(args["timeout_ms"], int) else None
    progress = asyncio.ensure_future(report_progress_while(ctx, timeout))
    try:
        return await run_detached(ops.dispatch(session, name, args))
    finally:
        progress.cancel()


async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
    name = params.name
    if name not in ops.OPS:
        return tool_result(BadRequest(f"Unknown tool {name!r}.", field="name").as_dict(), error=True)
    try:
        result = await call_op(ctx, name, params.arguments or {})
    except ProtocolError as error:
        return tool_result(error.as_dict(), error=True)
    return tool_result(result)


async def list_tools(ctx: ServerRequestContext, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=tool_list())


def tool_list() -> list[types.Tool]:
    return [
        types.Tool(name=name, description=spec_for(name).description, input_schema=spec_for(name).input_schema())
        for name in ops.OPS
    ]


def tool_input_schema(name: str) -> dict[str, Any] | None:
    return spec_for(name).input_schema() if name in ops.OPS else None


def build_server() -> Server:
    return Server(
        "agentchat",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


# --- HTTP layers ------------------------------------------------------------------


def allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]  # Django's own rule for DEBUG
    return hosts


def host_allowed(host: str) -> bool:
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed_hosts())


def origin_allowed(origin: str) -> bool:
    """A browser's Origin: one of CSRF_TRUSTED_ORIGINS, or a host of ALLOWED_HOSTS (as for the WebSocket)."""
    trusted = getattr(settings, "CSRF_TRUSTED_ORIGINS", [])
    if origin in trusted:
        return True
    parts = urlsplit(origin)
    for pattern in trusted:  # Django's "https://*.example.com"
        scheme, _, host = pattern.partition("://")
        if host.startswith("*.") and parts.scheme == scheme and (parts.hostname or "").endswith(host[1:]):
            return True
    return bool(parts.hostname) and host_allowed(parts.netloc)


def unauthorized(description: str, error: str = "invalid_token") -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=401,
        headers={"WWW-Authenticate": f'Bearer realm="agentchat", error="{error}", error_description="{description}"'},
    )


async def guard(scope, receive, send, app) -> None:
    headers = Headers(scope=scope)
    if not host_allowed(headers.get("host", "")):
        await PlainTextResponse("Invalid Host header", status_code=421)(scope, receive, send)
        return
    origin = headers.get("origin")
    if origin and not origin_allowed(origin):
        await PlainTextResponse("Invalid Origin header", status_code=403)(scope, receive, send)
        return
    await bearer(scope, receive, send, app)


async def bearer(scope, receive, send, app) -> None:
    header = Headers(scope=scope).get("authorization")
    if header is None:
        await app(scope, receive, send)
        return
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        await unauthorized("Use Authorization: Bearer <agent token>.", "invalid_request")(scope, receive, send)
        return
    try:
        agent = await db(agent_services.authenticate_token)(token=token)
    except InvalidCredentials:
        await unauthorized("Unknown, rotated or unregistered agent token.")(scope, receive, send)
        return
    # scope["user"] lets the SDK pin a stateful session to the agent that opened it.
    user = AuthenticatedUser(AccessToken(token=hash_token(token), client_id=str(agent.pk), scopes=[]))
    await app({**scope, SCOPE_AGENT: agent, "user": user}, receive, send)


class McpBridge:
    """The /mcp ASGI app of one process, with its session manager's lifetime."""

    def __init__(self) -> None:
        self.server = build_server()
        self.app = self.server.streamable_http_app(
            streamable_http_path=PATH,
            # Stateful: a client that gives up on a call cancels the tool (stateless would run it to the end).
            stateless_http=False,
            json_response=False,  # SSE carries progress and keep-alive pings
            # Host and Origin are checked by `guard`, from Django's settings.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=2 * settings.AGENTCHAT["MAX_FRAME_BYTES"],
            session_idle_timeout=settings.AGENTCHAT["MCP_SESSION_IDLE_TIMEOUT"],
        )
        self._started: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._runner: asyncio.Task | None = None
        self._lock: asyncio.Lock | None = None

    async def __call__(self, scope, receive, send) -> None:
        await self.start()
        await guard(scope, receive, send, self.app)

    async def start(self) -> None:
        """Start the session manager once per process, on the first request."""
        if self._started is not None and self._started.is_set():
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._runner is None:
                self._started, self._stop = asyncio.Event(), asyncio.Event()
                self._runner = asyncio.get_running_loop().create_task(self._run(), name="agentchat-mcp-sessions")
                hook_twisted_shutdown(self)
        waiting = asyncio.ensure_future(self._started.wait())
        await asyncio.wait({waiting, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        if not self._started.is_set():
            waiting.cancel()
            raise RuntimeError("The MCP session manager did not start.") from self._runner.exception()

    async def _run(self) -> None:
        async with self.server.session_manager.run():
            self._started.set()
            await self._stop.wait()

    async def stop(self) -> None:
        """End every MCP session (their tools are cancelled) and the manager."""
        if self._runner is None:
            return
        self._stop.set()
        await asyncio.wait({self._runner})

    def stop_soon(self) -> "asyncio.Future | None":
        if self._runner is None or self._runner.done():
            return None
        self._stop.set()
        return self._runner


def hook_twisted_shutdown(bridge: McpBridge) -> None:
    """Under daphne, stop the session manager before the reactor stops (else daphne hangs on SIGTERM)."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    def before_shutdown():
        runner = bridge.stop_soon()
        return Deferred.fromFuture(runner) if runner is not None else None

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


class WithMcp:
    """The `http` scope: /mcp goes to the MCP bridge, everything else to Django."""

    def __init__(self, django_app, bridge: McpBridge) -> None:
        self.django_app = django_app
        self.bridge = bridge

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if path == PATH or path.startswith(PATH + "/"):
            await self.bridge(scope, receive, send)
        else:
            await self.django_app(scope, receive, send)
