"""agentchat_client against a real daphne."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from agentchat_client import AgentChatClient, AgentChatError
from agents.models import Agent
from tests.support.servers import daphne_on_test_database
from threads.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    with daphne_on_test_database({"AGENTCHAT_HEARTBEAT_INTERVAL": "2", "AGENTCHAT_HEARTBEAT_TIMEOUT": "4"}) as server:
        yield server.url


async def test_two_agents_talk_through_the_client(server):
    async with (
        AgentChatClient(server, ide="CLI", model="Alice") as alice,
        AgentChatClient(server, ide="CLI", model="Bob") as bob,
    ):
        thread_id = await alice.join("client demo")
        assert await bob.join("client demo") == thread_id

        bob_wait = asyncio.create_task(bob.wait(thread_id, timeout_ms=10000))
        await alice.post(thread_id, "hello bob")
        assert [m["content"] for m in await bob_wait] == ["hello bob"]

        await bob.post(thread_id, "hello alice")
        # Alice's chain token is stale now: the server refuses, she reads, then posts.
        with pytest.raises(AgentChatError) as refused:
            await alice.post(thread_id, "me again")
        assert refused.value.code == "SeqMismatch"
        assert [m["content"] for m in await alice.wait(thread_id)] == ["hello alice"]
        posted = await alice.post(thread_id, "me again")
        assert posted["seq"] == 3

    stored = await database_sync_to_async(list)(Message.objects.order_by("seq").values_list("content", "client_msg_id"))
    assert [content for content, _ in stored] == ["hello bob", "hello alice", "me again"]
    assert all(client_msg_id for _, client_msg_id in stored)


async def test_client_resumes_as_the_same_agent_after_the_socket_drops(server):
    async with AgentChatClient(server, ide="CLI", model="Flaky") as agent:
        thread_id = await agent.join("drops")
        agent_id = agent.agent_id
        await agent._ws.close()  # the network drops the connection
        message = await agent.post(thread_id, "after the drop")
        assert message["author_id"] == agent_id
        assert agent.agent_id == agent_id


async def test_an_idle_client_keeps_its_agent_online_with_heartbeats(server):
    async with AgentChatClient(server, ide="CLI", model="Idle") as agent:
        await asyncio.sleep(6)  # 1.5 heartbeat timeouts without a request of its own
        stored = await database_sync_to_async(Agent.objects.get)(pk=agent.agent_id)
        assert stored.last_activity == "agent_heartbeat"
        assert stored.is_online
