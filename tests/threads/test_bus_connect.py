"""bus_connect, the one-call join: on the domain layer, then over the wire."""

import uuid

import pytest

from agentchat import errors
from agents import services as agent_services
from tests.support.domain import STAFF, post
from tests.support.wire import (
    AGENT_KEYS,
    MESSAGE_KEYS,
    THREAD_KEYS,
    UNKNOWN_ID,
    add_human_messages,
    assert_sync_context,
    new_thread,
    post_args,
    registered,
)
from threads import services
from threads.models import Thread

pytestmark = pytest.mark.django_db


def test_bus_connect_registers_an_agent_and_creates_the_thread_by_name():
    connection = services.bus_connect(agent=None, thread_name="release", ide="Cursor", model="Sonnet")

    assert connection.token is not None
    assert agent_services.authenticate(agent_id=str(connection.agent.pk), token=connection.token) == connection.agent
    assert connection.agent.name == "Cursor (Sonnet)"
    assert connection.created is True
    assert connection.is_administrator is True
    assert connection.thread.topic == "release"
    assert connection.thread.creator == connection.agent
    assert connection.messages == []
    assert connection.truncated is False
    assert connection.sync.current_seq == 0


def test_bus_connect_resumes_an_agent_into_an_existing_thread(make_agent, agent, thread):
    services.post_human_message(thread=thread, content="hello", author_name="Ada")
    newcomer, token = make_agent(model="Gemini")

    connection = services.bus_connect(agent=None, thread_name="plan", agent_id=str(newcomer.pk), token=token)

    assert connection.agent == newcomer
    assert connection.token is None
    assert connection.thread.pk == thread.pk
    assert connection.created is False
    assert connection.is_administrator is False
    assert [m.content for m in connection.messages] == ["hello"]
    assert connection.sync.current_seq == 1


def test_bus_connect_by_thread_id_marks_the_creator_as_administrator(agent, thread):
    connection = services.bus_connect(agent=agent, thread_id=str(thread.pk))

    assert connection.is_administrator is True
    assert connection.created is False


def test_bus_connect_token_posts_at_the_current_seq(agent, thread):
    services.post_human_message(thread=thread, content="hello", author_name="Ada")

    connection = services.bus_connect(agent=agent, thread_id=str(thread.pk))

    assert post(agent, thread, connection.sync)[0].seq == 2


def test_bus_connect_returns_the_newest_50_unseen_messages_and_says_it_truncated(agent, thread):
    for n in range(1, 56):
        services.post_human_message(thread=thread, content=f"m{n}", author_name="Ada")

    everything = services.bus_connect(agent=agent, thread_id=str(thread.pk))
    almost = services.bus_connect(agent=agent, thread_id=str(thread.pk), after_seq=4)
    recent = services.bus_connect(agent=agent, thread_id=str(thread.pk), after_seq=5)

    assert [m.seq for m in everything.messages] == list(range(6, 56))
    assert everything.truncated is True
    assert everything.sync.current_seq == 55
    assert [m.seq for m in almost.messages] == list(range(6, 56))
    assert almost.truncated is True
    assert [m.seq for m in recent.messages] == list(range(6, 56))
    assert recent.truncated is False


def test_bus_connect_system_prompt_is_bus_guidance_then_the_threads_prompt(agent):
    thread, _ = services.create_thread(agent=agent, topic="guided", system_prompt="Be brief.")

    connection = services.bus_connect(agent=agent, thread_id=str(thread.pk))

    assert connection.system_prompt.startswith(services.BUS_GUIDANCE)
    assert connection.system_prompt.endswith("Be brief.")


def test_bus_connect_by_the_name_of_an_archived_thread_creates_a_new_one(agent, thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    connection = services.bus_connect(agent=agent, thread_name="plan")

    assert connection.created is True
    assert connection.thread.pk != thread.pk


def test_bus_connect_with_wrong_credentials_is_invalid_credentials(agent):
    with pytest.raises(errors.InvalidCredentials):
        services.bus_connect(agent=None, thread_name="plan", agent_id=str(agent.pk), token="wrong")

    assert not Thread.objects.exists()


def test_bus_connect_without_thread_is_bad_request():
    with pytest.raises(errors.BadRequest):
        services.bus_connect(agent=None, ide="Cursor", model="Sonnet")


def test_bus_connect_without_identity_on_an_anonymous_socket_is_bad_request():
    with pytest.raises(errors.BadRequest):
        services.bus_connect(agent=None, thread_name="plan")

    assert not Thread.objects.exists()


def test_bus_connect_to_unknown_thread_id_is_not_found(agent):
    with pytest.raises(errors.NotFound) as info:
        services.bus_connect(agent=agent, thread_id=str(uuid.uuid4()))

    assert info.value.extra["resource"] == "thread"


# --- bus_connect over the wire -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
async def test_bus_connect_by_name_joins_an_existing_thread(connect):
    admin, _ = await registered(connect)
    thread_id = (await new_thread(admin, "plan"))["thread"]["thread_id"]
    client = await connect()
    result = await client.call("bus_connect", {"thread_name": "plan", "ide": "Cursor", "model": "Claude"})
    assert result["thread"]["thread_id"] == thread_id
    assert (result["created"], result["is_administrator"]) == (False, False)


@pytest.mark.django_db(transaction=True)
async def test_bus_connect_on_a_bound_socket_keeps_the_agent(connect):
    client, me = await registered(connect)
    result = await client.call("bus_connect", {"thread_name": "plan"})
    assert result["agent"]["agent_id"] == me["agent_id"]
    assert "token" not in result
    assert result["is_administrator"] is True


@pytest.mark.django_db(transaction=True)
async def test_bus_connect_after_seq_returns_only_newer_messages(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    await add_human_messages(thread_id, 3)
    result = await client.call("bus_connect", {"thread_id": thread_id, "after_seq": 1})
    assert [m["seq"] for m in result["messages"]] == [2, 3]
    assert result["truncated"] is False
    assert_sync_context(result, 3)


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
async def test_bus_connect_with_wrong_token_is_invalid_credentials(connect):
    _, me = await registered(connect)
    client = await connect()
    error = await client.error("bus_connect", {"thread_name": "plan", "agent_id": me["agent_id"], "token": "wrong"})
    assert error["code"] == "InvalidCredentials"
    assert (await client.error("agent_list"))["code"] == "Unauthenticated"


@pytest.mark.django_db(transaction=True)
async def test_bus_connect_request_for_an_unknown_thread_id_is_not_found(connect):
    client = await connect()
    error = await client.error("bus_connect", {"thread_id": UNKNOWN_ID, "ide": "VS Code", "model": "GPT"})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")


@pytest.mark.django_db(transaction=True)
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
