"""agent_heartbeat, agent_list and agent_set_typing over the wire: who is online, and who is typing."""

import pytest
from channels.layers import get_channel_layer

from agents import services as agent_services
from agents.events import PRESENCE_GROUP
from tests.support.wire import (
    AGENT_KEYS,
    UNKNOWN_ID,
    new_thread,
    presence_event,
    registered,
)

pytestmark = pytest.mark.django_db(transaction=True)


# --- agent_heartbeat ---------------------------------------------------------------------


async def test_agent_heartbeat_replies_ok_with_the_configured_interval(connect, agentchat_settings):
    agentchat_settings(HEARTBEAT_INTERVAL=7, AGENT_HEARTBEAT_TIMEOUT=20)
    client, _ = await registered(connect)
    assert await client.call("agent_heartbeat") == {"ok": True, "next_heartbeat_in": 7}


async def test_agent_heartbeat_brings_a_stale_agent_back_online(connect, make_heartbeat_old):
    client, me = await registered(connect)
    await make_heartbeat_old(me["agent_id"], 3600)
    observer, _ = await registered(connect, model="Claude")
    before = {a["agent_id"]: a for a in (await observer.call("agent_list"))["agents"]}
    assert before[me["agent_id"]]["is_online"] is False
    await client.call("agent_heartbeat")
    after = {a["agent_id"]: a for a in (await observer.call("agent_list"))["agents"]}
    assert after[me["agent_id"]]["is_online"] is True


# --- agent_list --------------------------------------------------------------------------


async def test_agent_list_shows_registered_agents_with_computed_presence(connect, make_heartbeat_old):
    client, me = await registered(connect)
    _, stale = await registered(connect, model="Claude")
    await make_heartbeat_old(stale["agent_id"], 3600)
    result = await client.call("agent_list")
    assert set(result) == {"agents", "has_more", "next_cursor"}
    assert (result["has_more"], result["next_cursor"]) == (False, None)
    by_id = {a["agent_id"]: a for a in result["agents"]}
    assert set(by_id) == {me["agent_id"], stale["agent_id"]}
    assert all(set(a) == AGENT_KEYS for a in result["agents"])
    assert by_id[me["agent_id"]]["is_online"] is True
    assert by_id[stale["agent_id"]]["is_online"] is False


async def test_agent_list_online_only_leaves_out_stale_agents(connect, make_heartbeat_old):
    client, me = await registered(connect)
    _, stale = await registered(connect, model="Claude")
    await make_heartbeat_old(stale["agent_id"], 3600)
    result = await client.call("agent_list", {"online_only": True})
    assert [a["agent_id"] for a in result["agents"]] == [me["agent_id"]]


async def test_agent_list_leaves_out_unregistered_agents(connect):
    client, me = await registered(connect)
    gone, _ = await registered(connect, model="Claude")
    await gone.call("agent_unregister")
    for args in ({}, {"online_only": True}, {"online_only": False}):
        result = await client.call("agent_list", args)
        assert [a["agent_id"] for a in result["agents"]] == [me["agent_id"]]


async def test_agent_list_with_mistyped_online_only_is_bad_request(connect):
    client, _ = await registered(connect)
    error = await client.error("agent_list", {"online_only": "yes"})
    assert error["code"] == "BadRequest"
    assert error["field"] == "online_only"


# --- agent_set_typing --------------------------------------------------------------------


async def test_agent_set_typing_replies_ok_and_tells_observers(connect):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(PRESENCE_GROUP, channel)
    try:
        client, me = await registered(connect)
        thread_id = (await new_thread(client))["thread"]["thread_id"]
        assert await client.call("agent_set_typing", {"thread_id": thread_id, "is_typing": True}) == {"ok": True}
        event = await presence_event(channel, me["agent_id"], kind="agent.typing")
        assert (event["thread_id"], event["is_typing"]) == (thread_id, True)
    finally:
        await layer.group_discard(PRESENCE_GROUP, channel)


@pytest.mark.parametrize(
    "args, field",
    [
        ({"is_typing": True}, "thread_id"),
        ({"thread_id": UNKNOWN_ID}, "is_typing"),
        ({"thread_id": UNKNOWN_ID, "is_typing": "yes"}, "is_typing"),
    ],
)
async def test_agent_set_typing_with_missing_or_mistyped_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("agent_set_typing", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


async def test_agent_set_typing_in_unknown_thread_is_not_found(connect):
    client, _ = await registered(connect)
    error = await client.error("agent_set_typing", {"thread_id": UNKNOWN_ID, "is_typing": False})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")


async def test_ops_whose_heartbeat_is_coalesced_do_not_call_the_database_for_it(connect, monkeypatch):
    """Only a due heartbeat costs a call on the database thread; the others are decided in the event loop."""
    client, _ = await registered(connect)
    calls = []
    original = agent_services.record_activity

    def counting(**kwargs):
        calls.append(kwargs["op"])
        return original(**kwargs)

    monkeypatch.setattr(agent_services, "record_activity", counting)
    for _ in range(5):
        await client.call("bus_get_config")
    assert calls == []  # registering stored a heartbeat a moment ago
    await client.call("agent_heartbeat")
    assert calls == ["agent_heartbeat"]  # always stored
