"""msg_wait over the wire: wake-ups, concurrency on one socket, tokens, disconnects and presence."""

import asyncio
from datetime import timedelta
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.utils import timezone

from agents.events import PRESENCE_GROUP
from agents.models import Agent
from tests.support.wire import registered, waiting_room_tasks
from threads.waiting_room import get_waiting_room

pytestmark = pytest.mark.django_db(transaction=True)

LONG_MS = 60_000  # a wait that only a message can end within the test


# --- helpers -------------------------------------------------------------------


def post_args(thread_id: str, content: str, seq: int, token: str, **extra) -> dict:
    return {"thread_id": thread_id, "content": content, "expected_last_seq": seq, "reply_token": token, **extra}


class Poster:
    """An agent that posts to one thread, keeping its token chain."""

    def __init__(self, client, thread_id: str, seq: int, token: str) -> None:
        self.client, self.thread_id, self.seq, self.token = client, thread_id, seq, token

    async def post(self, content: str, **extra) -> dict:
        result = await self.client.call("msg_post", post_args(self.thread_id, content, self.seq, self.token, **extra))
        self.seq, self.token = result["current_seq"], result["reply_token"]
        return result["message"]


async def thread_with_poster(connect, topic: str = "plan") -> tuple[Poster, str]:
    client, _ = await registered(connect, ide="Admin", model="Poster")
    created = await client.call("thread_create", {"topic": topic})
    thread_id = created["thread"]["thread_id"]
    return Poster(client, thread_id, 0, created["reply_token"]), thread_id


async def wait(client, thread_id: str, after_seq: int, **args) -> str:
    """Start a msg_wait; returns its request id."""
    return await client.send(
        "msg_wait", {"thread_id": thread_id, "after_seq": after_seq, "timeout_ms": LONG_MS, **args}
    )


async def result_of(client, request_id: str, timeout: float = 10) -> dict:
    reply = await client.reply(request_id, timeout=timeout)
    assert reply["ok"], reply
    return reply["result"]


# --- returning and waking --------------------------------------------------------------


async def test_msg_wait_returns_at_once_when_behind(connect):
    poster, thread_id = await thread_with_poster(connect)
    await poster.post("one")
    await poster.post("two")
    bob, _ = await registered(connect)
    result = await result_of(bob, await wait(bob, thread_id, 0))
    assert [m["content"] for m in result["messages"]] == ["one", "two"]
    assert result["has_more"] is False
    assert result["current_seq"] == 2


async def test_msg_wait_blocks_until_another_socket_posts(connect):
    poster, thread_id = await thread_with_poster(connect)
    bob, _ = await registered(connect)
    request = await wait(bob, thread_id, 0)
    assert await bob.nothing(0.3)
    await poster.post("wake up")
    result = await result_of(bob, request)
    assert [m["content"] for m in result["messages"]] == ["wake up"]
    assert result["current_seq"] == 1
    posted = await bob.call("msg_post", post_args(thread_id, "awake", 1, result["reply_token"]))
    assert posted["message"]["seq"] == 2


async def test_one_post_wakes_every_waiting_socket(connect):
    poster, thread_id = await thread_with_poster(connect)
    waiting = [await registered(connect, model=f"M{n}") for n in range(3)]
    requests = [await wait(client, thread_id, 0) for client, _ in waiting]
    await poster.post("all hands")
    for (client, _), request in zip(waiting, requests):
        assert [m["seq"] for m in (await result_of(client, request))["messages"]] == [1]


async def test_two_waits_and_a_post_in_flight_on_one_socket(connect):
    poster_a, thread_a = await thread_with_poster(connect, "a")
    poster_b, thread_b = await thread_with_poster(connect, "b")
    bob, _ = await registered(connect)
    own = await bob.call("thread_create", {"topic": "bob's"})
    first = await wait(bob, thread_a, 0)
    second = await wait(bob, thread_b, 0)
    post = await bob.send("msg_post", post_args(own["thread"]["thread_id"], "meanwhile", 0, own["reply_token"]))
    posted = await result_of(bob, post)
    assert posted["message"]["content"] == "meanwhile"
    # The waits are still pending.
    assert first not in bob.replies and second not in bob.replies
    assert await bob.nothing(0.2)
    await poster_b.post("to b")
    await poster_a.post("to a")
    assert [m["content"] for m in (await result_of(bob, first))["messages"]] == ["to a"]
    assert [m["content"] for m in (await result_of(bob, second))["messages"]] == ["to b"]


