"""Over the wire (daphne + a WebSocket client): who may change a thread, who may post as whom, revoked
credentials, and the registration and thread-creation limits."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import websockets
from channels.db import database_sync_to_async

from agents import services as agent_services
from agents.models import Agent as AgentRow
from tests.support.servers import daphne_on_test_database
from tests.support.wire import RealSocket, WireClient

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def daphne(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[str]:
    """A daphne on the test database; yields its agent socket's URL."""
    with daphne_on_test_database(env, args) as server:
        yield server.url


@pytest.fixture
def server():
    with daphne() as url:
        yield url


async def error_of(agent: WireClient, op: str, args: dict | None = None) -> dict:
    reply = await agent.reply(await agent.send(op, args))
    assert not reply["ok"], reply
    return reply["error"]


async def connected(url: str, **register) -> tuple[WireClient, dict]:
    agent = await WireClient.over_websocket(url)
    registered = await agent.call("agent_register", {"ide": "CLI", **register})
    return agent, registered


# --- item 4: a thread's administrator ----------------------------------------------------------


async def test_another_agent_cannot_take_over_a_well_known_topic(server):
    owner, _ = await connected(server, model="Owner")
    intruder, me = await connected(server, model="Intruder")
    try:
        created = await owner.call("thread_create", {"topic": "planning", "system_prompt": "the real prompt"})
        thread_id = created["thread"]["thread_id"]
        assert created["thread"]["administrator_agent_id"] == created["thread"]["creator_agent_id"]

        for op, args in [
            ("thread_archive", {}),
            ("thread_close", {"summary": "taken"}),
            ("thread_set_state", {"state": "done"}),
            ("thread_set_administrator", {"administrator_agent_id": me["agent_id"]}),
        ]:
            assert (await error_of(intruder, op, {"thread_id": thread_id, **args}))["code"] == "Forbidden", op
        assert (await error_of(intruder, "thread_create", {"topic": "planning", "system_prompt": "evil"}))[
            "code"
        ] == "Conflict"

        joined = await intruder.call("bus_connect", {"thread_name": "planning"})
        assert joined["thread"]["status"] == "discuss"
        assert joined["system_prompt"].endswith("the real prompt")
        assert joined["is_administrator"] is False

        # The administrator hands the role on; the thread is told, and the new one may close it.
        wait = await intruder.send(
            "msg_wait", {"thread_id": thread_id, "after_seq": joined["current_seq"], "timeout_ms": 20000}
        )
        handed = await owner.call(
            "thread_set_administrator", {"thread_id": thread_id, "administrator_agent_id": me["agent_id"]}
        )
        assert handed["thread"]["administrator_agent_id"] == me["agent_id"]
        woken = await intruder.reply(wait, timeout=15)
        [announcement] = woken["result"]["messages"]
        assert (announcement["role"], announcement["author_id"]) == ("system", None)
        assert announcement["metadata"]["event"] == "administrator_changed"
        assert (await intruder.call("thread_get", {"thread_id": thread_id}))["thread"]["administrator_agent_id"] == me[
            "agent_id"
        ]
        assert (await error_of(owner, "thread_archive", {"thread_id": thread_id}))["code"] == "Forbidden"
        closed = await intruder.call("thread_close", {"thread_id": thread_id})
        assert closed["thread"]["status"] == "closed"
    finally:
        await owner.close()
        await intruder.close()


# --- item 9: agents post as agents -------------------------------------------------------------------


async def test_agents_cannot_post_as_humans_or_as_the_bus(server):
    agent, _ = await connected(server, model="Poser")
    try:
        created = await agent.call("thread_create", {"topic": "posing"})
        thread_id = created["thread"]["thread_id"]
        base = {"thread_id": thread_id, "content": "hi", "expected_last_seq": 0, "reply_token": created["reply_token"]}
        for extra, field in [
            ({"role": "user"}, "role"),
            ({"role": "system"}, "role"),
            ({"priority": "system"}, "priority"),
        ]:
            error = await error_of(agent, "msg_post", {**base, **extra})
            assert (error["code"], error["field"]) == ("BadRequest", field), extra
        # Nothing was stored, and the token still works.
        posted = await agent.call("msg_post", {**base, "priority": "urgent"})
        assert (posted["message"]["seq"], posted["message"]["role"]) == (1, "assistant")
    finally:
        await agent.close()


# --- item 3: revoked credentials, one process ------------------------------------------------------------


