"""Every op of PROTOCOL.md over the wire: its reply shape and the errors it can give."""

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from agents import services as agent_services
from agents.events import PRESENCE_GROUP
from agents.models import Agent
from tests.conftest import registered
from threads import services
from threads.models import Thread, ThreadTemplate

pytestmark = pytest.mark.django_db(transaction=True)

AGENT_KEYS = {
    "agent_id",
    "name",
    "display_name",
    "ide",
    "model",
    "description",
    "capabilities",
    "is_online",
    "last_heartbeat",
    "last_activity",
    "last_activity_at",
    "registered_at",
}
THREAD_KEYS = {
    "thread_id",
    "topic",
    "status",
    "created_at",
    "updated_at",
    "closed_at",
    "summary",
    "system_prompt",
    "template_id",
    "metadata",
    "last_seq",
    "creator_agent_id",
    "administrator_agent_id",
}
MESSAGE_KEYS = {
    "msg_id",
    "thread_id",
    "seq",
    "author_id",
    "author_name",
    "role",
    "content",
    "priority",
    "reply_to_msg_id",
    "metadata",
    "created_at",
    "edited_at",
    "edit_version",
}
UNKNOWN_ID = str(uuid.uuid4())


# --- helpers -------------------------------------------------------------------


def assert_sync_context(result: dict, current_seq: int) -> None:
    assert result["current_seq"] == current_seq
    assert isinstance(result["reply_token"], str) and result["reply_token"]
    assert set(result["reply_window"]) == {"expires_at", "max_new_messages"}
    assert result["reply_window"]["expires_at"].endswith(("Z", "+00:00"))


async def new_thread(client, topic: str = "plan", **args) -> dict:
    return await client.call("thread_create", {"topic": topic, **args})


def post_args(thread_id: str, content: str, seq: int, token: str, **extra) -> dict:
    return {"thread_id": thread_id, "content": content, "expected_last_seq": seq, "reply_token": token, **extra}


def with_agentchat(settings, **changes) -> None:
    settings.AGENTCHAT = {**settings.AGENTCHAT, **changes}


@database_sync_to_async
def add_human_messages(thread_id: str, count: int) -> None:
    thread = Thread.objects.get(pk=thread_id)
    for n in range(1, count + 1):
        services.post_human_message(thread=thread, content=f"note {n}", author_name="Ada")


@database_sync_to_async
def age_heartbeat(agent_id: str, seconds: int) -> None:
    """Make the stored heartbeat old, as if the agent had been silent that long."""
    Agent.objects.filter(pk=agent_id).update(last_heartbeat=timezone.now() - timedelta(seconds=seconds))
    # ...so this process must not believe it stored one a moment ago.
    agent_services.heartbeat_writes.forget([uuid.UUID(agent_id)])


async def presence_event(channel: str, agent_id: str, kind: str = "agent.presence") -> dict:
    """The next event of `kind` about `agent_id` (other tests may share the layer)."""
    layer = get_channel_layer()
    while True:
        event = await asyncio.wait_for(layer.receive(channel), timeout=5)
        if event.get("type") == kind and event.get("agent_id") == agent_id:
            return event


# --- anonymous sockets -------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    [
        "agent_heartbeat",
        "agent_update",
        "agent_unregister",
        "agent_list",
        "agent_set_typing",
        "thread_create",
        "thread_list",
        "thread_get",
        "thread_set_state",
        "thread_close",
        "thread_archive",
        "msg_post",
        "msg_list",
        "msg_get",
        "msg_wait",
    ],
)
async def test_op_on_anonymous_socket_is_unauthenticated(connect, op):
    client = await connect()
    error = await client.error(op, {})
    assert error["code"] == "Unauthenticated"
    assert error["message"]


# --- agent_register ------------------------------------------------------------------


async def test_agent_register_returns_id_token_name_and_agent(connect):
    client = await connect()
    result = await client.call(
        "agent_register",
        {
            "ide": "VS Code",
            "model": "GPT",
            "display_name": "Planner",
            "description": "plans things",
            "capabilities": ["python", "review"],
        },
    )
    assert set(result) == {"agent_id", "token", "name", "agent"}
    assert isinstance(result["token"], str) and result["token"]
    assert result["name"] == "VS Code (GPT)"
    agent = result["agent"]
    assert set(agent) == AGENT_KEYS
    assert agent["agent_id"] == result["agent_id"]
    assert agent["display_name"] == "Planner"
    assert agent["description"] == "plans things"
    assert agent["capabilities"] == ["python", "review"]
    assert agent["is_online"] is True  # registering counts as a heartbeat
    assert "token" not in agent


async def test_agent_register_numbers_names_of_same_ide_and_model(connect):
    _, first = await registered(connect)
    _, second = await registered(connect)
    _, third = await registered(connect)
    assert [first["name"], second["name"], third["name"]] == ["VS Code (GPT)", "VS Code (GPT) 2", "VS Code (GPT) 3"]


async def test_agent_register_binds_the_socket(connect):
    client, _ = await registered(connect)
    result = await client.call("agent_list")
    assert len(result["agents"]) == 1