async def test_two_waits_on_one_thread_from_one_socket_both_return(connect):
    poster, thread_id = await thread_with_poster(connect)
    bob, _ = await registered(connect)
    requests = [await wait(bob, thread_id, 0), await wait(bob, thread_id, 0)]
    assert await bob.nothing(0.2)
    await poster.post("both")
    for request in requests:
        assert [m["content"] for m in (await result_of(bob, request))["messages"]] == ["both"]


async def test_a_pending_wait_does_not_block_a_heartbeat_on_the_same_socket(connect):
    poster, thread_id = await thread_with_poster(connect)
    bob, _ = await registered(connect)
    request = await wait(bob, thread_id, 0)
    assert (await bob.call("agent_heartbeat"))["ok"] is True
    assert request not in bob.replies
    await poster.post("done")
    assert len((await result_of(bob, request))["messages"]) == 1


async def test_msg_wait_timeout_returns_no_messages_and_a_fresh_sync_context(connect):
    poster, thread_id = await thread_with_poster(connect)
    await poster.post("seen")
    bob, _ = await registered(connect)
    result = await bob.call("msg_wait", {"thread_id": thread_id, "after_seq": 1, "timeout_ms": 200})
    assert result["messages"] == []
    assert result["has_more"] is False
    assert result["current_seq"] == 1
    assert result["reply_token"]
    assert set(result["reply_window"]) == {"expires_at", "max_new_messages"}
    posted = await bob.call("msg_post", post_args(thread_id, "mine", 1, result["reply_token"]))
    assert posted["message"]["seq"] == 2


async def test_msg_wait_default_timeout_comes_from_settings(connect, agentchat_settings):
    agentchat_settings(MSG_WAIT_TIMEOUT_MS=200)
    _, thread_id = await thread_with_poster(connect)
    bob, _ = await registered(connect)
    result = await bob.call("msg_wait", {"thread_id": thread_id, "after_seq": 0})
    assert result["messages"] == []


async def test_msg_wait_with_limit_says_has_more_and_sets_current_seq_to_the_last_returned(connect):
    poster, thread_id = await thread_with_poster(connect)
    for n in range(3):
        await poster.post(f"m{n + 1}")
    bob, _ = await registered(connect)
    first = await result_of(bob, await wait(bob, thread_id, 0, limit=2))
    assert [m["seq"] for m in first["messages"]] == [1, 2]
    assert (first["has_more"], first["current_seq"]) == (True, 2)
    # A post is accepted only after the rest is read.
    refused = await bob.error("msg_post", post_args(thread_id, "too soon", 2, first["reply_token"]))
    assert refused["code"] == "SeqMismatch"
    rest = await result_of(bob, await wait(bob, thread_id, 2, limit=2))
    assert [m["seq"] for m in rest["messages"]] == [3]
    assert (rest["has_more"], rest["current_seq"]) == (False, 3)
    posted = await bob.call("msg_post", post_args(thread_id, "now", 3, rest["reply_token"]))
    assert posted["message"]["seq"] == 4


async def test_msg_wait_for_agent_returns_only_mentions_and_handoffs(connect):
    poster, thread_id = await thread_with_poster(connect)
    bob, me = await registered(connect)
    bob_id = me["agent_id"]
    await poster.post("chatter")
    await poster.post("for bob", metadata={"mentions": [bob_id]})
    await poster.post("for someone else", metadata={"mentions": ["someone"]})
    await poster.post("over to bob", metadata={"handoff_target": bob_id})
    result = await result_of(bob, await wait(bob, thread_id, 0, for_agent=bob_id))
    assert [m["content"] for m in result["messages"]] == ["for bob", "over to bob"]
    assert result["current_seq"] == 4


