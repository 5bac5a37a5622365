"""MCP clients (the official `mcp` SDK) against real daphne processes."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.support.servers import Daphne, daphne_on_test_database

# Short intervals keep the tests fast; the defaults are 15 s and 50 s.
FAST = {"AGENTCHAT_MCP_PROGRESS_INTERVAL": "1", "AGENTCHAT_MCP_WAIT_DEFAULT_MS": "3000"}


@contextmanager
def daphne(env: dict[str, str] | None = None) -> Iterator[Daphne]:
    """A daphne on the test database with short MCP intervals; the test may stop it itself."""
    with daphne_on_test_database({**FAST, **(env or {})}) as server:
        yield server


@asynccontextmanager
async def mcp_client(
    url: str, token: str | None = None, *, mode: str = "legacy", transport: httpx2.AsyncBaseTransport | None = None
) -> AsyncIterator[Client]:
    """The official client; `mode="legacy"` is the initialize handshake, "auto" negotiates 2026-07-28."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    http = create_mcp_http_client(headers=headers)
    if transport is not None:
        http = httpx2.AsyncClient(headers=headers, transport=transport, timeout=http.timeout)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


async def call(client: Client, name: str, args: dict | None = None, **kwargs) -> dict:
    """Call a tool that must succeed; return its structured result."""
    result = await client.call_tool(name, args or {}, **kwargs)
    assert not result.is_error, result.structured_content
    return result.structured_content


async def error(client: Client, name: str, args: dict | None = None, **kwargs) -> dict:
    """Call a tool that must fail; return its error (code, message, ...)."""
    result = await client.call_tool(name, args or {}, **kwargs)
    assert result.is_error, result.structured_content
    return result.structured_content["error"]
