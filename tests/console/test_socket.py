"""The console's live socket: who may open it, what it sends, catch-up by seq."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client as HttpClient

from agents import events as agent_events
from threads import services

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def session_cookie(user: User) -> tuple[bytes, bytes]:
    client = HttpClient()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


@pytest.fixture
def staff():
    return User.objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def thread(make_agent):
    agent, _ = make_agent()
    thread, _ = services.create_thread(agent=agent, topic="console socket")
    return thread


async def open_console(headers, path="/ws/console/"):
    from agentchat.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def frames(communicator, timeout=0.5) -> list[dict]:
    found = []
    while not await communicator.receive_nothing(timeout=timeout):
        found.append(json.loads(await communicator.receive_from()))
    return found


async def test_anonymous_and_non_staff_are_refused_at_the_handshake(thread):
    _, connected, _ = await open_console([ORIGIN], f"/ws/console/?thread={thread.pk}")
    assert not connected  # closed before accept: daphne answers HTTP 403
    clerk = await sync_to_async(User.objects.create_user)("clerk", password="pw")
    cookie = await sync_to_async(session_cookie)(clerk)
    _, connected, _ = await open_console([ORIGIN, cookie], f"/ws/console/?thread={thread.pk}")
    assert not connected  # closed before accept: daphne answers HTTP 403


async def test_staff_without_an_origin_or_from_a_foreign_origin_is_refused(staff, thread):
    cookie = await sync_to_async(session_cookie)(staff)
    _, connected, _ = await open_console([cookie], f"/ws/console/?thread={thread.pk}")
    assert not connected
    _, connected, _ = await open_console([(b"origin", b"https://evil.example"), cookie])
    assert not connected


async def test_staff_without_any_thread_permission_is_refused(thread):
    def make():
        user = User.objects.create_user("viewer", password="pw", is_staff=True)
        return session_cookie(user)

    cookie = await sync_to_async(make)()
    _, connected, _ = await open_console([ORIGIN, cookie], f"/ws/console/?thread={thread.pk}")
    assert not connected  # closed before accept: daphne answers HTTP 403


async def test_new_messages_arrive_in_order_and_catch_up_fills_gaps_without_duplicates(staff, thread):
    cookie = await sync_to_async(session_cookie)(staff)
    post = sync_to_async(lambda text: services.post_human_message(thread=thread, content=text, author_name="boss"))
    await post("one")
    console, connected, _ = await open_console([ORIGIN, cookie], f"/ws/console/?thread={thread.pk}")
    assert connected
    await console.send_json_to({"op": "catch_up", "after_seq": 0})
    first = await console.receive_json_from()
    assert [m["seq"] for m in first["messages"]] == [1]
    await post("two <script>alert(1)</script>")
    live = await console.receive_json_from()
    assert [m["seq"] for m in live["messages"]] == [2]
    assert "<script>" not in live["messages"][0]["html"] and "&lt;script&gt;" in live["messages"][0]["html"]

    # The page lost its socket after seq 2; three messages came meanwhile.
    await console.disconnect()
    for text in ("three", "four", "five"):
        await post(text)
    console, connected, _ = await open_console([ORIGIN, cookie], f"/ws/console/?thread={thread.pk}")
    await console.send_json_to({"op": "catch_up", "after_seq": 2})
    await post("six")
    seqs = [m["seq"] for f in await frames(console) if f["type"] == "messages" for m in f["messages"]]
    assert seqs == [3, 4, 5, 6]
    await console.disconnect()


async def test_presence_panel_learns_who_waits_and_no_event_carries_a_secret(staff, thread, connect):
    from tests.support.wire import registered

    cookie = await sync_to_async(session_cookie)(staff)
    console, connected, _ = await open_console([ORIGIN, cookie], f"/ws/console/?thread={thread.pk}")
    assert connected
    await console.send_json_to({"op": "catch_up", "after_seq": 0})
    agent, creds = await registered(connect, ide="Zed", model="Opus")
    joined = await agent.call("bus_connect", {"thread_id": str(thread.pk)})
    wait = await agent.send("msg_wait", {"thread_id": str(thread.pk), "after_seq": 0, "timeout_ms": 10000})
    seen = []
    while not any(f["type"] == "waiting" and f["is_waiting"] for f in seen):
        seen.append(await console.receive_json_from(timeout=5))
    waiting = await sync_to_async(agent_events.waiting_threads)([creds["agent_id"]])
    assert waiting == {creds["agent_id"]: {str(thread.pk)}}
    await console.send_json_to({"op": "presence"})
    while seen[-1]["type"] != "presence":
        seen.append(await console.receive_json_from(timeout=5))
    panel = {a["agent_id"]: a for a in seen[-1]["agents"]}
    assert panel[creds["agent_id"]]["is_waiting"] and panel[creds["agent_id"]]["name"] == "Zed (Opus)"

    await sync_to_async(services.post_human_message)(thread=thread, content="wake up", author_name="boss")
    assert (await agent.reply(wait))["ok"]
    seen += await frames(console)
    assert any(f["type"] == "waiting" and not f["is_waiting"] for f in seen)
    assert await sync_to_async(agent_events.waiting_threads)([creds["agent_id"]]) == {}

    text = json.dumps(seen)
    for secret in [creds["token"], joined["reply_token"]]:
        assert secret not in text
    await console.disconnect()
