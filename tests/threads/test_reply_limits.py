"""Limits in process: odd JSON at the edge, replies bounded by bytes, and a socket's requests ending with it.

The same rules over a real daphne are in tests/e2e/test_hardening_wire.py.
"""

import asyncio
import json
import math

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.checks import run_checks

from agentchat import transport
from agentchat.errors import BadRequest
from agentchat.protocol import MAX_JSON_DEPTH, Args, NonFiniteNumber, check_value
from agents.services.registration import name_base
from tests.support.wire import InProcessSocket, WireClient, registered
from threads.consumers import AgentConsumer
from threads.models import Message, Participant, Thread
from threads.waiting_room import get_waiting_room

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("a\x00b", "content"),
        ("\ud800", "content"),
        ({"k": ["ok", "\udfff"]}, "content.k[1]"),
        ({"k\x00": 1}, "content"),
        (math.nan, "content"),
        (math.inf, "content"),
        (NonFiniteNumber("NaN"), "content"),
        ({"a": {"b": -math.inf}}, "content.a.b"),
    ],
)
def test_values_no_database_stores_alike_are_refused_naming_the_field(value, field):
    with pytest.raises(BadRequest) as refused:
        check_value(value, "content")
    assert refused.value.extra["field"] == field


def test_nesting_is_bounded_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(BadRequest) as refused:
        Args({"metadata": deep})
    assert refused.value.extra["field"] == "metadata"
    shallow: dict = {}
    for _ in range(MAX_JSON_DEPTH - 1):
        shallow = {"a": shallow}
    Args({"metadata": shallow, "text": "é and 🙂 are fine", "n": 1e300})


@pytest.mark.parametrize(("ide", "model"), [("I" * 100, "M" * 100), ("I" * 10, "M" * 100), ("I" * 100, "M")])
def test_generated_names_fit_the_name_field_with_room_for_a_number(ide, model):
    base = name_base(ide, model)
    assert len(base) + 12 <= Message._meta.get_field("author_name").max_length
    assert base == name_base(ide, model)  # deterministic
    assert name_base("VS Code", "GPT") == "VS Code (GPT)"


def test_the_size_check_refuses_a_reply_limit_too_small_for_one_maximal_message(settings):
    settings.AGENTCHAT = {**settings.AGENTCHAT, "MAX_REPLY_BYTES": 300_000}
    assert "agentchat.E050" in [message.id for message in run_checks()]
    settings.AGENTCHAT = {**settings.AGENTCHAT, "MAX_MESSAGE_CHARS": 40_000}
    assert "agentchat.E050" not in [message.id for message in run_checks()]


def test_replies_are_utf8_and_a_result_over_the_limit_becomes_an_error_reply(settings):
    assert transport.encode_reply(1, result={"c": "é"}) == '{"id":1,"ok":true,"result":{"c":"é"}}'
    # A lone surrogate stored before the edge refused them still goes out, escaped.
    assert json.loads(transport.encode_reply(1, result={"c": "\ud800"}))["result"]["c"] == "\ud800"
    settings.AGENTCHAT = {**settings.AGENTCHAT, "MAX_REPLY_BYTES": 1000}
    reply = json.loads(transport.encode_reply("x", result={"c": "a" * 2000}))
    assert (reply["id"], reply["ok"], reply["error"]["code"]) == ("x", False, "PayloadTooLarge")


async def test_a_bad_agent_list_cursor_is_bad_request(connect):
    client, _ = await registered(connect)
    for cursor in ("%%%", "AA"):  # not base64; a NUL
        error = await client.error("agent_list", {"cursor": cursor})
        assert (error["code"], error["field"]) == ("BadRequest", "cursor")


