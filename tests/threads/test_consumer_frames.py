"""Frames that are not well-formed requests, internal errors, and the Origin check."""

import json

import pytest
from channels.testing import WebsocketCommunicator

from tests.support.wire import new_thread, post_args, registered
from threads import selectors

pytestmark = pytest.mark.django_db(transaction=True)


async def assert_usable(client) -> None:
    """The socket still answers requests."""
    assert "heartbeat_interval" in await client.call("bus_get_config")


@pytest.mark.parametrize("text", ["{not json", "   ", '{"id": "x", "op": ', "nul", "{'id': 1}"])
async def test_invalid_json_is_bad_request_with_null_id_and_the_socket_stays_usable(connect, text):
    client = await connect()
    await client.send_raw(text)
    reply = await client.next_reply()
    assert reply["id"] is None
    assert reply["ok"] is False
    assert reply["error"]["code"] == "BadRequest"
    assert reply["error"]["message"]
    await assert_usable(client)


@pytest.mark.parametrize("text", ["[1, 2]", '"agent_list"', "42", "null", "true"])
async def test_json_that_is_not_an_object_is_bad_request_with_null_id(connect, text):
    client = await connect()
    await client.send_raw(text)
    reply = await client.next_reply()
    assert (reply["id"], reply["ok"], reply["error"]["code"]) == (None, False, "BadRequest")
    await assert_usable(client)


@pytest.mark.parametrize(
    "frame", [{"id": "c1"}, {"id": "c1", "op": None}, {"id": "c1", "op": 5}, {"id": "c1", "args": {}}]
)
async def test_frame_without_an_op_is_bad_request_echoing_the_id(connect, frame):
    client = await connect()
    await client.send_raw(json.dumps(frame))
    reply = await client.next_reply()
    assert reply["id"] == "c1"
    assert reply["ok"] is False
    assert (reply["error"]["code"], reply["error"]["field"]) == ("BadRequest", "op")
    await assert_usable(client)


async def test_frame_without_an_id_or_op_is_bad_request_with_null_id(connect):
    client = await connect()
    await client.send_raw("{}")
    reply = await client.next_reply()
    assert (reply["id"], reply["error"]["code"]) == (None, "BadRequest")


async def test_unknown_op_on_an_anonymous_socket_is_bad_request_not_unauthenticated(connect):
    client = await connect()
    error = await client.error("msg_teleport", {})
    assert (error["code"], error["field"]) == ("BadRequest", "op")


async def test_unknown_op_on_a_bound_socket_is_bad_request(connect):
    client, _ = await registered(connect)
    error = await client.error("msg_teleport", {})
    assert (error["code"], error["field"]) == ("BadRequest", "op")
    await client.call("agent_heartbeat")


@pytest.mark.parametrize("args", [[1, 2], "x", 3, True])
async def test_args_that_are_not_an_object_is_bad_request(connect, args):
    client, _ = await registered(connect)
    await client.send_raw(json.dumps({"id": "a1", "op": "agent_list", "args": args}))
    reply = await client.reply("a1")
    assert reply["ok"] is False
    assert (reply["error"]["code"], reply["error"]["field"]) == ("BadRequest", "args")
    await client.call("agent_heartbeat")


async def test_args_may_be_omitted_or_null(connect):
    client, _ = await registered(connect)
    await client.send_raw(json.dumps({"id": "a1", "op": "agent_heartbeat"}))
    assert (await client.reply("a1"))["ok"] is True
    await client.send_raw(json.dumps({"id": "a2", "op": "agent_heartbeat", "args": None}))
    assert (await client.reply("a2"))["ok"] is True


async def test_unknown_args_are_ignored(connect):
    client, _ = await registered(connect)
    result = await client.call("agent_list", {"online_only": False, "colour": "blue"})
    assert len(result["agents"]) == 1


async def test_binary_frame_is_bad_request_and_the_socket_stays_usable(connect):
    client = await connect()
    await client.send_binary(json.dumps({"id": "b1", "op": "bus_get_config"}).encode())
    reply = await client.next_reply()
    assert reply["ok"] is False
    assert reply["error"]["code"] == "BadRequest"
    assert reply["id"] in (None, "b1")
    await assert_usable(client)


@pytest.mark.parametrize("request_id", [7, 0, -3, 2**40, "c-7", ""])
async def test_request_ids_come_back_as_sent(connect, request_id):
    client = await connect()
    sent = await client.send("bus_get_config", id=request_id)
    reply = await client.next_reply()
    assert reply["ok"] is True
    assert reply["id"] == sent == request_id
    assert type(reply["id"]) is type(request_id)


async def test_error_replies_echo_integer_ids(connect):
    client = await connect()
    await client.send("agent_list", id=12)
    reply = await client.next_reply()
    assert (reply["id"], reply["ok"], reply["error"]["code"]) == (12, False, "Unauthenticated")


@pytest.mark.parametrize("request_id", [1.5, True, [1], {"a": 1}])
async def test_an_id_that_is_not_a_string_or_integer_is_bad_request(connect, request_id):
    client = await connect()
    await client.send_raw(json.dumps({"id": request_id, "op": "bus_get_config"}))
    reply = await client.next_reply()
    assert reply["ok"] is False
    assert (reply["error"]["code"], reply["error"]["field"]) == ("BadRequest", "id")
    await assert_usable(client)


async def test_a_bug_is_an_internal_error_without_details_and_the_socket_stays_usable(connect, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret details")

    client, _ = await registered(connect)
    created = await client.call("thread_create", {"topic": "plan"})
    monkeypatch.setattr(selectors, "get_thread", broken)
    error = await client.error("thread_get", {"thread_id": created["thread"]["thread_id"]})
    assert error["code"] == "Internal"
    assert error["message"]
    text = json.dumps(error)
    assert "secret details" not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    monkeypatch.undo()
    assert (await client.call("thread_get", {"thread_id": created["thread"]["thread_id"]}))["thread"]["topic"] == "plan"


async def test_error_messages_are_plain_text(connect):
    client = await connect()
    error = await client.error("agent_register", {"ide": 1, "model": "GPT"})
    assert "Traceback" not in error["message"]
    assert set(error) == {"code", "message", "field"}


# --- Origin ----------------------------------------------------------------------------


async def test_a_browser_page_of_a_foreign_origin_is_refused():
    from agentchat.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await communicator.connect()
    assert connected is False
    await communicator.wait()


@pytest.mark.parametrize("origin", [b"http://127.0.0.1", b"http://localhost"])
async def test_a_browser_page_of_an_allowed_origin_connects(connect, origin):
    client = await connect(headers=[(b"origin", origin)])
    await assert_usable(client)


async def test_an_agent_without_an_origin_header_connects(connect):
    client = await connect()
    await assert_usable(client)


async def test_frame_over_max_frame_bytes_is_payload_too_large_and_the_socket_stays_usable(connect, agentchat_settings):
    agentchat_settings(MAX_FRAME_BYTES=1000)
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
