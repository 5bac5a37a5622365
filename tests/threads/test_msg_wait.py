"""What msg_wait reads and the token it ends with (read_for_wait, finish_wait), then its reply and errors over the wire.

Waking, concurrency and disconnects: test_msg_wait_wakeups.py.
"""

import uuid

import pytest

from agentchat import errors
from tests.support.domain import chain_posts, join, post, token_state
from tests.support.wire import (
    MESSAGE_KEYS,
    UNKNOWN_ID,
    add_human_messages,
    assert_sync_context,
    new_thread,
    registered,
)
from threads import selectors, services

pytestmark = pytest.mark.django_db


def test_read_for_wait_with_nothing_new_reads_up_to_the_last_seq(agent, thread, sync):
    chain_posts(agent, thread, sync, [{}, {}])

    found = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=2, limit=10)

    assert found.messages == []
    assert found.has_more is False
    assert found.read_seq == 2


def test_read_for_wait_returns_the_oldest_limit_and_reads_only_up_to_them(agent, thread, sync):
    chain_posts(agent, thread, sync, [{}] * 5)

    first = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=2)
    rest = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=first.read_seq, limit=10)

    assert [m.seq for m in first.messages] == [1, 2]
    assert first.has_more is True
    assert first.read_seq == 2
    assert [m.seq for m in rest.messages] == [3, 4, 5]
    assert rest.has_more is False
    assert rest.read_seq == 5


def test_read_seq_of_a_partial_read_refuses_a_post_until_the_rest_is_read(agent, thread, sync):
    chain_posts(agent, thread, sync, [{}] * 3)
    partial = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=1)
    context = services.finish_wait(agent=agent, thread_id=str(thread.pk), read_seq=partial.read_seq)

    with pytest.raises(errors.SeqMismatch):
        post(agent, thread, context)


def test_read_for_wait_for_agent_returns_only_mentions_and_handoffs(agent, other, thread, sync):
    me, them = str(other.pk), str(agent.pk)
    chain_posts(
        agent,
        thread,
        sync,
        [{}, {"mentions": [me]}, {"handoff_target": me}, {"mentions": [them]}, {"mentions": [them, me]}, {}],
    )

    found = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=10, for_agent=me)

    assert [m.seq for m in found.messages] == [2, 3, 5]
    assert found.has_more is False
    assert found.read_seq == 6


def test_read_for_wait_for_agent_with_more_matches_than_the_limit(agent, other, thread, sync):
    me = str(other.pk)
    chain_posts(agent, thread, sync, [{"mentions": [me]}, {}, {"handoff_target": me}, {"mentions": [me]}])

    found = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=2, for_agent=me)

    assert [m.seq for m in found.messages] == [1, 3]
    assert found.has_more is True
    assert found.read_seq == 3


def test_read_for_wait_for_agent_with_no_match_reads_everything(agent, other, thread, sync):
    chain_posts(agent, thread, sync, [{}, {"mentions": [str(agent.pk)]}])

    found = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=10, for_agent=str(other.pk))

    assert found.messages == []
    assert found.has_more is False
    assert found.read_seq == 2


@pytest.mark.parametrize("thread_id", [str(uuid.uuid4()), "not-a-uuid", "12"])
def test_read_for_wait_on_unknown_or_malformed_thread_is_not_found(thread_id):
    with pytest.raises(errors.NotFound) as info:
        selectors.read_for_wait(thread_id=thread_id, after_seq=0, limit=10)

    assert info.value.extra["resource"] == "thread"


def test_finish_wait_voids_older_tokens_of_that_agent_only(agent, other, thread, sync):
    other_sync = join(other, thread)

    fresh = services.finish_wait(agent=agent, thread_id=str(thread.pk), read_seq=0)

    assert token_state(sync).voided
    assert not token_state(fresh).voided
    assert not token_state(other_sync).voided
    assert fresh.current_seq == 0


# --- msg_wait over the wire --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
async def test_msg_wait_on_unknown_thread_is_not_found(connect):
    client, _ = await registered(connect)
    error = await client.error("msg_wait", {"thread_id": UNKNOWN_ID, "after_seq": 0, "timeout_ms": 60_000})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")
