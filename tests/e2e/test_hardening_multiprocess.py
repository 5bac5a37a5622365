"""Two daphne processes sharing PostgreSQL and Redis: revoked credentials and the per-agent limits
hold across processes."""

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from agents import services as agent_services
from agents.models import Agent as AgentRow
from tests.support.servers import daphne_on_test_database
from tests.support.wire import WireClient

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LIMITS = {"AGENTCHAT_RATE_LIMIT_PER_MINUTE": "3", "AGENTCHAT_THREAD_RATE_PER_MINUTE": "3"}


@contextmanager
def daphne(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[str]:
    """A daphne on the test database; yields its agent socket's URL."""
    with daphne_on_test_database(env, args) as server:
        yield server.url


@pytest.fixture(scope="module")
def two_servers(django_db_setup):
    """Two servers for the whole module: each test uses agents and threads of its own."""
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.fail("These tests need DATABASE_URL=postgres://... and REDIS_URL (see the README's test command).")
    with daphne(env=LIMITS) as first, daphne(env=LIMITS) as second:
        yield first, second


async def error_of(agent: WireClient, op: str, args: dict | None = None) -> dict:
    reply = await agent.reply(await agent.send(op, args))
    assert not reply["ok"], reply
    return reply["error"]


async def refused_soon(agent: WireClient, op: str, args: dict, within: float = 5.0) -> None:
    """The op is refused with InvalidCredentials once the revocation's broadcast has arrived."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        reply = await agent.reply(await agent.send(op, args))
        if not reply["ok"]:
            assert reply["error"]["code"] == "InvalidCredentials", reply
            return
        assert loop.time() < deadline, f"{op} still answered {within} s after the revocation"
        await asyncio.sleep(0.05)


async def same_agent_twice(first_url: str, second_url: str, model: str) -> tuple[WireClient, WireClient, dict]:
    one = await WireClient.over_websocket(first_url)
    registered = await one.call("agent_register", {"ide": "CLI", "model": model})
    two = await WireClient.over_websocket(second_url)
    await two.call("agent_resume", {"agent_id": registered["agent_id"], "token": registered["token"]})
    return one, two, registered


@pytest.mark.parametrize("revoke", ["unregister", "rotate"])
async def test_revoking_on_one_process_cuts_off_the_agents_sockets_on_the_other(two_servers, revoke):
    first, second = two_servers
    one, two, registered = await same_agent_twice(first, second, f"Revoked {revoke}")
    try:
        created = await two.call("thread_create", {"topic": f"cut off {revoke}"})
        thread_id = created["thread"]["thread_id"]
        wait = await two.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 30000})
        await asyncio.sleep(0.3)

        if revoke == "unregister":
            await one.call("agent_unregister")
        else:  # the admin's action, from yet another process
            row = await database_sync_to_async(AgentRow.objects.get)(pk=registered["agent_id"])
            await database_sync_to_async(agent_services.rotate_token)(agent=row)

        # Writes are refused from the commit on (the agent's row lock), without waiting for the broadcast.
        post = {"thread_id": thread_id, "content": "x", "expected_last_seq": 0, "reply_token": created["reply_token"]}
        assert (await error_of(two, "msg_post", post))["code"] == "InvalidCredentials"
        assert (await error_of(two, "thread_create", {"topic": "after"}))["code"] == "InvalidCredentials"
        # The pending wait and every other op, once the broadcast arrives.
        assert (await two.reply(wait, timeout=10))["error"]["code"] == "InvalidCredentials"
        await refused_soon(two, "msg_list", {"thread_id": thread_id})
        await refused_soon(two, "thread_get", {"thread_id": thread_id})
        if revoke == "rotate":
            await refused_soon(one, "msg_list", {"thread_id": thread_id})
    finally:
        await one.close()
        await two.close()


async def test_the_post_rate_limit_is_exact_across_processes(two_servers):
    """Limit 3: with 2 posts made, two posts sent at once through two processes into two threads."""
    first, second = two_servers
    for trial in range(4):
        one, two, _ = await same_agent_twice(first, second, f"Racer {trial}")
        try:
            a = await one.call("thread_create", {"topic": f"race a {trial}"})
            b = await two.call("thread_create", {"topic": f"race b {trial}"})
            token, seq = a["reply_token"], 0
            for n in range(2):
                posted = await one.call(
                    "msg_post",
                    {
                        "thread_id": a["thread"]["thread_id"],
                        "content": f"m{n}",
                        "expected_last_seq": seq,
                        "reply_token": token,
                    },
                )
                token, seq = posted["reply_token"], posted["current_seq"]
            sends = [
                await one.send(
                    "msg_post",
                    {
                        "thread_id": a["thread"]["thread_id"],
                        "content": "x",
                        "expected_last_seq": seq,
                        "reply_token": token,
                    },
                ),
                await two.send(
                    "msg_post",
                    {
                        "thread_id": b["thread"]["thread_id"],
                        "content": "y",
                        "expected_last_seq": 0,
                        "reply_token": b["reply_token"],
                    },
                ),
            ]
            replies = [await one.reply(sends[0]), await two.reply(sends[1])]
            outcomes = sorted("ok" if r["ok"] else r["error"]["code"] for r in replies)
            assert outcomes == ["RateLimited", "ok"], (trial, replies)
        finally:
            await one.close()
            await two.close()


async def test_the_thread_creation_limit_is_exact_across_processes(two_servers):
    """Limit 3: with 2 threads made, two thread_create sent at once through two processes."""
    first, second = two_servers
    for trial in range(3):
        one, two, _ = await same_agent_twice(first, second, f"Creator {trial}")
        try:
            await one.call("thread_create", {"topic": f"made a {trial}"})
            await two.call("thread_create", {"topic": f"made b {trial}"})
            sends = [
                await one.send("thread_create", {"topic": f"race a {trial}"}),
                await two.send("thread_create", {"topic": f"race b {trial}"}),
            ]
            replies = [await one.reply(sends[0]), await two.reply(sends[1])]
            outcomes = sorted("ok" if r["ok"] else r["error"]["code"] for r in replies)
            assert outcomes == ["RateLimited", "ok"], (trial, replies)
        finally:
            await one.close()
            await two.close()
