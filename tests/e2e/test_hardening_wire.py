"""Hardening over the real wire: a daphne process and the `websockets` client.

Replies stay under what the transport carries (bounded by bytes, with
has_more/truncated/cursors), oversized frames are closed with 1009, odd but
legal JSON is a BadRequest naming the field on every database, a frame that
nests too deeply does not kill the socket, and the server logs each line once.
"""

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import websockets

from tests.support.servers import Daphne, daphne_on_test_database
from tests.support.wire import WireClient

pytestmark = pytest.mark.django_db(transaction=True)

# Small limits keep the tests light: a reply of at most 20,000 bytes carries
# one message of 2,000 characters (E050 holds), frames up to 16,000 bytes are
# read, and the transport closes anything over 20,000 with 1009.
SMALL = {
    "AGENTCHAT_MAX_REPLY_BYTES": "20000",
    "AGENTCHAT_MAX_FRAME_BYTES": "16000",
    "AGENTCHAT_MAX_MESSAGE_CHARS": "2000",
    "AGENTCHAT_RATE_LIMIT_PER_MINUTE": "0",
}


@contextmanager
def serve(env: dict[str, str] | None = None) -> Iterator[Daphne]:
    """A daphne on the test database; its output (stdout and stderr) is kept for the log checks."""
    with daphne_on_test_database(env) as server:
        yield server


async def raw_reply(agent: WireClient, text: str, timeout: float = 10) -> dict:
    """Send a frame as is; the next reply (frames the tests send raw carry id null or "r")."""
    await agent.socket.ws.send(text)
    return json.loads(await asyncio.wait_for(agent.socket.ws.recv(), timeout))


async def post(agent: WireClient, thread_id: str, content: str, sync: dict) -> dict:
    result = await agent.call(
        "msg_post",
        {
            "thread_id": thread_id,
            "content": content,
            "expected_last_seq": sync["current_seq"],
            "reply_token": sync["reply_token"],
        },
    )
    return {"current_seq": result["message"]["seq"], "reply_token": result["reply_token"]}


# --- 1. replies over the transport's limit ---------------------------------------


async def test_with_the_default_limits_seventeen_maximal_posts_still_come_back_in_every_read():
    with serve() as server:
        alice, bob = await WireClient.over_websocket(server.url), await WireClient.over_websocket(server.url)
        try:
            await alice.call("agent_register", {"ide": "CLI", "model": "writer"})
            created = await alice.call("thread_create", {"topic": "big"})
            thread_id, sync = created["thread"]["thread_id"], created
            config = await alice.call("bus_get_config")
            for n in range(17):
                sync = await post(alice, thread_id, chr(ord("a") + n) * config["max_message_chars"], sync)

            # bus_connect: the newest messages that fit, older ones left to msg_list.
            joined = await bob.call("bus_connect", {"thread_name": "big", "ide": "CLI", "model": "reader"})
            assert joined["truncated"] is True
            assert 0 < len(joined["messages"]) < 17
            assert joined["messages"][-1]["seq"] == 17

            # msg_list pages by bytes: has_more, then the rest after the last seq read.
            seqs, after = [], 0
            while True:
                page = await bob.call("msg_list", {"thread_id": thread_id, "after_seq": after})
                seqs += [m["seq"] for m in page["messages"]]
                after = seqs[-1]
                if not page["has_more"]:
                    break
            assert seqs == list(range(1, 18))

            # msg_wait returns the oldest that fit; its token covers exactly those.
            waited = await bob.call("msg_wait", {"thread_id": thread_id, "after_seq": 0})
            assert waited["has_more"] is True
            assert waited["current_seq"] == waited["messages"][-1]["seq"] < 17

            # A stale post: SeqMismatch's new_messages are bounded too.
            reply = await bob.reply(
                await bob.send(
                    "msg_post",
                    {
                        "thread_id": thread_id,
                        "content": "late",
                        "expected_last_seq": 0,
                        "reply_token": waited["reply_token"],
                    },
                )
            )
            assert reply["error"]["code"] == "SeqMismatch"
            assert reply["error"]["has_more"] is True
            assert 0 < len(reply["error"]["new_messages"]) < 17
        finally:
            await alice.close()
            await bob.close()


