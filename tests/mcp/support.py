"""MCP clients (the official `mcp` SDK) against real daphne processes."""

import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from agentchat.bench import free_port, wait_for_port
from tests.e2e.servers import BASE_DIR, current_database_url

# Short intervals keep the tests fast; the defaults are 15 s and 50 s.
FAST = {"AGENTCHAT_MCP_PROGRESS_INTERVAL": "1", "AGENTCHAT_MCP_WAIT_DEFAULT_MS": "3000"}


@dataclass
class Daphne:
    process: subprocess.Popen
    port: int
    log: Any

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent/"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


@contextmanager
def daphne(env: dict[str, str] | None = None) -> Iterator[Daphne]:
    """A daphne process on a free loopback port; the test may stop it itself."""
    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agentchat.asgi:application"],
        cwd=BASE_DIR,
        env={**os.environ, "DATABASE_URL": current_database_url(), **FAST, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    server = Daphne(process, port, log)
    try:
        try:
            wait_for_port(port, process)
        except RuntimeError as error:
            raise RuntimeError(f"{error}: {server.output()}") from None
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


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