@pytest.mark.parametrize(
    "args, field",
    [
        ({"model": "GPT"}, "ide"),
        ({"ide": "VS Code"}, "model"),
        ({"ide": 3, "model": "GPT"}, "ide"),
        ({"ide": "VS Code", "model": ["GPT"]}, "model"),
        ({"ide": "  ", "model": "GPT"}, "ide"),
        ({"ide": "VS Code", "model": "GPT", "capabilities": "python"}, "capabilities"),
        ({"ide": "VS Code", "model": "GPT", "capabilities": [1, 2]}, "capabilities"),
        ({"ide": "VS Code", "model": "GPT", "display_name": 5}, "display_name"),
    ],
)
async def test_agent_register_with_missing_or_mistyped_arg_is_bad_request_naming_it(connect, args, field):
    client = await connect()
    error = await client.error("agent_register", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


async def test_agent_register_again_rebinds_the_socket(connect):
    client, first = await registered(connect)
    second = await client.call("agent_register", {"ide": "Cursor", "model": "Claude"})
    result = await client.call("agent_update", {"description": "second"})
    assert result["agent"]["agent_id"] == second["agent_id"] != first["agent_id"]


# --- agent_resume --------------------------------------------------------------------


async def test_agent_resume_binds_a_new_socket_without_returning_the_token(connect):
    _, first = await registered(connect)
    other = await connect()
    result = await other.call("agent_resume", {"agent_id": first["agent_id"], "token": first["token"]})
    assert set(result) == {"agent"}
    assert set(result["agent"]) == AGENT_KEYS
    assert result["agent"]["agent_id"] == first["agent_id"]
    assert result["agent"]["is_online"] is True
    updated = await other.call("agent_update", {"display_name": "resumed"})
    assert updated["agent"]["agent_id"] == first["agent_id"]


async def test_agent_resume_with_wrong_token_is_invalid_credentials(connect):
    _, first = await registered(connect)
    other = await connect()
    error = await other.error("agent_resume", {"agent_id": first["agent_id"], "token": "not-the-token"})
    assert error["code"] == "InvalidCredentials"
    assert "not-the-token" not in error["message"]
    assert (await other.error("agent_list"))["code"] == "Unauthenticated"


@pytest.mark.parametrize("agent_id", [UNKNOWN_ID, "not-a-uuid"])
async def test_agent_resume_of_unknown_agent_is_invalid_credentials(connect, agent_id):
    client = await connect()
    error = await client.error("agent_resume", {"agent_id": agent_id, "token": "whatever"})
    assert error["code"] == "InvalidCredentials"


@pytest.mark.parametrize(
    "args, field",
    [
        ({"token": "t"}, "agent_id"),
        ({"agent_id": UNKNOWN_ID}, "token"),
        ({"agent_id": UNKNOWN_ID, "token": 1}, "token"),
    ],
)
async def test_agent_resume_with_missing_or_mistyped_arg_is_bad_request(connect, args, field):
    client = await connect()
    error = await client.error("agent_resume", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


# --- agent_heartbeat -----------------------------------------------------------------


async def test_agent_heartbeat_replies_ok_with_the_configured_interval(connect, settings):
    with_agentchat(settings, HEARTBEAT_INTERVAL=7, AGENT_HEARTBEAT_TIMEOUT=20)
    client, _ = await registered(connect)
    assert await client.call("agent_heartbeat") == {"ok": True, "next_heartbeat_in": 7}


async def test_agent_heartbeat_brings_a_stale_agent_back_online(connect):
    client, me = await registered(connect)
    await age_heartbeat(me["agent_id"], 3600)
    observer, _ = await registered(connect, model="Claude")
    before = {a["agent_id"]: a for a in (await observer.call("agent_list"))["agents"]}
    assert before[me["agent_id"]]["is_online"] is False
    await client.call("agent_heartbeat")
    after = {a["agent_id"]: a for a in (await observer.call("agent_list"))["agents"]}
    assert after[me["agent_id"]]["is_online"] is True


# --- agent_update --------------------------------------------------------------------


async def test_agent_update_changes_only_the_given_fields(connect):
    client = await connect()
    await client.call(
        "agent_register", {"ide": "VS Code", "model": "GPT", "display_name": "Old", "description": "keep me"}
    )
    result = await client.call("agent_update", {"display_name": "New", "capabilities": ["sql"]})
    assert set(result) == {"agent"}
    agent = result["agent"]
    assert set(agent) == AGENT_KEYS
    assert (agent["display_name"], agent["description"], agent["capabilities"]) == ("New", "keep me", ["sql"])
    listed = (await client.call("agent_list"))["agents"][0]
    assert (listed["display_name"], listed["capabilities"]) == ("New", ["sql"])


@pytest.mark.parametrize(
    "args, field",
    [
        ({"display_name": 1}, "display_name"),
        ({"description": []}, "description"),
        ({"capabilities": "x"}, "capabilities"),
    ],
)
async def test_agent_update_with_mistyped_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("agent_update", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


# --- agent_unregister ----------------------------------------------------------------


async def test_agent_unregister_unbinds_voids_the_token_and_hides_the_agent(connect):
    client, me = await registered(connect)
    observer, _ = await registered(connect, model="Claude")
    assert await client.call("agent_unregister") == {"ok": True}
    assert (await client.error("agent_list"))["code"] == "Unauthenticated"
    other = await connect()
    error = await other.error("agent_resume", {"agent_id": me["agent_id"], "token": me["token"]})
    assert error["code"] == "InvalidCredentials"
    ids = [a["agent_id"] for a in (await observer.call("agent_list"))["agents"]]
    assert me["agent_id"] not in ids


# --- agent_list ----------------------------------------------------------------------


async def test_agent_list_shows_registered_agents_with_computed_presence(connect):
    client, me = await registered(connect)
    _, stale = await registered(connect, model="Claude")
    await age_heartbeat(stale["agent_id"], 3600)
    result = await client.call("agent_list")
    assert set(result) == {"agents"}
    by_id = {a["agent_id"]: a for a in result["agents"]}
    assert set(by_id) == {me["agent_id"], stale["agent_id"]}
    assert all(set(a) == AGENT_KEYS for a in result["agents"])
    assert by_id[me["agent_id"]]["is_online"] is True
    assert by_id[stale["agent_id"]]["is_online"] is False


async def test_agent_list_online_only_leaves_out_stale_agents(connect):
    client, me = await registered(connect)
    _, stale = await registered(connect, model="Claude")
    await age_heartbeat(stale["agent_id"], 3600)
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


# --- agent_set_typing ----------------------------------------------------------------


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


# --- thread_create -------------------------------------------------------------------


async def test_thread_create_returns_the_thread_and_a_sync_context(connect):
    client, me = await registered(connect)
    result = await new_thread(client, "plan", system_prompt="Be brief.", metadata={"team": "core"})
    assert set(result) == {"thread", "current_seq", "reply_token", "reply_window"}
    thread = result["thread"]
    assert set(thread) == THREAD_KEYS
    assert thread["topic"] == "plan"
    assert thread["status"] == "discuss"
    assert thread["system_prompt"] == "Be brief."
    assert thread["metadata"] == {"team": "core"}
    assert thread["last_seq"] == 0
    assert thread["closed_at"] is None
    assert thread["creator_agent_id"] == me["agent_id"]
    assert thread["created_at"].endswith(("Z", "+00:00"))
    assert_sync_context(result, 0)


async def test_thread_create_token_lets_the_creator_post_first(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    posted = await client.call(
        "msg_post", post_args(created["thread"]["thread_id"], "hello", 0, created["reply_token"])
    )
    assert posted["message"]["seq"] == 1


async def test_thread_create_from_template_takes_its_prompt(connect):
    await database_sync_to_async(ThreadTemplate.objects.create)(
        id="review", name="Review", system_prompt="Review the diff.", default_metadata={"kind": "review"}
    )
    client, _ = await registered(connect)
    thread = (await new_thread(client, template="review"))["thread"]
    assert thread["template_id"] == "review"
    assert thread["system_prompt"] == "Review the diff."
    assert thread["metadata"] == {"kind": "review"}


async def test_thread_create_with_unknown_template_is_not_found(connect):
    client, _ = await registered(connect)
    error = await client.error("thread_create", {"topic": "plan", "template": "nope"})
    assert (error["code"], error["resource"]) == ("NotFound", "template")


async def test_thread_create_with_a_topic_in_use_is_conflict(connect):
    client, _ = await registered(connect)
    await new_thread(client, "plan")
    error = await client.error("thread_create", {"topic": "plan"})
    assert error["code"] == "Conflict"


@pytest.mark.parametrize(
    "args, field",
    [
        ({}, "topic"),
        ({"topic": 5}, "topic"),
        ({"topic": "   "}, "topic"),
        ({"topic": "x" * 301}, "topic"),
        ({"topic": "plan", "metadata": [1]}, "metadata"),
        ({"topic": "plan", "system_prompt": 1}, "system_prompt"),
    ],
)
async def test_thread_create_with_missing_or_bad_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("thread_create", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


# --- thread_list ---------------------------------------------------------------------


async def test_thread_list_is_newest_first_and_leaves_out_archived(connect):
    client, _ = await registered(connect)
    ids = [(await new_thread(client, topic))["thread"]["thread_id"] for topic in ("a", "b", "c")]
    await client.call("thread_archive", {"thread_id": ids[1]})
    result = await client.call("thread_list")
    assert set(result) == {"threads", "next_cursor", "has_more"}
    assert [t["thread_id"] for t in result["threads"]] == [ids[2], ids[0]]
    assert all(set(t) == THREAD_KEYS for t in result["threads"])
    assert (result["has_more"], result["next_cursor"]) == (False, None)
    archived = await client.call("thread_list", {"status": "archived"})
    assert [t["thread_id"] for t in archived["threads"]] == [ids[1]]


async def test_thread_list_filters_by_status(connect):
    client, _ = await registered(connect)
    ids = [(await new_thread(client, topic))["thread"]["thread_id"] for topic in ("a", "b")]
    await client.call("thread_set_state", {"thread_id": ids[0], "state": "review"})
    result = await client.call("thread_list", {"status": "review"})
    assert [t["thread_id"] for t in result["threads"]] == [ids[0]]


async def test_thread_list_pages_with_the_cursor(connect):
    client, _ = await registered(connect)
    ids = [(await new_thread(client, f"t{n}"))["thread"]["thread_id"] for n in range(5)]
    first = await client.call("thread_list", {"limit": 2})
    assert [t["thread_id"] for t in first["threads"]] == [ids[4], ids[3]]
    assert first["has_more"] is True and isinstance(first["next_cursor"], str)
    second = await client.call("thread_list", {"limit": 2, "before": first["next_cursor"]})
    assert [t["thread_id"] for t in second["threads"]] == [ids[2], ids[1]]
    third = await client.call("thread_list", {"limit": 2, "before": second["next_cursor"]})
    assert [t["thread_id"] for t in third["threads"]] == [ids[0]]
    assert (third["has_more"], third["next_cursor"]) == (False, None)


async def test_thread_list_clamps_a_limit_over_the_maximum(connect):
    @database_sync_to_async
    def make_threads() -> None:
        Thread.objects.bulk_create([Thread(topic=f"bulk {n}") for n in range(201)])

    await make_threads()
    client, _ = await registered(connect)
    result = await client.call("thread_list", {"limit": 5000})
    assert len(result["threads"]) == 200
    assert result["has_more"] is True


@pytest.mark.parametrize(
    "args, field",
    [
        ({"status": "bogus"}, "status"),
        ({"status": 1}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"before": "not a cursor"}, "before"),
        ({"before": 7}, "before"),
    ],
)
async def test_thread_list_with_bad_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("thread_list", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


# --- thread_get ----------------------------------------------------------------------


async def test_thread_get_returns_the_thread(connect):
    client, _ = await registered(connect)
    created = (await new_thread(client))["thread"]
    result = await client.call("thread_get", {"thread_id": created["thread_id"]})
    assert result == {"thread": created}


@pytest.mark.parametrize("thread_id", [UNKNOWN_ID, "not-a-uuid", 42])
async def test_thread_get_of_unknown_thread_is_not_found(connect, thread_id):
    client, _ = await registered(connect)
    error = await client.error("thread_get", {"thread_id": thread_id})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")


@pytest.mark.parametrize("args", [{}, {"thread_id": None}, {"thread_id": ["x"]}, {"thread_id": True}])
async def test_thread_get_without_a_thread_id_is_bad_request(connect, args):
    client, _ = await registered(connect)
    error = await client.error("thread_get", args)
    assert (error["code"], error["field"]) == ("BadRequest", "thread_id")


# --- thread_set_state ----------------------------------------------------------------


async def test_thread_set_state_moves_among_open_states(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    for state in ("implement", "review", "done", "discuss"):
        result = await client.call("thread_set_state", {"thread_id": thread_id, "state": state})
        assert set(result) == {"thread"}
        assert result["thread"]["status"] == state


async def test_thread_set_state_reopens_a_closed_thread(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    await client.call("thread_close", {"thread_id": thread_id})
    thread = (await client.call("thread_set_state", {"thread_id": thread_id, "state": "review"}))["thread"]
    assert (thread["status"], thread["closed_at"]) == ("review", None)


@pytest.mark.parametrize("state", ["closed", "archived"])
async def test_thread_set_state_to_closed_or_archived_is_invalid_transition(connect, state):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    error = await client.error("thread_set_state", {"thread_id": thread_id, "state": state})
    assert error["code"] == "InvalidTransition"
    assert (await client.call("thread_get", {"thread_id": thread_id}))["thread"]["status"] == "discuss"


async def test_thread_set_state_reopening_an_archived_thread_whose_topic_is_taken_is_conflict(connect):
    client, _ = await registered(connect)
    old_id = (await new_thread(client, "plan"))["thread"]["thread_id"]
    await client.call("thread_archive", {"thread_id": old_id})
    await new_thread(client, "plan")
    error = await client.error("thread_set_state", {"thread_id": old_id, "state": "discuss"})
    assert error["code"] == "Conflict"


@pytest.mark.parametrize(
    "args, field",
    [
        ({"state": "review"}, "thread_id"),
        ({"thread_id": UNKNOWN_ID}, "state"),
        ({"thread_id": UNKNOWN_ID, "state": 3}, "state"),
    ],
)
async def test_thread_set_state_with_missing_or_mistyped_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("thread_set_state", args)
    assert (error["code"], error["field"]) == ("BadRequest", field)


async def test_thread_set_state_to_an_unknown_state_is_bad_request(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    error = await client.error("thread_set_state", {"thread_id": thread_id, "state": "bogus"})
    assert (error["code"], error["field"]) == ("BadRequest", "state")


async def test_thread_set_state_of_unknown_thread_is_not_found(connect):
    client, _ = await registered(connect)
    error = await client.error("thread_set_state", {"thread_id": UNKNOWN_ID, "state": "review"})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")


# --- thread_close / thread_archive ---------------------------------------------------------


async def test_thread_close_sets_closed_at_and_summary_and_is_harmless_twice(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    result = await client.call("thread_close", {"thread_id": thread_id, "summary": "done deal"})
    assert set(result) == {"thread"}
    thread = result["thread"]
    assert (thread["status"], thread["summary"]) == ("closed", "done deal")
    assert thread["closed_at"] is not None
    again = (await client.call("thread_close", {"thread_id": thread_id}))["thread"]
    assert (again["status"], again["closed_at"], again["summary"]) == ("closed", thread["closed_at"], "done deal")


async def test_thread_close_errors(connect):
    client, _ = await registered(connect)
    error = await client.error("thread_close", {"thread_id": UNKNOWN_ID})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")
    error = await client.error("thread_close", {})
    assert (error["code"], error["field"]) == ("BadRequest", "thread_id")
    error = await client.error("thread_close", {"thread_id": UNKNOWN_ID, "summary": 1})
    assert (error["code"], error["field"]) == ("BadRequest", "summary")


async def test_thread_archive_frees_the_topic_and_is_harmless_twice(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client, "plan"))["thread"]["thread_id"]
    result = await client.call("thread_archive", {"thread_id": thread_id})
    assert set(result) == {"thread"}
    assert result["thread"]["status"] == "archived"
    assert result["thread"]["closed_at"] is not None
    again = await client.call("thread_archive", {"thread_id": thread_id})
    assert again["thread"]["status"] == "archived"
    assert (await new_thread(client, "plan"))["thread"]["thread_id"] != thread_id


async def test_thread_archive_errors(connect):
    client, _ = await registered(connect)
    error = await client.error("thread_archive", {"thread_id": UNKNOWN_ID})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")
    error = await client.error("thread_archive", {"thread_id": 1.5})
    assert (error["code"], error["field"]) == ("BadRequest", "thread_id")


# --- bus_get_config ------------------------------------------------------------------


async def test_bus_get_config_works_anonymously_and_reports_the_settings(connect, settings):
    with_agentchat(
        settings,
        HEARTBEAT_INTERVAL=11,
        AGENT_HEARTBEAT_TIMEOUT=33,
        MSG_WAIT_TIMEOUT_MS=1234,
        SEQ_TOLERANCE=2,
        RATE_LIMIT_PER_MINUTE=9,
        MAX_MESSAGE_CHARS=500,
    )
    client = await connect()
    assert await client.call("bus_get_config") == {
        "version": 1,
        "heartbeat_interval": 11,
        "heartbeat_timeout": 33,
        "msg_wait_timeout_ms": 1234,
        "seq_tolerance": 2,
        "rate_limit_per_minute": 9,
        "max_message_chars": 500,
    }
    # It does not bind the socket.
    assert (await client.error("agent_list"))["code"] == "Unauthenticated"


# --- bus_connect ---------------------------------------------------------------------


async def test_bus_connect_registering_creates_the_thread_by_name_and_returns_a_token(connect):
    client = await connect()
    result = await client.call("bus_connect", {"thread_name": "plan", "ide": "VS Code", "model": "GPT"})
    assert set(result) == {
        "agent",
        "token",
        "thread",
        "created",
        "is_administrator",
        "system_prompt",
        "messages",
        "truncated",
        "current_seq",
        "reply_token",
        "reply_window",
    }
    assert set(result["agent"]) == AGENT_KEYS
    assert set(result["thread"]) == THREAD_KEYS
    assert result["thread"]["topic"] == "plan"
    assert result["thread"]["creator_agent_id"] == result["agent"]["agent_id"]
    assert (result["created"], result["is_administrator"]) == (True, True)
    assert result["system_prompt"] == services.BUS_GUIDANCE
    assert (result["messages"], result["truncated"]) == ([], False)
    assert_sync_context(result, 0)
    # The socket is bound, and the token resumes the agent elsewhere.
    assert (await client.call("agent_list"))["agents"][0]["agent_id"] == result["agent"]["agent_id"]
    other = await connect()
    await other.call("agent_resume", {"agent_id": result["agent"]["agent_id"], "token": result["token"]})


async def test_bus_connect_resuming_joins_by_id_without_returning_a_token(connect):
    admin, _ = await registered(connect)
    created = await new_thread(admin, "plan", system_prompt="Ship it.")
    thread_id = created["thread"]["thread_id"]
    await admin.call("msg_post", post_args(thread_id, "first", 0, created["reply_token"]))
    _, me = await registered(connect, model="Claude")
    client = await connect()
    result = await client.call(
        "bus_connect", {"thread_id": thread_id, "agent_id": me["agent_id"], "token": me["token"]}
    )
    assert "token" not in result
    assert result["agent"]["agent_id"] == me["agent_id"]
    assert (result["created"], result["is_administrator"]) == (False, False)
    assert result["system_prompt"] == services.BUS_GUIDANCE + "\n\nShip it."
    assert [m["content"] for m in result["messages"]] == ["first"]
    assert set(result["messages"][0]) == MESSAGE_KEYS
    assert_sync_context(result, 1)
    posted = await client.call("msg_post", post_args(thread_id, "second", 1, result["reply_token"]))
    assert posted["message"]["author_id"] == me["agent_id"]


async def test_bus_connect_by_name_joins_an_existing_thread(connect):
    admin, _ = await registered(connect)
    thread_id = (await new_thread(admin, "plan"))["thread"]["thread_id"]
    client = await connect()
    result = await client.call("bus_connect", {"thread_name": "plan", "ide": "Cursor", "model": "Claude"})
    assert result["thread"]["thread_id"] == thread_id
    assert (result["created"], result["is_administrator"]) == (False, False)


async def test_bus_connect_on_a_bound_socket_keeps_the_agent(connect):
    client, me = await registered(connect)
    result = await client.call("bus_connect", {"thread_name": "plan"})
    assert result["agent"]["agent_id"] == me["agent_id"]
    assert "token" not in result
    assert result["is_administrator"] is True


async def test_bus_connect_after_seq_returns_only_newer_messages(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    await add_human_messages(thread_id, 3)
    result = await client.call("bus_connect", {"thread_id": thread_id, "after_seq": 1})
    assert [m["seq"] for m in result["messages"]] == [2, 3]
    assert result["truncated"] is False
    assert_sync_context(result, 3)


async def test_bus_connect_returns_the_newest_50_and_says_it_truncated(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    await add_human_messages(thread_id, 53)
    result = await client.call("bus_connect", {"thread_id": thread_id})
    assert [m["seq"] for m in result["messages"]] == list(range(4, 54))
    assert result["truncated"] is True
    assert_sync_context(result, 53)
    rest = await client.call("bus_connect", {"thread_id": thread_id, "after_seq": 3})
    assert rest["truncated"] is False


async def test_bus_connect_with_wrong_token_is_invalid_credentials(connect):
    _, me = await registered(connect)
    client = await connect()
    error = await client.error("bus_connect", {"thread_name": "plan", "agent_id": me["agent_id"], "token": "wrong"})
    assert error["code"] == "InvalidCredentials"
    assert (await client.error("agent_list"))["code"] == "Unauthenticated"


async def test_bus_connect_to_unknown_thread_id_is_not_found(connect):
    client = await connect()
    error = await client.error("bus_connect", {"thread_id": UNKNOWN_ID, "ide": "VS Code", "model": "GPT"})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")


@pytest.mark.parametrize(
    "args, field",
    [
        ({"ide": "VS Code", "model": "GPT"}, "thread_name"),
        ({"thread_name": "plan"}, "ide"),
        ({"thread_name": "plan", "ide": "VS Code"}, "model"),
        ({"thread_name": "plan", "agent_id": UNKNOWN_ID}, "token"),
        ({"thread_name": "plan", "ide": "VS Code", "model": "GPT", "after_seq": -1}, "after_seq"),
        ({"thread_name": "plan", "ide": "VS Code", "model": "GPT", "after_seq": "1"}, "after_seq"),
        ({"thread_name": 7, "ide": "VS Code", "model": "GPT"}, "thread_name"),
        ({"thread_name": "  ", "ide": "VS Code", "model": "GPT"}, "topic"),
    ],
)
async def test_bus_connect_with_missing_or_bad_arg_is_bad_request(connect, args, field):
    client = await connect()
    error = await client.error("bus_connect", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


# --- msg_post ------------------------------------------------------------------------


async def test_msg_post_returns_the_message_and_a_chain_token(connect):
    client, me = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    result = await client.call(
        "msg_post", post_args(thread_id, "hello", 0, created["reply_token"], priority="urgent", metadata={"k": 1})
    )
    assert set(result) == {"message", "current_seq", "reply_token", "reply_window"}
    message = result["message"]
    assert set(message) == MESSAGE_KEYS
    assert message["thread_id"] == thread_id
    assert message["seq"] == 1
    assert (message["author_id"], message["author_name"]) == (me["agent_id"], me["name"])
    assert (message["role"], message["priority"], message["content"]) == ("assistant", "urgent", "hello")
    assert message["metadata"] == {"k": 1}
    assert (message["edited_at"], message["edit_version"], message["reply_to_msg_id"]) == (None, 0, None)
    assert_sync_context(result, 1)
    assert result["reply_token"] != created["reply_token"]
    reply = await client.call(
        "msg_post", post_args(thread_id, "again", 1, result["reply_token"], reply_to_msg_id=message["msg_id"])
    )
    assert reply["message"]["seq"] == 2
    assert reply["message"]["reply_to_msg_id"] == message["msg_id"]


async def test_msg_post_with_the_same_client_msg_id_returns_the_first_message(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    first = await client.call("msg_post", post_args(thread_id, "hello", 0, created["reply_token"], client_msg_id="c-1"))
    again = await client.call("msg_post", post_args(thread_id, "hello", 0, created["reply_token"], client_msg_id="c-1"))
    assert again["message"] == first["message"]
    assert_sync_context(again, 1)
    assert (await client.call("msg_list", {"thread_id": thread_id}))["current_seq"] == 1


@pytest.mark.parametrize("missing", ["expected_last_seq", "reply_token"])
async def test_msg_post_without_sync_fields_is_missing_sync_fields(connect, missing):
    client, _ = await registered(connect)
    created = await new_thread(client)
    args = post_args(created["thread"]["thread_id"], "hello", 0, created["reply_token"])
    del args[missing]
    error = await client.error("msg_post", args)
    assert error["code"] == "MissingSyncFields"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"content": None}, "content"),
        ({"content": 5}, "content"),
        ({"content": "   "}, "content"),
        ({"thread_id": None}, "thread_id"),
        ({"expected_last_seq": "0"}, "expected_last_seq"),
        ({"expected_last_seq": 5}, "expected_last_seq"),
        ({"reply_token": 5}, "reply_token"),
        ({"priority": "asap"}, "priority"),
        ({"role": "robot"}, "role"),
        ({"metadata": "x"}, "metadata"),
        ({"metadata": {"visibility": "human_only"}}, "metadata.visibility"),
        ({"metadata": {"mentions": "bob"}}, "metadata.mentions"),
        ({"metadata": {"stop_reason": "bored"}}, "metadata.stop_reason"),
    ],
)
async def test_msg_post_with_missing_or_bad_arg_is_bad_request_and_keeps_the_token(connect, changes, field):
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    args = {**post_args(thread_id, "hello", 0, created["reply_token"]), **changes}
    args = {key: value for key, value in args.items() if value is not None}
    error = await client.error("msg_post", args)
    assert (error["code"], error["field"]) == ("BadRequest", field)
    # A refused post changes nothing: the token still works.
    await client.call("msg_post", post_args(thread_id, "hello", 0, created["reply_token"]))


async def test_msg_post_to_unknown_thread_is_not_found(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    error = await client.error("msg_post", post_args(UNKNOWN_ID, "hello", 0, created["reply_token"]))
    assert (error["code"], error["resource"]) == ("NotFound", "thread")


async def test_msg_post_replying_to_unknown_message_is_not_found(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    args = post_args(created["thread"]["thread_id"], "hello", 0, created["reply_token"], reply_to_msg_id=UNKNOWN_ID)
    error = await client.error("msg_post", args)
    assert (error["code"], error["resource"]) == ("NotFound", "message")


async def test_msg_post_with_unknown_token_is_reply_token_invalid(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    error = await client.error("msg_post", post_args(created["thread"]["thread_id"], "hello", 0, "made-up"))
    assert error["code"] == "ReplyTokenInvalid"
    assert "made-up" not in error["message"]


async def test_msg_post_with_a_token_of_another_thread_is_reply_token_invalid(connect):
    client, _ = await registered(connect)
    first = await new_thread(client, "a")
    second = await new_thread(client, "b")
    error = await client.error("msg_post", post_args(second["thread"]["thread_id"], "hi", 0, first["reply_token"]))
    assert error["code"] == "ReplyTokenInvalid"


async def test_msg_post_with_another_agents_token_is_reply_token_invalid(connect):
    alice, _ = await registered(connect)
    bob, _ = await registered(connect, model="Claude")
    created = await new_thread(alice)
    error = await bob.error("msg_post", post_args(created["thread"]["thread_id"], "hi", 0, created["reply_token"]))
    assert error["code"] == "ReplyTokenInvalid"


async def test_msg_post_reusing_a_consumed_token_is_reply_token_replay(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    await client.call("msg_post", post_args(thread_id, "one", 0, created["reply_token"]))
    error = await client.error("msg_post", post_args(thread_id, "two", 1, created["reply_token"]))
    assert error["code"] == "ReplyTokenReplay"


async def test_msg_post_with_a_token_past_its_lease_is_reply_token_expired(connect, settings):
    with_agentchat(settings, REPLY_TOKEN_LEASE_SECONDS=0)
    client, _ = await registered(connect)
    created = await new_thread(client)
    error = await client.error("msg_post", post_args(created["thread"]["thread_id"], "late", 0, created["reply_token"]))
    assert error["code"] == "ReplyTokenExpired"


async def test_msg_post_behind_the_thread_is_seq_mismatch_with_the_missed_messages(connect):
    alice, _ = await registered(connect)
    bob, _ = await registered(connect, model="Claude")
    created = await new_thread(alice)
    thread_id = created["thread"]["thread_id"]
    joined = await bob.call("bus_connect", {"thread_id": thread_id})
    await bob.call("msg_post", post_args(thread_id, "bob first", 0, joined["reply_token"]))

    error = await alice.error("msg_post", post_args(thread_id, "alice late", 0, created["reply_token"]))
    assert error["code"] == "SeqMismatch"
    assert error["current_seq"] == 1
    assert [m["content"] for m in error["new_messages"]] == ["bob first"]
    assert set(error["new_messages"][0]) == MESSAGE_KEYS
    # Her outstanding tokens are voided; msg_wait gives her a fresh one at once.
    voided = await alice.error("msg_post", post_args(thread_id, "alice late", 1, created["reply_token"]))
    assert voided["code"] == "ReplyTokenInvalid"
    caught_up = await alice.call("msg_wait", {"thread_id": thread_id, "after_seq": 1, "timeout_ms": 0})
    posted = await alice.call("msg_post", post_args(thread_id, "alice now", 1, caught_up["reply_token"]))
    assert posted["message"]["seq"] == 2


async def test_msg_post_within_seq_tolerance_is_accepted(connect, settings):
    with_agentchat(settings, SEQ_TOLERANCE=1)
    alice, _ = await registered(connect)
    bob, _ = await registered(connect, model="Claude")
    created = await new_thread(alice)
    thread_id = created["thread"]["thread_id"]
    joined = await bob.call("bus_connect", {"thread_id": thread_id})
    assert joined["reply_window"]["max_new_messages"] == 1
    await bob.call("msg_post", post_args(thread_id, "bob first", 0, joined["reply_token"]))
    posted = await alice.call("msg_post", post_args(thread_id, "alice", 0, created["reply_token"]))
    assert posted["message"]["seq"] == 2


@pytest.mark.parametrize("finish", ["thread_close", "thread_archive"])
async def test_msg_post_to_a_closed_or_archived_thread_is_thread_closed(connect, finish):
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    await client.call(finish, {"thread_id": thread_id})
    error = await client.error("msg_post", post_args(thread_id, "hello", 0, created["reply_token"]))
    assert error["code"] == "ThreadClosed"
    # Not consumed: after reopening, the same token posts.
    await client.call("thread_set_state", {"thread_id": thread_id, "state": "discuss"})
    await client.call("msg_post", post_args(thread_id, "hello", 0, created["reply_token"]))


async def test_msg_post_over_the_rate_limit_is_rate_limited_with_retry_after(connect, settings):
    with_agentchat(settings, RATE_LIMIT_PER_MINUTE=2)
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    token = created["reply_token"]
    for seq in (0, 1):
        token = (await client.call("msg_post", post_args(thread_id, f"m{seq}", seq, token)))["reply_token"]
    error = await client.error("msg_post", post_args(thread_id, "one too many", 2, token))
    assert error["code"] == "RateLimited"
    assert isinstance(error["retry_after"], int) and 1 <= error["retry_after"] <= 60


async def test_msg_post_holding_a_secret_is_content_blocked_naming_the_pattern(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    secret = "AKIA" + "ABCDEFGHIJKLMNOP"
    error = await client.error(
        "msg_post", post_args(created["thread"]["thread_id"], f"key={secret}", 0, created["reply_token"])
    )
    assert error["code"] == "ContentBlocked"
    assert error["pattern"] == "aws_access_key_id"
    assert secret not in json.dumps(error)


async def test_msg_post_with_the_content_filter_off_accepts_secrets(connect, settings):
    with_agentchat(settings, CONTENT_FILTER_ENABLED=False)
    client, _ = await registered(connect)
    created = await new_thread(client)
    secret = "AKIA" + "ABCDEFGHIJKLMNOP"
    await client.call("msg_post", post_args(created["thread"]["thread_id"], secret, 0, created["reply_token"]))


async def test_msg_post_content_over_max_message_chars_is_payload_too_large(connect, settings):
    with_agentchat(settings, MAX_MESSAGE_CHARS=10)
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    error = await client.error("msg_post", post_args(thread_id, "é" * 11, 0, created["reply_token"]))
    assert error["code"] == "PayloadTooLarge"
    # Exactly the limit (in characters, not bytes) is accepted.
    posted = await client.call("msg_post", post_args(thread_id, "é" * 10, 0, created["reply_token"]))
    assert posted["message"]["content"] == "é" * 10


async def test_frame_over_max_frame_bytes_is_payload_too_large_and_the_socket_stays_usable(connect, settings):
    with_agentchat(settings, MAX_FRAME_BYTES=1000)
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    await client.send("msg_post", post_args(thread_id, "x" * 2000, 0, created["reply_token"]), id="big")
    reply = await client.next_reply()
    assert reply["ok"] is False
    assert reply["error"]["code"] == "PayloadTooLarge"
    assert reply["id"] in (None, "big")
    posted = await client.call("msg_post", post_args(thread_id, "small", 0, created["reply_token"]))
    assert posted["message"]["seq"] == 1


# --- msg_list ------------------------------------------------------------------------


async def test_msg_list_returns_messages_in_seq_order_after_a_seq(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    await add_human_messages(thread_id, 4)
    result = await client.call("msg_list", {"thread_id": thread_id})
    assert set(result) == {"messages", "current_seq"}
    assert [m["seq"] for m in result["messages"]] == [1, 2, 3, 4]
    assert all(set(m) == MESSAGE_KEYS for m in result["messages"])
    assert result["current_seq"] == 4
    page = await client.call("msg_list", {"thread_id": thread_id, "after_seq": 1, "limit": 2})
    assert [m["seq"] for m in page["messages"]] == [2, 3]
    assert page["current_seq"] == 4
    clamped = await client.call("msg_list", {"thread_id": thread_id, "limit": 5000})
    assert len(clamped["messages"]) == 4


async def test_msg_list_hides_human_only_content_from_agents(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]

    @database_sync_to_async
    def post_private() -> None:
        thread = Thread.objects.get(pk=thread_id)
        services.post_human_message(thread=thread, content="for humans", author_name="Ada", human_only=True)

    await post_private()
    message = (await client.call("msg_list", {"thread_id": thread_id}))["messages"][0]
    assert message["content"] == "[human-only content hidden]"
    assert (message["seq"], message["role"]) == (1, "user")


async def test_msg_list_errors(connect):
    client, _ = await registered(connect)
    error = await client.error("msg_list", {"thread_id": UNKNOWN_ID})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")
    for args, field in [
        ({}, "thread_id"),
        ({"thread_id": UNKNOWN_ID, "after_seq": "0"}, "after_seq"),
        ({"thread_id": UNKNOWN_ID, "after_seq": -1}, "after_seq"),
        ({"thread_id": UNKNOWN_ID, "limit": 0}, "limit"),
    ]:
        error = await client.error("msg_list", args)
        assert (error["code"], error["field"]) == ("BadRequest", field)


# --- msg_get -------------------------------------------------------------------------


async def test_msg_get_returns_the_message_and_its_reactions(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    posted = await client.call("msg_post", post_args(created["thread"]["thread_id"], "hi", 0, created["reply_token"]))
    result = await client.call("msg_get", {"msg_id": posted["message"]["msg_id"]})
    assert result == {"message": posted["message"], "reactions": []}


@pytest.mark.parametrize("msg_id", [UNKNOWN_ID, "not-a-uuid"])
async def test_msg_get_of_unknown_message_is_not_found(connect, msg_id):
    client, _ = await registered(connect)
    error = await client.error("msg_get", {"msg_id": msg_id})
    assert (error["code"], error["resource"]) == ("NotFound", "message")


async def test_msg_get_without_msg_id_is_bad_request(connect):
    client, _ = await registered(connect)
    error = await client.error("msg_get", {"msg_id": {"id": 1}})
    assert (error["code"], error["field"]) == ("BadRequest", "msg_id")


# --- msg_wait ------------------------------------------------------------------------


async def test_msg_wait_returns_messages_and_a_sync_context(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    await add_human_messages(thread_id, 2)
    result = await client.call("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 60_000})
    assert set(result) == {"messages", "has_more", "current_seq", "reply_token", "reply_window"}
    assert [m["seq"] for m in result["messages"]] == [1, 2]
    assert all(set(m) == MESSAGE_KEYS for m in result["messages"])
    assert result["has_more"] is False
    assert_sync_context(result, 2)


@pytest.mark.parametrize(
    "args, field",
    [
        ({"after_seq": 0}, "thread_id"),
        ({"thread_id": UNKNOWN_ID}, "after_seq"),
        ({"thread_id": UNKNOWN_ID, "after_seq": "0"}, "after_seq"),
        ({"thread_id": UNKNOWN_ID, "after_seq": 0, "timeout_ms": 3_600_001}, "timeout_ms"),
        ({"thread_id": UNKNOWN_ID, "after_seq": 0, "timeout_ms": -1}, "timeout_ms"),
        ({"thread_id": UNKNOWN_ID, "after_seq": 0, "limit": 0}, "limit"),
        ({"thread_id": UNKNOWN_ID, "after_seq": 0, "for_agent": ["x"]}, "for_agent"),
    ],
)
async def test_msg_wait_with_missing_or_bad_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("msg_wait", args)
    assert (error["code"], error["field"]) == ("BadRequest", field)


async def test_msg_wait_on_unknown_thread_is_not_found(connect):
    client, _ = await registered(connect)
    error = await client.error("msg_wait", {"thread_id": UNKNOWN_ID, "after_seq": 0, "timeout_ms": 60_000})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")