async def test_unregister_cuts_off_every_other_socket_of_the_agent(server):
    first, registered = await connected(server, model="Twice")
    second = await WireClient.over_websocket(server)
    try:
        credentials = {"agent_id": registered["agent_id"], "token": registered["token"]}
        await second.call("agent_resume", credentials)
        created = await second.call("thread_create", {"topic": "before"})
        thread_id = created["thread"]["thread_id"]
        wait = await second.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000})
        await asyncio.sleep(0.3)

        await first.call("agent_unregister")

        assert (await second.reply(wait))["error"]["code"] == "InvalidCredentials"
        post = {
            "thread_id": thread_id,
            "content": "ghost",
            "expected_last_seq": 0,
            "reply_token": created["reply_token"],
        }
        for op, args in [
            ("msg_post", post),
            ("thread_create", {"topic": "after"}),
            ("msg_list", {"thread_id": thread_id}),
            ("agent_heartbeat", {}),
            ("agent_list", {}),
        ]:
            assert (await error_of(second, op, args))["code"] == "InvalidCredentials", op
        assert (await error_of(second, "agent_resume", credentials))["code"] == "InvalidCredentials"
        # Binding afresh works.
        await second.call("agent_register", {"ide": "CLI", "model": "Again"})
        assert (await second.call("msg_list", {"thread_id": thread_id}))["messages"] == []
    finally:
        await first.close()
        await second.close()


async def test_a_token_rotated_in_another_process_stops_the_sockets_writes_at_once(server):
    agent, registered = await connected(server, model="Rotated")
    try:
        created = await agent.call("thread_create", {"topic": "rotated"})
        thread_id = created["thread"]["thread_id"]
        row = await database_sync_to_async(AgentRow.objects.get)(pk=registered["agent_id"])

        # As the admin does, from a process whose channel layer the server does not share:
        # the agent's row lock refuses every write, the heartbeat write every other op.
        await database_sync_to_async(agent_services.rotate_token)(agent=row)

        post = {"thread_id": thread_id, "content": "x", "expected_last_seq": 0, "reply_token": created["reply_token"]}
        for op, args in [("msg_post", post), ("thread_create", {"topic": "again"}), ("agent_heartbeat", {})]:
            assert (await error_of(agent, op, args))["code"] == "InvalidCredentials", op
        assert (await error_of(agent, "msg_list", {"thread_id": thread_id}))["code"] == "InvalidCredentials"
    finally:
        await agent.close()


# --- item 5: registration and thread-creation limits ------------------------------------------------------


async def test_registrations_per_address_and_threads_per_agent_are_limited():
    limits = {"AGENTCHAT_REGISTER_RATE_PER_MINUTE": "3", "AGENTCHAT_THREAD_RATE_PER_MINUTE": "2"}
    with daphne(env=limits) as url:
        agents = [await WireClient.over_websocket(url) for _ in range(4)]
        try:
            first = await agents[0].call("agent_register", {"ide": "CLI", "model": "Burst"})
            await agents[1].call("agent_register", {"ide": "CLI", "model": "Burst"})
            await agents[2].call("bus_connect", {"thread_name": "lobby", "ide": "CLI", "model": "Burst"})
            for op, args in [
                ("agent_register", {"ide": "CLI", "model": "Burst"}),
                ("bus_connect", {"thread_name": "lobby", "ide": "CLI", "model": "Burst"}),
            ]:
                error = await error_of(agents[3], op, args)
                assert error["code"] == "RateLimited", op
                assert 1 <= error["retry_after"] <= 60
            # Resuming is not registering.
            await agents[3].call("agent_resume", {"agent_id": first["agent_id"], "token": first["token"]})

            await agents[0].call("thread_create", {"topic": "one"})
            await agents[0].call("bus_connect", {"thread_name": "two"})  # creating by name counts too
            for op, args in [("thread_create", {"topic": "three"}), ("bus_connect", {"thread_name": "four"})]:
                error = await error_of(agents[0], op, args)
                assert error["code"] == "RateLimited", op
                assert 1 <= error["retry_after"] <= 60
            # Joining an existing thread by name creates nothing, and is not limited.
            await agents[0].call("bus_connect", {"thread_name": "one"})
        finally:
            for agent in agents:
                await agent.close()


async def test_behind_a_proxy_the_forwarded_address_is_limited():
    limits = {"AGENTCHAT_REGISTER_RATE_PER_MINUTE": "1"}
    with daphne(env=limits, args=("--proxy-headers",)) as url:
        clients = []
        try:
            for address in ["203.0.113.7", "203.0.113.8", "203.0.113.7"]:
                ws = await websockets.connect(url, open_timeout=10, additional_headers={"X-Forwarded-For": address})
                clients.append(WireClient(RealSocket(ws)))
            await clients[0].call("agent_register", {"ide": "CLI", "model": "A"})
            await clients[1].call("agent_register", {"ide": "CLI", "model": "B"})  # another address
            error = await error_of(clients[2], "agent_register", {"ide": "CLI", "model": "C"})
            assert error["code"] == "RateLimited"
            stored = await database_sync_to_async(
                lambda: sorted(AgentRow.objects.values_list("registered_from", flat=True))
            )()
            assert stored == ["203.0.113.7", "203.0.113.8"]
        finally:
            for client in clients:
                await client.close()
