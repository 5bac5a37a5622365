"""Requests for a human: the console's live queue, answers from the conversation screen, dismissals, mail."""

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client as HttpClient
from django.urls import reverse

from tests.console.test_socket import ORIGIN, frames, open_console, session_cookie
from tests.support.wire import post_args, registered
from threads.models import HumanRequest
from threads.services import human_requests

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def staff():
    return User.objects.create_superuser("boss", "boss@example.com", "pw")


async def asking_agent(connect, topic="decisions"):
    agent, registered_as = await registered(connect, model="Asker")
    created = await agent.call("thread_create", {"topic": topic})
    thread_id = created["thread"]["thread_id"]
    asked = await agent.call(
        "msg_post",
        post_args(thread_id, "Deploy on Friday?", 0, created["reply_token"], metadata={"needs_human": True}),
    )
    return agent, registered_as["agent_id"], thread_id, asked


async def ask(client, op):
    await client.send_json_to({"op": op})
    while True:
        frame = json.loads(await client.receive_from(timeout=5))
        if frame["type"] == op:
            return frame


async def test_a_request_appears_in_the_live_queue_oldest_first(connect, staff):
    cookie = await sync_to_async(session_cookie)(staff)
    dashboard, connected, _ = await open_console([ORIGIN, cookie])
    assert connected
    _agent, _, thread_id, asked = await asking_agent(connect)
    assert "activity" in [f["type"] for f in await frames(dashboard)]  # the page refreshes on it
    assert (await ask(dashboard, "counters"))["counters"]["needs_human"] == 1
    html = (await ask(dashboard, "queues"))["html"]
    assert f"/admin/threads/thread/{thread_id}/change/#msg-1" in html
    assert "Deploy on Friday?" in html and asked["message"]["msg_id"] in html
    await dashboard.disconnect()


def answer_from_the_conversation_screen(staff, thread_id, msg_id):
    client = HttpClient()
    client.force_login(staff)
    page = client.get(reverse("admin:threads_thread_change", args=[thread_id]))
    assert f'data-answer="{msg_id}"' in page.content.decode()
    return client.post(
        reverse("admin:threads_thread_post", args=[thread_id]),
        {"content": "Not on Friday.", "reply_to_msg_id": msg_id},
        headers={"accept": "application/json"},
    ).json()


async def test_a_staff_answer_wakes_the_agent_and_clears_the_request(connect, staff):
    agent, agent_id, thread_id, asked = await asking_agent(connect)
    msg_id = asked["message"]["msg_id"]
    waiting = await agent.send(
        "msg_wait", {"thread_id": thread_id, "after_seq": 1, "for_agent": agent_id, "timeout_ms": 10000}
    )
    assert await agent.nothing(0.3)
    result = await sync_to_async(answer_from_the_conversation_screen)(staff, thread_id, msg_id)
    assert result == {"ok": True, "seq": 2}
    [answer] = (await agent.reply(waiting))["result"]["messages"]
    assert (answer["content"], answer["reply_to_msg_id"], answer["role"]) == ("Not on Friday.", msg_id, "user")
    request = await sync_to_async(HumanRequest.objects.get)(message_id=msg_id)
    assert (request.resolution, request.resolved_by, str(request.answer_id)) == ("answered", "boss", answer["msg_id"])
    # The answer is addressed to the asker: its receipt proves the agent got it.
    [receipt] = (await agent.call("msg_receipts", {"msg_id": answer["msg_id"]}))["receipts"]
    assert receipt["agent_id"] == agent_id and receipt["delivered_at"] is not None


def dismiss(staff, thread_id, msg_id, reason):
    client = HttpClient()
    client.force_login(staff)
    return client.post(
        reverse("admin:threads_thread_act", args=[thread_id]), {"action": "dismiss", "msg_id": msg_id, "reason": reason}
    )


async def test_a_dismissal_clears_the_request_with_its_reason_in_the_history(connect, staff):
    _agent, _, thread_id, asked = await asking_agent(connect)
    msg_id = asked["message"]["msg_id"]
    refused = await sync_to_async(dismiss)(staff, thread_id, msg_id, "  ")
    assert refused.status_code == 302
    assert await sync_to_async(HumanRequest.objects.filter(resolved_at__isnull=True).count)() == 1
    await sync_to_async(dismiss)(staff, thread_id, msg_id, "Already decided in standup.")
    request = await sync_to_async(HumanRequest.objects.get)(message_id=msg_id)
    assert (request.resolution, request.reason) == ("dismissed", "Already decided in standup.")
    history = await sync_to_async(lambda: [e.get_change_message() for e in LogEntry.objects.all()])()
    assert any("Already decided in standup." in line and "#1" in line for line in history)
    again = await sync_to_async(dismiss)(staff, thread_id, msg_id, "twice")
    assert again.status_code == 302  # nothing open any more: an error message, no change
    assert (await sync_to_async(HumanRequest.objects.get)(message_id=msg_id)).reason == "Already decided in standup."


async def test_one_short_mail_per_new_request_when_notify_admins_is_on(connect, settings, agentchat_settings):
    agentchat_settings(NOTIFY_ADMINS=True)
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    await asking_agent(connect)
    await sync_to_async(human_requests.mail_sent)()
    [sent] = mail.outbox
    assert sent.to == ["ops@example.com"] and "needs a human" in sent.subject
    assert "Deploy on Friday?" in sent.body and "#msg-1" in sent.body


async def test_a_failing_mail_server_never_fails_the_post(connect, settings, agentchat_settings, monkeypatch, caplog):
    agentchat_settings(NOTIFY_ADMINS=True)
    settings.ADMINS = [("Ops", "ops@example.com")]

    def broken(*args, **kwargs):
        raise ConnectionRefusedError("no mail server")

    monkeypatch.setattr(human_requests, "mail_admins", broken)
    _agent, _, _, asked = await asking_agent(connect)
    await sync_to_async(human_requests.mail_sent)()
    assert asked["message"]["seq"] == 1
    assert "Could not mail the admins" in caplog.text