async def test_msg_wait_for_agent_is_woken_only_by_a_message_for_it(connect):
    poster, thread_id = await thread_with_poster(connect)
    bob, me = await registered(connect)
    bob_id = me["agent_id"]
    request = await wait(bob, thread_id, 0, for_agent=bob_id)
    await poster.post("chatter")
    await poster.post("for carol", metadata={"mentions": ["carol"]})
    assert await bob.nothing(0.5)
    await poster.post("bob, your turn", metadata={"handoff_target": bob_id})
    result = await result_of(bob, request)
    assert [m["content"] for m in result["messages"]] == ["bob, your turn"]
    assert result["current_seq"] == 3


# --- tokens ----------------------------------------------------------------------------


async def test_msg_wait_voids_older_tokens_when_it_returns(connect):
    _, thread_id = await thread_with_poster(connect)
    bob, _ = await registered(connect)
    joined = await bob.call("bus_connect", {"thread_id": thread_id})
    result = await bob.call("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 100})
    error = await bob.error("msg_post", post_args(thread_id, "old token", 0, joined["reply_token"]))
    assert error["code"] == "ReplyTokenInvalid"
    posted = await bob.call("msg_post", post_args(thread_id, "new token", 0, result["reply_token"]))
    assert posted["message"]["seq"] == 1


async def test_while_msg_wait_waits_the_held_token_still_posts(connect):
    _, thread_id = await thread_with_poster(connect)
    bob, _ = await registered(connect)
    joined = await bob.call("bus_connect", {"thread_id": thread_id})
    request = await wait(bob, thread_id, 0)
    assert await bob.nothing(0.2)
    posted = await bob.call("msg_post", post_args(thread_id, "while waiting", 0, joined["reply_token"]))
    assert posted["message"]["seq"] == 1
    # Bob's own post ends his wait, whose fresh token supersedes the post's.
    woken = await result_of(bob, request)
    assert [m["seq"] for m in woken["messages"]] == [1]
    error = await bob.error("msg_post", post_args(thread_id, "chain", 1, posted["reply_token"]))
    assert error["code"] == "ReplyTokenInvalid"
    again = await bob.call("msg_post", post_args(thread_id, "fresh", 1, woken["reply_token"]))
    assert again["message"]["seq"] == 2


# --- threads that do not exist or are closed ------------------------------------------


@pytest.mark.parametrize("thread_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
async def test_msg_wait_on_unknown_thread_is_not_found_and_leaves_no_waiter(connect, thread_id):
    bob, _ = await registered(connect)
    error = await bob.error("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": LONG_MS})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")
    hub = get_waiting_room()
    assert hub.waiters == {}
    assert waiting_room_tasks() == []


async def test_msg_wait_on_a_closed_thread_returns_existing_messages_then_waits(connect):
    poster, thread_id = await thread_with_poster(connect)
    await poster.post("before closing")
    await poster.client.call("thread_close", {"thread_id": thread_id})
    bob, _ = await registered(connect)
    result = await result_of(bob, await wait(bob, thread_id, 0))
    assert [m["content"] for m in result["messages"]][0] == "before closing"
    assert result["messages"][1]["metadata"] == {
        "event": "status_changed",
        "status": "closed",
        "previous_status": "discuss",
    }
    # It waits on the closed thread, and the bus's announcement of the reopening wakes it.
    request = await wait(bob, thread_id, 2)
    assert await bob.nothing(0.3)
    await poster.client.call("thread_set_state", {"thread_id": thread_id, "state": "discuss"})
    woken = await result_of(bob, request)
    assert [m["metadata"].get("status") for m in woken["messages"]] == ["discuss"]


# --- disconnects -----------------------------------------------------------------------


async def test_disconnect_during_a_wait_leaves_no_waiters_or_tasks(connect):
    _, thread_id = await thread_with_poster(connect)
    bob, _ = await registered(connect)
    await wait(bob, thread_id, 0)
    assert await bob.nothing(0.2)
    hub = get_waiting_room()
    assert len(hub.waiters[thread_id]) == 1
    await bob.close()
    assert hub.waiters == {}
    assert waiting_room_tasks() == []


async def test_disconnect_of_one_waiter_leaves_the_others_waiting_and_a_later_post_wakes_them(connect):
    poster, thread_id = await thread_with_poster(connect)
    bob, _ = await registered(connect, model="Bob")
    carol, _ = await registered(connect, model="Carol")
    await wait(bob, thread_id, 0)
    request = await wait(carol, thread_id, 0)
    assert await carol.nothing(0.2)
    hub = get_waiting_room()
    assert len(hub.waiters[thread_id]) == 2
    await bob.close()
    assert len(hub.waiters[thread_id]) == 1
    assert waiting_room_tasks()  # still serving the other waiter
    assert await carol.nothing(0.2)
    await poster.post("still here")
    assert [m["content"] for m in (await result_of(carol, request))["messages"]] == ["still here"]
    assert hub.waiters == {}
    # The batch's cursors are written once its replies are out; then nothing of the room runs.
    for _ in range(100):
        if not waiting_room_tasks():
            break
        await asyncio.sleep(0.02)
    assert waiting_room_tasks() == []


async def test_disconnect_does_not_unregister_the_agent(connect):
    _, thread_id = await thread_with_poster(connect)
    bob, me = await registered(connect)
    await wait(bob, thread_id, 0)
    await bob.close()
    again = await connect()
    result = await again.call("agent_resume", {"agent_id": me["agent_id"], "token": me["token"]})
    assert result["agent"]["is_online"] is True


# --- presence --------------------------------------------------------------------------


@database_sync_to_async
def stored_agent(agent_id: str) -> Agent:
    return Agent.objects.get(pk=agent_id)


def online_in(listing: dict, agent_id: str) -> bool | None:
    for agent in listing["agents"]:
        if agent["agent_id"] == agent_id:
            return agent["is_online"]
    return None


async def test_an_agent_waiting_long_stays_online(connect, agentchat_settings):
    agentchat_settings(HEARTBEAT_INTERVAL=1, AGENT_HEARTBEAT_TIMEOUT=2)
    _, thread_id = await thread_with_poster(connect)
    bob, me = await registered(connect, model="Bob")
    observer, _ = await registered(connect, model="Observer")
    request = await bob.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 6000})
    for _ in range(5):
        await asyncio.sleep(1)
        assert online_in(await observer.call("agent_list"), me["agent_id"]) is True
        assert me["agent_id"] in [
            a["agent_id"] for a in (await observer.call("agent_list", {"online_only": True}))["agents"]
        ]
    result = await result_of(bob, request)
    assert result["messages"] == []
    agent = await stored_agent(me["agent_id"])
    assert timezone.now() - agent.last_heartbeat <= timedelta(seconds=2)
    assert agent.status == Agent.Status.ONLINE