async def test_a_message_too_large_for_any_reply_is_refused_by_msg_wait_without_touching_tokens(connect, settings):
    client, _ = await registered(connect)
    created = await client.call("thread_create", {"topic": "large"})
    thread_id = created["thread"]["thread_id"]
    await client.call(
        "msg_post",
        {"thread_id": thread_id, "content": "x" * 9000, "expected_last_seq": 0, "reply_token": created["reply_token"]},
    )
    # The limit was lowered after the message was stored.
    settings.AGENTCHAT = {**settings.AGENTCHAT, "MAX_REPLY_BYTES": 8000, "MAX_MESSAGE_CHARS": 500}
    voiding_before = await database_sync_to_async(
        lambda: set(Participant.objects.values_list("pk", "tokens_void_before"))
    )()
    error = await client.error("msg_wait", {"thread_id": thread_id, "after_seq": 0})
    assert (error["code"], error["seq"]) == ("PayloadTooLarge", 1)
    voiding_after = await database_sync_to_async(
        lambda: set(Participant.objects.values_list("pk", "tokens_void_before"))
    )()
    assert voiding_after == voiding_before  # no token issued, none voided
    assert get_waiting_room().waiters == {}


async def test_a_posted_message_must_fit_in_a_reply(connect, settings):
    settings.AGENTCHAT = {**settings.AGENTCHAT, "MAX_REPLY_BYTES": 12000, "MAX_MESSAGE_CHARS": 1000}
    client, _ = await registered(connect)
    created = await client.call("thread_create", {"topic": "meta"})
    thread_id = created["thread"]["thread_id"]
    error = await client.error(
        "msg_post",
        {
            "thread_id": thread_id,
            "content": "short",
            "metadata": {"blob": "b" * 9000},
            "expected_last_seq": 0,
            "reply_token": created["reply_token"],
        },
    )
    assert (error["code"], error["field"]) == ("PayloadTooLarge", "metadata")
    assert await database_sync_to_async(Thread.objects.get)(pk=thread_id) is not None


async def test_requests_are_cancelled_however_the_consumer_ends(monkeypatch):
    from agentchat.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/agent/")
    assert (await communicator.connect())[0]
    client = WireClient(InProcessSocket(communicator))
    await client.call("agent_register", {"ide": "CLI", "model": "crash"})
    created = await client.call("thread_create", {"topic": "crash"})
    await client.send("msg_wait", {"thread_id": created["thread"]["thread_id"], "after_seq": 0, "timeout_ms": 600_000})
    room = get_waiting_room()
    for _ in range(50):
        if room.waiters:
            break
        await asyncio.sleep(0.02)
    assert room.waiters

    def broken(self, text_data):
        raise RuntimeError("a bug in the frame parser")

    monkeypatch.setattr(AgentConsumer, "parse", broken)
    await client.send_raw("{}")
    # The error ends the consumer (daphne closes the socket with 1011); the wait ends with it.
    with pytest.raises(RuntimeError):
        await communicator.receive_output(timeout=5)
    assert room.waiters == {}


def test_a_shared_list_is_spliced_into_each_reply_as_if_it_were_encoded_there():
    """A wake-up's messages are encoded once; each waiter's reply reads as if serialized on its own."""
    messages = transport.EncodedList([{"seq": 1, "content": 'héllo "quoted" \\ back', "metadata": {"k": [1, 2]}}])
    result = {"messages": messages, "has_more": False, "current_seq": 1, "reply_token": "t"}
    first = transport.encode_reply("a", result=result)
    second = transport.encode_reply(7, result=result)
    assert json.loads(first) == {"id": "a", "ok": True, "result": {**result, "messages": list(messages)}}
    assert json.loads(second)["id"] == 7 and json.loads(second)["result"]["messages"] == list(messages)
    assert first == transport.dumps({"id": "a", "ok": True, "result": {**result, "messages": list(messages)}})


def test_daphne_listens_with_a_backlog_for_a_crowd_connecting_at_once():
    """Twisted's default backlog (50) drops the SYNs of a hundred clients connecting at once."""
    import daphne.cli
    import daphne.management.commands.runserver as runserver

    transport.configure_daphne()
    for build in (daphne.cli.build_endpoint_description_strings, runserver.build_endpoint_description_strings):
        assert build(host="127.0.0.1", port=8001) == [
            f"tcp:port=8001:interface=127.0.0.1:backlog={transport.LISTEN_BACKLOG}"
        ]
    assert daphne.cli.build_endpoint_description_strings(unix_socket="/tmp/s") == ["unix:/tmp/s"]
