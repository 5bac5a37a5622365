"""Several daphne processes sharing PostgreSQL and Redis (the production shape)."""

import asyncio

import pytest

from tests.support.servers import daphne_on_test_database, require_postgres_and_redis
from tests.support.wire import WireClient

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def two_servers():
    require_postgres_and_redis()
    with daphne_on_test_database() as first, daphne_on_test_database() as second:
        yield first.url, second.url


async def start_thread(url: str, topic: str) -> tuple[WireClient, dict]:
    agent = await WireClient.over_websocket(url)
    await agent.call("agent_register", {"ide": "CLI", "model": "Poster"})
    created = await agent.call("thread_create", {"topic": topic})
    return agent, created


async def test_a_post_on_one_process_wakes_a_waiter_on_the_other(two_servers):
    first, second = two_servers
    poster, created = await start_thread(first, "cross-process")
    waiter = await WireClient.over_websocket(second)
    try:
        await waiter.call("agent_register", {"ide": "CLI", "model": "Waiter"})
        thread_id = created["thread"]["thread_id"]
        waits = [
            await waiter.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000})
            for _ in range(3)
        ]
        await asyncio.sleep(0.5)
        await poster.call(
            "msg_post",
            {
                "thread_id": thread_id,
                "content": "across",
                "expected_last_seq": 0,
                "reply_token": created["reply_token"],
            },
        )
        for request_id in waits:
            reply = await waiter.reply(request_id, timeout=15)
            assert [m["content"] for m in reply["result"]["messages"]] == ["across"]
    finally:
        await poster.close()
        await waiter.close()


async def test_a_waiter_idle_longer_than_redis_socket_timeouts_still_wakes(two_servers):
    """redis-py 8 made 5 s read timeouts the default, which killed idle subscribers."""
    first, second = two_servers
    poster, created = await start_thread(first, "idle-redis")
    waiter = await WireClient.over_websocket(second)
    try:
        await waiter.call("agent_register", {"ide": "CLI", "model": "Sleeper"})
        thread_id = created["thread"]["thread_id"]
        wait = await waiter.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 30000})
        await asyncio.sleep(7)  # longer than redis-py 8's default socket timeout
        await poster.call(
            "msg_post",
            {
                "thread_id": thread_id,
                "content": "still there?",
                "expected_last_seq": 0,
                "reply_token": created["reply_token"],
            },
        )
        reply = await waiter.reply(wait, timeout=10)
        assert [m["content"] for m in reply["result"]["messages"]] == ["still there?"]
    finally:
        await poster.close()
        await waiter.close()