async def test_an_agent_that_stops_heartbeating_goes_offline_and_is_marked_offline(connect, agentchat_settings):
    agentchat_settings(HEARTBEAT_INTERVAL=1, AGENT_HEARTBEAT_TIMEOUT=2)
    _, me = await registered(connect, model="Bob")
    observer, _ = await registered(connect, model="Observer")
    assert online_in(await observer.call("agent_list"), me["agent_id"]) is True
    await asyncio.sleep(2.5)
    # The observer is active, so only the silent agent is past the timeout.
    listing = await observer.call("agent_list")
    assert online_in(listing, me["agent_id"]) is False
    online = await observer.call("agent_list", {"online_only": True})
    assert me["agent_id"] not in [a["agent_id"] for a in online["agents"]]

    out = StringIO()
    await database_sync_to_async(call_command)("mark_offline_agents", stdout=out)
    assert "Marked 1 agent(s) offline" in out.getvalue()
    assert (await stored_agent(me["agent_id"])).status == Agent.Status.OFFLINE


async def test_presence_is_announced_on_register_and_unregister(connect):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(PRESENCE_GROUP, channel)

    async def next_about(agent_id: str) -> dict:
        # Other tests may share the layer (Redis): skip events about other agents.
        while True:
            event = await asyncio.wait_for(layer.receive(channel), timeout=5)
            if event.get("type") == "agent.presence" and event.get("agent_id") == agent_id:
                return event

    try:
        bob, me = await registered(connect)
        online = await next_about(me["agent_id"])
        assert (online["is_online"], online["name"]) == (True, me["name"])
        await bob.call("agent_unregister")
        offline = await next_about(me["agent_id"])
        assert (offline["is_online"], offline["name"]) == (False, me["name"])
    finally:
        await layer.group_discard(PRESENCE_GROUP, channel)