async def test_replies_are_utf8_without_escapes_so_non_ascii_posts_fit():
    # Three posts of 65,536 "é" took 6 bytes a character as \u escapes: over 1 MiB.
    with serve() as server:
        agent = await WireClient.over_websocket(server.url)
        try:
            await agent.call("agent_register", {"ide": "CLI", "model": "accents"})
            sync = await agent.call("thread_create", {"topic": "accents"})
            thread_id = sync["thread"]["thread_id"]
            for n in range(3):
                # UTF-8 as agentchat.client sends it: 131,072 bytes, where \u escapes would take 393,216.
                args = {"thread_id": thread_id, "content": "é" * 65536, "expected_last_seq": n}
                args["reply_token"] = sync["reply_token"]
                frame = json.dumps({"id": f"p{n}", "op": "msg_post", "args": args}, ensure_ascii=False)
                reply = await raw_reply(agent, frame)
                assert reply["ok"], reply["error"]
                sync = reply["result"]
            await agent.socket.ws.send(json.dumps({"id": "l", "op": "msg_list", "args": {"thread_id": thread_id}}))
            text = await asyncio.wait_for(agent.socket.ws.recv(), 10)
            assert "\\u" not in text and "é" in text
            reply = json.loads(text)
            assert [m["seq"] for m in reply["result"]["messages"]] == [1, 2, 3]
            assert reply["result"]["has_more"] is False
        finally:
            await agent.close()


async def test_thread_list_and_agent_list_page_by_bytes_and_by_count():
    with serve(SMALL) as server:
        agent = await WireClient.over_websocket(server.url)
        try:
            for n in range(3):
                other = await WireClient.over_websocket(server.url)
                await other.call("agent_register", {"ide": "CLI", "model": f"m{n}"})
                await other.close()
            await agent.call("agent_register", {"ide": "CLI", "model": "lister"})
            for n in range(5):
                await agent.call("thread_create", {"topic": f"prompted {n}", "system_prompt": "p" * 6000})

            topics, cursor, pages = [], None, 0
            while True:
                page = await agent.call("thread_list", {"before": cursor} if cursor else {})
                pages += 1
                topics += [t["topic"] for t in page["threads"]]
                if not page["has_more"]:
                    assert page["next_cursor"] is None
                    break
                cursor = page["next_cursor"]
            assert sorted(topics) == [f"prompted {n}" for n in range(5)]
            assert pages >= 3  # about two 6,000-character prompts fit in a 20,000-byte reply

            names, cursor = [], None
            while True:
                page = await agent.call("agent_list", {"limit": 3, **({"cursor": cursor} if cursor else {})})
                assert len(page["agents"]) <= 3
                names += [a["name"] for a in page["agents"]]
                if not page["has_more"]:
                    break
                cursor = page["next_cursor"]
            assert names == sorted(names) and len(names) == 4
        finally:
            await agent.close()


async def test_a_reply_too_large_for_the_transport_is_an_error_reply_not_silence():
    with serve(SMALL) as server:
        agent = await WireClient.over_websocket(server.url)
        try:
            await agent.call("agent_register", {"ide": "CLI", "model": "big"})
            created = await agent.call("thread_create", {"topic": "huge", "system_prompt": "s" * 7500})
            thread_id = created["thread"]["thread_id"]
            await agent.call("thread_close", {"thread_id": thread_id, "summary": "t" * 7500})
            # The thread (prompt and summary) plus the prompt again: about 23,000 bytes.
            request = await agent.send("bus_connect", {"thread_id": thread_id})
            reply = await agent.reply(request, timeout=10)
            assert reply["ok"] is False
            assert reply["error"]["code"] == "PayloadTooLarge"
            assert reply["error"]["limit"] == 20000
            assert "heartbeat_interval" in await agent.call("bus_get_config")
        finally:
            await agent.close()


# --- 2. deeply nested JSON ------------------------------------------------------------


async def test_deeply_nested_frames_are_bad_request_and_the_socket_stays_open():
    with serve() as server:
        agent = await WireClient.over_websocket(server.url)
        try:
            reply = await raw_reply(agent, "[" * 100_000 + "]" * 100_000)
            assert (reply["id"], reply["error"]["code"]) == (None, "BadRequest")
            await agent.call("agent_register", {"ide": "CLI", "model": "nested"})

            def nested(levels: int) -> str:
                metadata = '{"a": ' * levels + "1" + "}" * levels
                return '{"id": "r", "op": "thread_create", "args": {"topic": "deep", "metadata": ' + metadata + "}}"

            # Deeper than the parser goes: not even the id can be read.
            reply = await raw_reply(agent, nested(975))
            assert (reply["id"], reply["error"]["code"]) == (None, "BadRequest")
            # Parsed, but deeper than any argument may nest: refused before the database sees it.
            reply = await raw_reply(agent, nested(500))
            assert (reply["id"], reply["error"]["code"], reply["error"]["field"]) == ("r", "BadRequest", "metadata")
            assert "heartbeat_interval" in await agent.call("bus_get_config")
            assert "Traceback" not in server.output()
        finally:
            await agent.close()


# --- 6. legal but odd input -------------------------------------------------------------


