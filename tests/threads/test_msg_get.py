"""msg_get over the wire."""

import pytest

from tests.support.wire import (
    UNKNOWN_ID,
    new_thread,
    post_args,
    registered,
)

pytestmark = pytest.mark.django_db(transaction=True)


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
