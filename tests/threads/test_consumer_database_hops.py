"""An incoming frame costs no trip to the database thread; a lost database connection is still replaced."""

import pytest
from channels import consumer as channels_consumer
from channels import db as channels_db
from channels.db import database_sync_to_async
from channels.testing import application as channels_testing_application
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

from tests.support.wire import new_thread, registered

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hops(monkeypatch):
    """Counts of Channels' per-frame hop (aclose_old_connections) and of every close_old_connections call.

    Channels' test communicator swaps `channels.db.close_old_connections` for a
    no-op while it sends and receives; here both run Django's real one, counted.
    """
    counts = {"aclose_old_connections": 0, "close_old_connections": 0}
    real_aclose = channels_db.aclose_old_connections

    async def counted_aclose():
        counts["aclose_old_connections"] += 1
        await real_aclose()

    def counted_close(**kwargs):
        counts["close_old_connections"] += 1
        close_old_connections(**kwargs)

    monkeypatch.setattr(channels_consumer, "aclose_old_connections", counted_aclose)
    monkeypatch.setattr(channels_db, "aclose_old_connections", counted_aclose)
    monkeypatch.setattr(channels_db, "close_old_connections", counted_close)
    monkeypatch.setattr(channels_testing_application, "no_op", counted_close)
    return counts


async def test_frames_that_need_no_database_make_no_database_hop(connect, hops):
    client = await connect()
    for _ in range(20):
        assert "heartbeat_interval" in await client.call("bus_get_config")
        await client.send_raw("{not json")
        assert (await client.next_reply())["error"]["code"] == "BadRequest"
        await client.send_raw('{"id": 1, "op": "no_such_op"}')
        assert (await client.next_reply())["error"]["code"] == "BadRequest"
    assert hops == {"aclose_old_connections": 0, "close_old_connections": 0}


async def test_a_request_that_uses_the_database_checks_the_connection_around_its_own_calls(connect, hops):
    client, _ = await registered(connect)
    before = dict(hops)
    await new_thread(client)
    assert hops["aclose_old_connections"] == before["aclose_old_connections"] == 0
    # Each database call of the request (channels' database_sync_to_async)
    # checks the connection before and after it, on the database thread.
    assert hops["close_old_connections"] > before["close_old_connections"]
    assert (hops["close_old_connections"] - before["close_old_connections"]) % 2 == 0


async def test_a_broken_connection_is_closed_and_the_next_request_opens_a_new_one(connect, hops):
    client, _ = await registered(connect)
    await new_thread(client)
    closed = []

    def break_connection():
        # What a failed query leaves behind: the error flag, and a connection
        # that no longer answers (a killed backend, a restarted server).
        wrapper = connections[DEFAULT_DB_ALIAS]
        wrapper.ensure_connection()
        real_close = wrapper.close

        def counted_close():
            closed.append(wrapper.connection)
            real_close()

        wrapper.errors_occurred = True
        wrapper.is_usable = lambda: False
        wrapper.close = counted_close
        return wrapper, wrapper.connection

    def repair(wrapper):
        del wrapper.is_usable, wrapper.close
        return wrapper.connection

    wrapper, broken = await database_sync_to_async(break_connection)()
    try:
        thread = await new_thread(client, topic="after the failure")
    finally:
        now = await database_sync_to_async(repair)(wrapper)
    assert thread["thread"]["topic"] == "after the failure"
    # Closed before the request's first database call, on the database thread.
    assert closed and closed[0] is broken
    # Django never closes an in-memory SQLite database (it would lose its data); any other is reopened.
    if not (wrapper.vendor == "sqlite" and wrapper.is_in_memory_db()):
        assert now is not broken
