"""Creating threads: on the domain layer (create_thread), then thread_create over the wire."""

import pytest
from channels.db import database_sync_to_async

from agentchat import errors
from tests.support.domain import STAFF, token_state
from tests.support.wire import (
    THREAD_KEYS,
    assert_sync_context,
    new_thread,
    post_args,
    registered,
)
from threads import services
from threads.models import Thread, ThreadTemplate

pytestmark = pytest.mark.django_db


def test_create_thread_starts_in_discuss_with_creator_and_a_token_at_seq_0(agent, thread, sync):
    assert thread.status == Thread.Status.DISCUSS
    assert thread.creator == agent
    assert thread.last_seq == 0
    assert sync.current_seq == 0
    assert token_state(sync).agent_id == agent.pk


@pytest.mark.parametrize("topic", ["plan", "  plan  "])
def test_create_thread_with_a_topic_in_use_is_conflict(agent, thread, topic):
    with pytest.raises(errors.Conflict):
        services.create_thread(agent=agent, topic=topic)

    assert Thread.objects.count() == 1


def test_topic_is_free_again_once_the_thread_is_archived(agent, thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    again, _ = services.create_thread(agent=agent, topic="plan")

    assert again.pk != thread.pk
    assert again.status == Thread.Status.DISCUSS


def test_closed_thread_keeps_its_topic(agent, thread):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))

    with pytest.raises(errors.Conflict):
        services.create_thread(agent=agent, topic="plan")


@pytest.mark.parametrize("topic", ["", "   "])
def test_create_thread_with_an_empty_topic_is_bad_request(agent, topic):
    with pytest.raises(errors.BadRequest) as info:
        services.create_thread(agent=agent, topic=topic)

    assert info.value.extra["field"] == "topic"
    assert not Thread.objects.exists()


def test_create_thread_with_unknown_template_is_not_found(agent):
    with pytest.raises(errors.NotFound) as info:
        services.create_thread(agent=agent, topic="plan", template_id="nope")

    assert info.value.extra["resource"] == "template"
    assert not Thread.objects.exists()


# --- thread_create over the wire ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
async def test_thread_create_token_lets_the_creator_post_first(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    posted = await client.call(
        "msg_post", post_args(created["thread"]["thread_id"], "hello", 0, created["reply_token"])
    )
    assert posted["message"]["seq"] == 1


@pytest.mark.django_db(transaction=True)
async def test_thread_create_from_template_takes_its_prompt(connect):
    await database_sync_to_async(ThreadTemplate.objects.create)(
        id="review", name="Review", system_prompt="Review the diff.", default_metadata={"kind": "review"}
    )
    client, _ = await registered(connect)
    thread = (await new_thread(client, template="review"))["thread"]
    assert thread["template_id"] == "review"
    assert thread["system_prompt"] == "Review the diff."
    assert thread["metadata"] == {"kind": "review"}


@pytest.mark.django_db(transaction=True)
async def test_thread_create_with_unknown_template_is_not_found(connect):
    client, _ = await registered(connect)
    error = await client.error("thread_create", {"topic": "plan", "template": "nope"})
    assert (error["code"], error["resource"]) == ("NotFound", "template")


@pytest.mark.django_db(transaction=True)
async def test_thread_create_with_a_topic_in_use_is_conflict(connect):
    client, _ = await registered(connect)
    await new_thread(client, "plan")
    error = await client.error("thread_create", {"topic": "plan"})
    assert error["code"] == "Conflict"


@pytest.mark.django_db(transaction=True)
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
