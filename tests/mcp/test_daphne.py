"""The official `mcp` client against a real daphne: tools, identity, waits, shutdown."""

import asyncio
import re
import signal
import time
from pathlib import Path

import httpx2
import pytest
from channels.db import database_sync_to_async
from mcp.shared.exceptions import MCPError

from agentchat import ops
from agents import services as agent_services
from agents.models import Agent as AgentModel
from tests.mcp.support import call, daphne, error, mcp_client
from tests.support.wire import WireClient

pytestmark = pytest.mark.django_db(transaction=True)

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with daphne() as running:
        yield running


async def register(url: str, name: str = "t") -> dict:
    """Register over MCP without a bearer token (bus_connect); return its result (token included)."""
    async with mcp_client(url) as client:
        return await call(client, "bus_connect", {"thread_name": name, "ide": "CLI", "model": "MCP"})


def post_args(joined: dict, content: str, thread_id: str | None = None) -> dict:
    """msg_post arguments from the sync context of a result (and its thread, unless given)."""
    return {
        "thread_id": thread_id or joined["thread"]["thread_id"],
        "content": content,
        "expected_last_seq": joined["current_seq"],
        "reply_token": joined["reply_token"],
    }


def protocol_ops() -> set[str]:
    """The op names of PROTOCOL.md's tables."""
    names = set()
    for line in PROTOCOL.read_text().splitlines():
        match = re.match(r"\| `(\w+)`(?: / `(\w+)`)? \|", line)
        if match:
            names.update(name for name in match.groups() if name)
    return names


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_every_op_is_a_tool_in_both_protocol_eras(server, mode):
    async with mcp_client(server.mcp_url, mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        if mode == "auto":
            assert client.session.protocol_version >= "2026"
        else:
            assert client.session.protocol_version < "2026"
        assert set(tools) == set(ops.OPS)
        assert protocol_ops() & set(ops.OPS) == protocol_ops() & set(tools)
        for tool in tools.values():
            assert tool.description and "\n" not in tool.description
            assert tool.input_schema["type"] == "object"
        assert tools["msg_post"].input_schema["properties"]["expected_last_seq"]["type"] == "integer"
        assert set(tools["msg_wait"].input_schema["required"]) == {"thread_id", "after_seq"}
        config = await call(client, "bus_get_config")
        assert config["version"] == ops.PROTOCOL_VERSION


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_bearer_token_connect_create_post_wait(server, mode):
    joined = await register(server.mcp_url, f"bearer-{mode}")
    token, agent_id = joined["token"], joined["agent"]["agent_id"]
    async with mcp_client(server.mcp_url, token, mode=mode) as client:
        again = await call(client, "bus_connect", {"thread_name": f"bearer-{mode}"})
        assert again["agent"]["agent_id"] == agent_id and "token" not in again
        created = await call(client, "thread_create", {"topic": f"created-{mode}"})
        posted = await call(client, "msg_post", post_args(created, "first"))
        assert posted["message"]["author_id"] == agent_id and posted["message"]["seq"] == 1
        thread_id = created["thread"]["thread_id"]
        waited = await call(client, "msg_wait", {"thread_id": thread_id, "after_seq": 0})
        assert [m["content"] for m in waited["messages"]] == ["first"]
        # A timeout is a normal empty result with a fresh sync context.
        empty = await call(client, "msg_wait", {"thread_id": thread_id, "after_seq": 1, "timeout_ms": 300})
        assert empty["messages"] == [] and empty["current_seq"] == 1 and empty["reply_token"]
        assert await call(client, "msg_post", post_args(empty, "second", thread_id))
        for result in (again, created, posted, waited, empty):
            assert token not in str(result)


async def test_without_bearer_register_then_post_with_agent_id_and_token(server):
    async with mcp_client(server.mcp_url) as client:
        joined = await call(client, "bus_connect", {"thread_name": "anonymous", "ide": "Gemini", "model": "CLI"})
        creds = {"agent_id": joined["agent"]["agent_id"], "token": joined["token"]}
        posted = await call(client, "msg_post", {**post_args(joined, "with args"), **creds})
        assert posted["message"]["author_id"] == creds["agent_id"]
        assert (await error(client, "msg_post", post_args(posted, "no creds", joined["thread"]["thread_id"])))[
            "code"
        ] == "Unauthenticated"
        wrong = {**creds, "token": "not-the-token"}
        assert (await error(client, "msg_post", {**post_args(posted, "bad", joined["thread"]["thread_id"]), **wrong}))[
            "code"
        ] == "InvalidCredentials"
        half = await error(client, "agent_heartbeat", {"agent_id": creds["agent_id"]})
        assert half == {"code": "BadRequest", "message": "agent_id and token go together.", "field": "token"}
        # AgentChatBus names: message_id, author.
        got = await call(client, "msg_get", {"message_id": posted["message"]["msg_id"], **creds})
        assert got["message"]["content"] == "with args"
        by_label = await call(
            client,
            "msg_post",
            {**post_args(posted, "labelled", joined["thread"]["thread_id"]), "author": "gemini", **creds},
        )
        assert by_label["message"]["seq"] == 2


async def test_bad_rotated_and_unregistered_bearer_tokens_get_401(server):
    joined = await register(server.mcp_url, "tokens")
    agent = await database_sync_to_async(AgentModel.objects.get)(pk=joined["agent"]["agent_id"])
    old = joined["token"]
    new = await database_sync_to_async(agent_services.rotate_token)(agent=agent)
    other = await register(server.mcp_url, "tokens")
    await database_sync_to_async(agent_services.unregister_agent)(
        agent=await database_sync_to_async(AgentModel.objects.get)(pk=other["agent"]["agent_id"])
    )
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(timeout=10) as http:
        for token in ("garbage", old, other["token"]):
            response = await http.post(
                server.mcp_url, json=body, headers={**headers, "Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith('Bearer realm="agentchat", error="invalid_token"')
            assert token not in response.text
        response = await http.post(server.mcp_url, json=body, headers={**headers, "Authorization": "Basic eDp5"})
        assert response.status_code == 401
    async with mcp_client(server.mcp_url, new) as client:
        assert (await call(client, "agent_heartbeat"))["ok"] is True
        # A bearer token and arguments naming another agent: refused.
        refused = await error(client, "agent_heartbeat", {"agent_id": other["agent"]["agent_id"]})
        assert refused["code"] == "InvalidCredentials"


async def test_host_and_origin_come_from_django_settings(server):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(timeout=10) as http:
        evil_host = await http.post(server.mcp_url, json=body, headers={**headers, "Host": "evil.example"})
        assert evil_host.status_code == 421
        evil_origin = await http.post(server.mcp_url, json=body, headers={**headers, "Origin": "https://evil.example"})
        assert evil_origin.status_code == 403
        ok = await http.post(
            server.mcp_url, json=body, headers={**headers, "Host": "localhost", "Origin": "http://localhost:3000"}
        )
        assert ok.status_code != 421 and ok.status_code != 403


async def test_sync_errors_are_tool_errors_with_their_codes(server):
    joined = await register(server.mcp_url, "sync-errors")
    async with mcp_client(server.mcp_url, joined["token"]) as client:
        args = post_args(joined, "one")
        assert (await call(client, "msg_post", args))["message"]["seq"] == 1
        replay = await error(client, "msg_post", {**args, "expected_last_seq": 1})
        assert replay["code"] == "ReplyTokenReplay"
        missing = await error(client, "msg_post", {"thread_id": args["thread_id"], "content": "x"})
        assert missing["code"] == "MissingSyncFields"
        behind = await error(client, "msg_post", {**args, "reply_token": joined["reply_token"], "client_msg_id": "b"})
        assert behind["code"] in {"SeqMismatch", "ReplyTokenReplay"}
        typed = await error(client, "msg_list", {"thread_id": args["thread_id"], "after_seq": "zero"})
        assert typed["code"] == "BadRequest" and typed["field"] == "after_seq"
        unknown = await error(client, "thread_get", {"thread_id": "00000000-0000-0000-0000-000000000000"})
        assert unknown == {"code": "NotFound", "message": "No such thread.", "resource": "thread"}


async def test_seq_mismatch_carries_the_new_messages(server):
    first = await register(server.mcp_url, "mismatch")
    second = await register(server.mcp_url, "mismatch")
    async with mcp_client(server.mcp_url, first["token"]) as a, mcp_client(server.mcp_url, second["token"]) as b:
        await call(a, "msg_post", post_args(first, "from a"))
        refused = await error(b, "msg_post", post_args(second, "from b"))
        assert refused["code"] == "SeqMismatch" and refused["current_seq"] == 1
        assert [m["content"] for m in refused["new_messages"]] == ["from a"]


async def test_mcp_waiter_woken_by_websocket_post_and_the_reverse(server):
    joined = await register(server.mcp_url, "mixed")
    thread_id = joined["thread"]["thread_id"]
    ws = await WireClient.over_websocket(server.ws_url)
    try:
        ws_joined = await ws.call("bus_connect", {"thread_name": "mixed", "ide": "CLI", "model": "WS"})
        async with mcp_client(server.mcp_url, joined["token"]) as client:
            wait = asyncio.create_task(
                call(client, "msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000})
            )
            await asyncio.sleep(0.5)
            started = time.monotonic()
            await ws.call("msg_post", post_args(ws_joined, "from the socket"))
            woken = await asyncio.wait_for(wait, 10)
            assert time.monotonic() - started < 3
            assert [m["content"] for m in woken["messages"]] == ["from the socket"]

            ws_wait = await ws.send("msg_wait", {"thread_id": thread_id, "after_seq": 1, "timeout_ms": 20000})
            await asyncio.sleep(0.5)
            await call(client, "msg_post", post_args(woken, "from mcp", thread_id))
            reply = await ws.reply(ws_wait, timeout=10)
            assert [m["content"] for m in reply["result"]["messages"]] == ["from mcp"]
    finally:
        await ws.close()


async def test_progress_notifications_arrive_during_a_long_wait(server):
    joined = await register(server.mcp_url, "progress")
    received = []

    async def progress(value, total, message):
        received.append((time.monotonic(), value, total, message))

    async with mcp_client(server.mcp_url, joined["token"]) as client:
        started = time.monotonic()
        result = await call(
            client,
            "msg_wait",
            {"thread_id": joined["thread"]["thread_id"], "after_seq": 0, "timeout_ms": 3500},
            progress_callback=progress,
        )
    assert result["messages"] == [] and result["reply_token"]
    assert len(received) >= 2  # every second in the tests (15 s by default)
    assert all(total == 3.5 and message == "waiting for new messages" for _, _, total, message in received)
    assert received[0][0] - started < 2.5


async def test_default_wait_timeout_applies_over_mcp(server):
    joined = await register(server.mcp_url, "default-timeout")
    async with mcp_client(server.mcp_url, joined["token"]) as client:
        started = time.monotonic()
        result = await call(client, "msg_wait", {"thread_id": joined["thread"]["thread_id"], "after_seq": 0})
        assert 2.5 < time.monotonic() - started < 8  # AGENTCHAT_MCP_WAIT_DEFAULT_MS=3000 in the tests
        assert result["messages"] == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_cancelled_wait_leaves_the_current_token_usable(server, mode):
    joined = await register(server.mcp_url, f"cancel-{mode}")
    async with mcp_client(server.mcp_url, joined["token"], mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool(
                "msg_wait",
                {"thread_id": joined["thread"]["thread_id"], "after_seq": 0, "timeout_ms": 1500},
                read_timeout_seconds=0.5,
            )
        await asyncio.sleep(2)  # past the wait's own timeout: had it run on, it would have voided the token
        posted = await call(client, "msg_post", post_args(joined, "still valid"))
        assert posted["message"]["seq"] == 1


def stop_within(process, seconds: float) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=seconds)
    return time.monotonic() - started


async def test_daphne_exits_soon_after_sigterm_after_mcp_use():
    with daphne() as server:
        joined = await register(server.mcp_url, "shutdown")
        async with mcp_client(server.mcp_url, joined["token"]) as client:
            await call(client, "agent_list")
            await call(
                client, "msg_wait", {"thread_id": joined["thread"]["thread_id"], "after_seq": 0, "timeout_ms": 200}
            )
        assert stop_within(server.process, 5) < 5, server.output()


async def test_daphne_exits_soon_after_sigterm_with_a_session_open_and_a_wait_pending():
    with daphne() as server:
        joined = await register(server.mcp_url, "shutdown-open")
        waiting = asyncio.Event()

        async def hold_a_session_open() -> None:
            async with mcp_client(server.mcp_url, joined["token"]) as client:
                wait = client.call_tool("msg_wait", {"thread_id": joined["thread"]["thread_id"], "after_seq": 0})
                waiting.set()
                await wait

        holder = asyncio.create_task(hold_a_session_open())
        await waiting.wait()
        await asyncio.sleep(0.5)
        elapsed = await asyncio.to_thread(stop_within, server.process, 5)
        assert elapsed < 5, server.output()
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)  # the client sees the server go away
