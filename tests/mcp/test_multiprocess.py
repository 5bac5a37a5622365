"""MCP agents on two daphne processes sharing PostgreSQL and Redis."""

import asyncio
import os
import time

import httpx2
import pytest
from django.db import connection

from tests.mcp.support import call, daphne, mcp_client
from tests.support.wire import WireClient

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def two_servers():
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.fail("These tests need DATABASE_URL=postgres://... and REDIS_URL (see the README's test command).")
    with daphne() as first, daphne() as second:
        yield first, second


class RoundRobin(httpx2.AsyncBaseTransport):
    """A load balancer without sticky sessions: each request goes to the next port."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.count = 0
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        port = self.ports[self.count % len(self.ports)]
        self.count += 1
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_mcp_waiter_on_one_process_is_woken_by_a_post_on_the_other(two_servers):
    first, second = two_servers
    async with mcp_client(first.mcp_url) as poster_client:
        poster = await call(poster_client, "bus_connect", {"thread_name": "across", "ide": "CLI", "model": "A"})
    async with mcp_client(second.mcp_url) as waiter_client:
        waiter = await call(waiter_client, "bus_connect", {"thread_name": "across", "ide": "CLI", "model": "B"})
    thread_id = poster["thread"]["thread_id"]
    ws = await WireClient.over_websocket(first.ws_url)
    try:
        ws_joined = await ws.call("bus_connect", {"thread_name": "across", "ide": "CLI", "model": "WS"})
        async with mcp_client(second.mcp_url, waiter["token"]) as client:
            wait = asyncio.create_task(
                call(client, "msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000})
            )
            await asyncio.sleep(0.5)
            started = time.monotonic()
            await ws.call(
                "msg_post",
                {
                    "thread_id": thread_id,
                    "content": "from process A",
                    "expected_last_seq": ws_joined["current_seq"],
                    "reply_token": ws_joined["reply_token"],
                },
            )
            woken = await asyncio.wait_for(wait, 10)
            assert time.monotonic() - started < 3
            assert [m["content"] for m in woken["messages"]] == ["from process A"]
    finally:
        await ws.close()


async def test_without_sticky_routing_the_stateless_era_works_on_every_process(two_servers):
    first, second = two_servers
    async with mcp_client(first.mcp_url) as client:
        joined = await call(client, "bus_connect", {"thread_name": "no-sticky", "ide": "CLI", "model": "M"})
    balancer = RoundRobin([first.port, second.port])
    async with mcp_client(first.mcp_url, joined["token"], mode="auto", transport=balancer) as client:
        for _ in range(4):
            assert (await call(client, "agent_heartbeat"))["ok"] is True
    assert balancer.count >= 4


async def test_without_sticky_routing_a_handshake_session_fails_fast_with_a_clear_error(two_servers):
    first, second = two_servers
    balancer = RoundRobin([first.port, second.port])
    started = time.monotonic()
    with pytest.raises(BaseException) as raised:
        async with mcp_client(first.mcp_url, mode="legacy", transport=balancer) as client:
            for _ in range(4):
                await asyncio.wait_for(client.call_tool("bus_get_config", {}), 10)
    assert time.monotonic() - started < 10
    assert "Session not found" in repr(raised.value) or "404" in repr(raised.value), repr(raised.value)
