"""The MCP tool table, and tool calls through the SDK's in-memory client."""

import asyncio
import re
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from agentchat import ops
from agentchat.mcp_bridge import build_server
from agentchat.mcp_tools import TOOLS
from tests.mcp.support import call, error
from threads.waiting_room import get_waiting_room

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def test_every_op_has_a_tool_schema():
    """Adding an op to agentchat/ops.py needs one entry in agentchat/mcp_tools.TOOLS."""
    missing = sorted(set(ops.OPS) - set(TOOLS))
    assert not missing, f"Ops without an MCP tool schema in agentchat/mcp_tools.py: {missing}"


def test_every_tool_schema_names_a_documented_or_implemented_op():
    documented = set(re.findall(r"^\| `(\w+)`", PROTOCOL.read_text(), re.MULTILINE))
    documented |= set(re.findall(r"^\| `\w+` / `(\w+)`", PROTOCOL.read_text(), re.MULTILINE))
    assert set(TOOLS) <= set(ops.OPS) | documented


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_schemas_are_well_formed(name):
    spec = TOOLS[name]
    schema = spec.input_schema()
    assert set(spec.required) <= set(schema["properties"])
    assert spec.description.endswith(".") and "\n" not in spec.description
    for prop in schema["properties"].values():
        assert "type" in prop


def in_memory() -> Client:
    """The SDK's in-memory client on a fresh server (no HTTP: every call is anonymous or carries agent_id + token)."""
    return Client(build_server(), mode="legacy")


@pytest.mark.django_db(transaction=True)
async def test_anonymous_style_and_aliases_in_process():
    async with in_memory() as client:
        await check_anonymous_style_and_aliases(client)


async def check_anonymous_style_and_aliases(client):
    joined = await call(client, "bus_connect", {"thread_name": "in-process", "ide": "CLI", "model": "Mem"})
    creds = {"agent_id": joined["agent"]["agent_id"], "token": joined["token"]}
    thread_id = joined["thread"]["thread_id"]
    assert (await error(client, "agent_list"))["code"] == "Unauthenticated"
    posted = await call(
        client,
        "msg_post",
        {
            "thread_id": thread_id,
            "content": "hello",
            "expected_last_seq": 0,
            "reply_token": joined["reply_token"],
            "author": joined["agent"]["agent_id"],
            **creds,
        },
    )
    other = "00000000-0000-0000-0000-000000000001"
    named = await error(client, "msg_get", {"message_id": posted["message"]["msg_id"], "author": other, **creds})
    assert named["code"] == "InvalidCredentials"
    got = await call(client, "msg_get", {"message_id": posted["message"]["msg_id"], **creds})
    assert got["message"]["content"] == "hello"
    assert (await error(client, "no_such_tool"))["code"] == "BadRequest"


@pytest.mark.django_db(transaction=True)
async def test_a_cancelled_wait_leaves_the_waiting_room_and_issues_no_token():
    async with in_memory() as client:
        await check_cancelled_wait(client)


async def check_cancelled_wait(client):
    joined = await call(client, "bus_connect", {"thread_name": "cancel-in-process", "ide": "CLI", "model": "Mem"})
    creds = {"agent_id": joined["agent"]["agent_id"], "token": joined["token"]}
    thread_id = joined["thread"]["thread_id"]
    with pytest.raises(MCPError):
        await client.call_tool(
            "msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 1000, **creds}, read_timeout_seconds=0.3
        )
    for _ in range(50):
        if not get_waiting_room().waiters:
            break
        await asyncio.sleep(0.02)
    assert get_waiting_room().waiters == {}
    await asyncio.sleep(1)  # past the wait's own timeout
    posted = await call(
        client,
        "msg_post",
        {
            "thread_id": thread_id,
            "content": "ok",
            "expected_last_seq": 0,
            "reply_token": joined["reply_token"],
            **creds,
        },
    )
    assert posted["message"]["seq"] == 1


@pytest.mark.django_db(transaction=True)
async def test_wait_timeout_is_capped_for_mcp(settings):
    settings.AGENTCHAT = {**settings.AGENTCHAT, "MCP_WAIT_MAX_MS": 200}
    async with in_memory() as client:
        await check_capped_wait(client)


async def check_capped_wait(client):
    joined = await call(client, "bus_connect", {"thread_name": "capped", "ide": "CLI", "model": "Mem"})
    creds = {"agent_id": joined["agent"]["agent_id"], "token": joined["token"]}
    result = await asyncio.wait_for(
        call(
            client,
            "msg_wait",
            {"thread_id": joined["thread"]["thread_id"], "after_seq": 0, "timeout_ms": 600000, **creds},
        ),
        5,
    )
    assert result["messages"] == [] and result["reply_token"]
