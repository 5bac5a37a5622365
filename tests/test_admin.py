"""The Django admin: usable lists and pages, working actions, no secret shown."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agentchat.errors import InvalidCredentials
from agents import services as agent_services
from agents.models import Agent
from threads import services
from threads.models import Message, Thread, ThreadTemplate

# The admin and the console act as a staff user (threads.services.check_administrator).
STAFF = SimpleNamespace(is_active=True, is_staff=True)

pytestmark = pytest.mark.django_db


@pytest.fixture
def bus(make_agent):
    """Two agents talking in a thread; returns what the tests need to look for."""
    alice, alice_token = make_agent(ide="VS Code", model="GPT")
    bob, bob_token = make_agent(ide="Cursor", model="Claude")
    thread, sync = services.create_thread(agent=alice, topic="release plan")
    message, sync = services.post_message(
        agent=alice,
        thread_id=str(thread.pk),
        content="ship on friday",
        expected_last_seq=0,
        reply_token=sync.reply_token,
    )
    ThreadTemplate.objects.create(id="review", name="Code review", system_prompt="Review carefully.")
    return {
        "alice": alice,
        "bob": bob,
        "thread": thread,
        "message": message,
        "secrets": [
            alice_token,
            bob_token,
            sync.reply_token,
            alice.token_hash,
            bob.token_hash,
        ],
    }


def admin_pages(bus) -> list[str]:
    return [
        reverse("admin:index"),
        reverse("admin:agents_agent_changelist"),
        reverse("admin:agents_agent_change", args=[bus["alice"].pk]),
        reverse("admin:threads_thread_changelist"),
        reverse("admin:threads_thread_change", args=[bus["thread"].pk]),
        reverse("admin:threads_message_changelist"),
        reverse("admin:threads_message_change", args=[bus["message"].pk]),
        reverse("admin:threads_participant_changelist"),
        reverse("admin:threads_threadtemplate_changelist"),
        reverse("admin:agents_agent_changelist") + "?presence=online",
        reverse("admin:agents_agent_changelist") + "?presence=offline",
        reverse("admin:threads_thread_changelist") + "?q=release",
        reverse("admin:threads_message_changelist") + "?q=friday",
    ]


def test_every_admin_page_renders_and_shows_no_token_or_hash(admin_client, bus):
    for url in admin_pages(bus):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        for secret in bus["secrets"]:
            assert secret not in page, url


def test_thread_page_lists_its_messages_in_order(admin_client, bus, make_agent):
    thread = bus["thread"]
    services.post_human_message(thread=thread, content="second from a human", author_name="admin")
    page = admin_client.get(reverse("admin:threads_thread_change", args=[thread.pk])).content.decode()
    assert page.index("ship on friday") < page.index("second from a human")


def test_message_search_finds_content(admin_client, bus):
    page = admin_client.get(reverse("admin:threads_message_changelist") + "?q=friday").content.decode()
    assert "ship on friday" in page
    page = admin_client.get(reverse("admin:threads_message_changelist") + "?q=nothing-like-it").content.decode()
    assert "ship on friday" not in page


def test_agent_list_shows_presence_and_last_seen(admin_client, bus):
    page = admin_client.get(reverse("admin:agents_agent_changelist")).content.decode()
    assert "VS Code (GPT)" in page
    assert "s ago" in page


def test_changelists_do_not_query_per_row(admin_client, make_agent):
    def queries_for(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    def add_thread(n: int) -> None:
        agent, _ = make_agent(ide="Bulk", model=str(n))
        thread, sync = services.create_thread(agent=agent, topic=f"bulk {n}")
        services.post_message(
            agent=agent, thread_id=str(thread.pk), content="x", expected_last_seq=0, reply_token=sync.reply_token
        )

    add_thread(0)
    urls = [
        reverse("admin:threads_thread_changelist"),
        reverse("admin:threads_message_changelist"),
        reverse("admin:agents_agent_changelist"),
        reverse("admin:threads_participant_changelist"),
    ]
    few = {url: queries_for(url) for url in urls}
    for n in range(1, 11):
        add_thread(n)
    for url in urls:
        assert queries_for(url) == few[url], url


def test_close_archive_and_reopen_actions(admin_client, bus):
    thread = bus["thread"]
    url = reverse("admin:threads_thread_changelist")
    for action, status in [
        ("close_threads", "closed"),
        ("reopen_threads", "discuss"),
        ("archive_threads", "archived"),
        ("reopen_threads", "discuss"),
    ]:
        response = admin_client.post(url, {"action": action, "_selected_action": [thread.pk]})
        assert response.status_code == 302
        thread.refresh_from_db()
        assert thread.status == status


def test_mark_offline_action_takes_the_agent_offline(admin_client, bus):
    alice = bus["alice"]
    response = admin_client.post(
        reverse("admin:agents_agent_changelist"), {"action": "mark_offline", "_selected_action": [alice.pk]}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.status == Agent.Status.OFFLINE
    assert not alice.is_online
    bus["bob"].refresh_from_db()
    assert bus["bob"].is_online


def test_mark_offline_action_marks_exactly_the_selected_agents_without_rewriting_heartbeats(
    admin_client, make_agent, monkeypatch, django_capture_on_commit_callbacks
):
    """Another agent that is stale but not selected stays as it is; the selected one keeps its heartbeat."""
    selected, _ = make_agent(ide="A", model="a")
    stale, _ = make_agent(ide="B", model="b")
    Agent.objects.filter(pk=stale.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    heartbeat = Agent.objects.get(pk=selected.pk).last_heartbeat
    announced = []
    monkeypatch.setattr(
        "agents.services.presence.events.announce_offline",
        lambda agent_id, name: announced.append(agent_id),
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:agents_agent_changelist"),
            {"action": "mark_offline", "_selected_action": [selected.pk]},
            follow=True,
        )
    assert "Marked 1 agent(s) offline." in response.content.decode()
    assert announced == [selected.pk]
    selected.refresh_from_db()
    stale.refresh_from_db()
    assert selected.status == Agent.Status.OFFLINE and not selected.is_online
    assert selected.last_heartbeat == heartbeat
    assert stale.status == Agent.Status.ONLINE  # not selected: left for the sweep

    # Marking it again changes nothing and announces nothing.
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:agents_agent_changelist"), {"action": "mark_offline", "_selected_action": [selected.pk]}
        )
    assert announced == [selected.pk]


def test_rotate_token_action_stops_the_old_token_and_shows_the_new_one_once(admin_client, make_agent):
    agent, token = make_agent()
    assert agent_services.authenticate(agent_id=str(agent.pk), token=token).pk == agent.pk
    response = admin_client.post(
        reverse("admin:agents_agent_changelist"), {"action": "rotate_token", "_selected_action": [agent.pk]}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new_token = response.context["rotated"][0]["token"]
    assert new_token in response.content.decode()
    assert agent_services.authenticate(agent_id=str(agent.pk), token=new_token).pk == agent.pk
    agent.refresh_from_db()
    assert new_token not in str(agent.__dict__)  # only its hash is stored
    with pytest.raises(InvalidCredentials):
        agent_services.authenticate(agent_id=str(agent.pk), token=token)


def test_messages_are_read_only_in_the_admin(admin_client, bus):
    message = bus["message"]
    response = admin_client.post(reverse("admin:threads_message_change", args=[message.pk]), {"content": "rewritten"})
    assert response.status_code == 403
    assert Message.objects.get(pk=message.pk).content == "ship on friday"
    assert Thread.objects.get(pk=bus["thread"].pk).last_seq == 1


def test_a_human_posts_into_a_thread_from_the_admin(admin_client, bus):
    thread = bus["thread"]
    url = reverse("admin:threads_thread_post", args=[thread.pk])
    assert (
        f'action="{url}"' in admin_client.get(reverse("admin:threads_thread_change", args=[thread.pk])).content.decode()
    )
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(url, {"content": "please stop and review", "priority": "urgent", "human_only": "on"})

    assert response.status_code == 302
    message = Message.objects.get(thread=thread, seq=2)
    assert (message.role, message.author_id, message.author_name) == ("user", None, "admin")
    assert message.priority == "urgent" and message.is_human_only
    assert Thread.objects.get(pk=thread.pk).last_seq == 2


def test_a_human_post_to_a_closed_thread_is_refused_and_stores_nothing(admin_client, bus):
    thread = bus["thread"]
    services.close_thread(staff_user=STAFF, thread_id=thread.pk)
    response = admin_client.post(
        reverse("admin:threads_thread_post", args=[thread.pk]), {"content": "hello?", "priority": "normal"}
    )
    assert response.status_code == 200
    assert "The thread is closed." in response.content.decode()
    assert Thread.objects.get(pk=thread.pk).last_seq == 2  # the post and the bus's announcement of the close


def test_the_thread_form_cannot_change_status_past_the_rules(admin_client, bus):
    thread = bus["thread"]
    url = reverse("admin:threads_thread_change", args=[thread.pk])
    response = admin_client.post(
        url,
        {
            "topic": "release plan",
            "status": "closed",
            "summary": "",
            "system_prompt": "",
            "metadata": "{}",
            "messages-TOTAL_FORMS": "1",
            "messages-INITIAL_FORMS": "1",
            "messages-MIN_NUM_FORMS": "0",
            "messages-MAX_NUM_FORMS": "1000",
            "messages-0-id": str(bus["message"].pk),
        },
    )
    assert response.status_code == 302
    thread.refresh_from_db()
    assert (thread.status, thread.closed_at) == ("discuss", None)
