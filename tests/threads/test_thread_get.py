"""thread_get over the wire."""

import pytest

from tests.support.wire import (
    UNKNOWN_ID,
    new_thread,
    registered,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_thread_get_returns_the_thread(connect):
    client, _ = await registered(connect)
    created = (await new_thread(client))["thread"]
    result = await client.call("thread_get", {"thread_id": created["thread_id"]})
    assert result == {"thread": created, "overdue_replies": 0}


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
