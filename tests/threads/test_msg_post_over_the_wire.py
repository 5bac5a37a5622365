"""msg_post over the wire: its reply, the arguments it parses, and one request per error code.

The full rule matrix is checked once, on the domain layer (test_msg_post*.py).
"""

import json

import pytest

from tests.support.wire import (
    MESSAGE_KEYS,
    UNKNOWN_ID,
    assert_sync_context,
    new_thread,
    post_args,
    registered,
)

pytestmark = pytest.mark.django_db(transaction=True)


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


async def test_msg_post_without_a_reply_token_is_missing_sync_fields(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    args = post_args(created["thread"]["thread_id"], "hello", 0, created["reply_token"])
    del args["reply_token"]
    error = await client.error("msg_post", args)
    assert error["code"] == "MissingSyncFields"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"content": None}, "content"),
        ({"content": 5}, "content"),
        ({"thread_id": None}, "thread_id"),
        ({"expected_last_seq": "0"}, "expected_last_seq"),
        ({"reply_token": 5}, "reply_token"),
        ({"metadata": "x"}, "metadata"),
    ],
)
async def test_msg_post_with_a_missing_or_mistyped_arg_is_bad_request_and_keeps_the_token(connect, changes, field):
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


async def test_msg_post_with_unknown_token_is_reply_token_invalid(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    error = await client.error("msg_post", post_args(created["thread"]["thread_id"], "hello", 0, "made-up"))
    assert error["code"] == "ReplyTokenInvalid"
    assert "made-up" not in error["message"]


async def test_msg_post_reusing_a_consumed_token_is_reply_token_replay(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    await client.call("msg_post", post_args(thread_id, "one", 0, created["reply_token"]))
    error = await client.error("msg_post", post_args(thread_id, "two", 1, created["reply_token"]))
    assert error["code"] == "ReplyTokenReplay"


async def test_msg_post_with_a_token_past_its_lease_is_reply_token_expired(connect, agentchat_settings):
    agentchat_settings(REPLY_TOKEN_LEASE_SECONDS=0)
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


async def test_msg_post_to_a_closed_thread_is_thread_closed_and_keeps_the_token(connect):
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    await client.call("thread_close", {"thread_id": thread_id})
    # The bus announced the change at seq 1; read up to it, the post meets the thread's state.
    error = await client.error("msg_post", post_args(thread_id, "hello", 1, created["reply_token"]))
    assert error["code"] == "ThreadClosed"
    # Not consumed: after reopening (announced at seq 2), the same token posts.
    await client.call("thread_set_state", {"thread_id": thread_id, "state": "discuss"})
    await client.call("msg_post", post_args(thread_id, "hello", 2, created["reply_token"]))


async def test_msg_post_over_the_rate_limit_is_rate_limited_with_retry_after(connect, agentchat_settings):
    agentchat_settings(RATE_LIMIT_PER_MINUTE=2)
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


async def test_msg_post_content_over_max_message_chars_is_payload_too_large(connect, agentchat_settings):
    agentchat_settings(MAX_MESSAGE_CHARS=10)
    client, _ = await registered(connect)
    created = await new_thread(client)
    thread_id = created["thread"]["thread_id"]
    error = await client.error("msg_post", post_args(thread_id, "é" * 11, 0, created["reply_token"]))
    assert error["code"] == "PayloadTooLarge"
    # Exactly the limit (in characters, not bytes) is accepted.
    posted = await client.call("msg_post", post_args(thread_id, "é" * 10, 0, created["reply_token"]))
    assert posted["message"]["content"] == "é" * 10