async def test_odd_but_legal_input_is_bad_request_naming_the_field_on_every_database():
    with serve() as server:
        agent = await WireClient.over_websocket(server.url)
        try:
            first = await agent.call("agent_register", {"ide": "I" * 100, "model": "M" * 100})
            second = await agent.call("agent_register", {"ide": "I" * 100, "model": "M" * 100})
            assert len(first["name"]) <= 200 and len(second["name"]) <= 200
            assert first["name"] != second["name"]
            created = await agent.call("thread_create", {"topic": "odd"})
            thread_id = created["thread"]["thread_id"]

            def frame(op: str, args: str) -> str:
                return '{"id": "r", "op": "' + op + '", "args": ' + args + "}"

            token = created["reply_token"]
            post = '{"thread_id": "' + thread_id + '", "expected_last_seq": 0, "reply_token": "' + token + '", '
            cases = [
                (frame("agent_update", '{"display_name": "\\ud800"}'), "display_name"),
                (frame("agent_update", '{"description": "a\\u0000b"}'), "description"),
                (frame("thread_create", '{"topic": "x\\udfff"}'), "topic"),
                (frame("thread_create", '{"topic": "n\\u0000ul"}'), "topic"),
                (frame("thread_create", '{"topic": "sp", "system_prompt": "\\ud83d"}'), "system_prompt"),
                (frame("thread_create", '{"topic": "nan", "metadata": {"x": NaN}}'), "metadata.x"),
                (frame("thread_create", '{"topic": "inf", "metadata": {"x": -Infinity}}'), "metadata.x"),
                (frame("thread_create", '{"topic": "big", "metadata": {"x": 1e400}}'), "metadata.x"),
                (frame("thread_create", '{"topic": "nulkey", "metadata": {"k\\u0000": 1}}'), "metadata"),
                (frame("thread_create", '{"topic": "nul", "metadata": {"k": ["\\u0000"]}}'), "metadata.k[0]"),
                (frame("msg_post", post + '"content": "\\ud800"}'), "content"),
                (frame("msg_post", post + '"content": "ok", "metadata": {"m": "\\u0000"}}'), "metadata.m"),
                (frame("msg_post", post + '"content": "ok", "client_msg_id": "\\udc00"}'), "client_msg_id"),
                (frame("agent_register", '{"ide": "\\u0000", "model": "m"}'), "ide"),
            ]
            for text, field in cases:
                reply = await raw_reply(agent, text)
                assert reply["ok"] is False, text
                assert (reply["error"]["code"], reply["error"].get("field")) == ("BadRequest", field), text
            # Nothing was stored: the thread is as created.
            thread = await agent.call("thread_get", {"thread_id": thread_id})
            assert thread["thread"]["last_seq"] == 0
            threads = await agent.call("thread_list")
            assert [t["topic"] for t in threads["threads"]] == ["odd"]
            await asyncio.sleep(0.2)
            log = server.output()
            assert "Traceback" not in log and "failed" not in log
        finally:
            await agent.close()


# --- 8. frames over the transport's limit ----------------------------------------------


async def test_frames_over_the_transport_limit_close_with_1009_and_smaller_oversized_ones_keep_the_socket():
    with serve() as server:  # the real defaults: 1 MiB transport, 256 KiB frames
        agent = await WireClient.over_websocket(server.url)
        try:
            reply = await raw_reply(agent, " " * 300_000)
            assert reply["error"]["code"] == "PayloadTooLarge"
            assert "heartbeat_interval" in await agent.call("bus_get_config")
            await agent.socket.ws.send(" " * (1024 * 1024 + 1))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(agent.socket.ws.recv(), 10)
            assert closed.value.rcvd is not None, "the server reset the connection instead of closing it"
            assert closed.value.rcvd.code == 1009
        finally:
            await agent.close()


async def test_the_transport_limit_follows_max_reply_bytes():
    with serve(SMALL) as server:
        agent = await WireClient.over_websocket(server.url)
        try:
            reply = await raw_reply(agent, " " * 18_000)  # over MAX_FRAME_BYTES, under the transport's limit
            assert reply["error"]["code"] == "PayloadTooLarge"
            await agent.socket.ws.send(" " * 20_001)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(agent.socket.ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        finally:
            await agent.close()


# --- 13. log lines ---------------------------------------------------------------------------


async def test_each_server_log_line_is_printed_once():
    with serve() as server:
        http = server.url.replace("ws://", "http://").replace("/ws/agent/", "/no-such-page/")
        with pytest.raises(urllib.error.HTTPError):
            await asyncio.to_thread(urllib.request.urlopen, http, timeout=10)
        deadline = time.monotonic() + 5
        while "Not Found: /no-such-page/" not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert server.output().count("Not Found: /no-such-page/") == 1
