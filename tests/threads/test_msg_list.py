"""msg_list over the wire."""

import pytest
from channels.db import database_sync_to_async

from tests.support.wire import (
    MESSAGE_KEYS,
    UNKNOWN_ID,
    add_human_messages,
    new_thread,
    registered,
)
from threads import services
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)


async def test_msg_list_returns_messages_in_seq_order_after_a_seq(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    await add_human_messages(thread_id, 4)
    result = await client.call("msg_list", {"thread_id": thread_id})
    assert set(result) == {"messages", "has_more", "current_seq"}
    assert [m["seq"] for m in result["messages"]] == [1, 2, 3, 4]
    assert result["has_more"] is False
    assert all(set(m) == MESSAGE_KEYS for m in result["messages"])
    assert result["current_seq"] == 4
    page = await client.call("msg_list", {"thread_id": thread_id, "after_seq": 1, "limit": 2})
    assert [m["seq"] for m in page["messages"]] == [2, 3]
    assert page["has_more"] is True
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
