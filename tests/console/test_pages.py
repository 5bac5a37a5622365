"""The console's pages: permissions, no secrets, and query counts that do not grow with the data."""

import time
import uuid

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from tests.support.domain import STAFF
from threads import services
from threads.models import Message, Thread

pytestmark = pytest.mark.django_db


def fill(*, threads: int, messages: int, agents: int = 5) -> list[Thread]:
    """Bulk-load threads of messages by a few agents (no sync rules: this is data, not behaviour)."""
    now, tag = timezone.now(), uuid.uuid4().hex[:6]
    crew = Agent.objects.bulk_create(
        Agent(name=f"Bulk {tag} {i}", ide="Bulk", model=f"m{i}", token_hash=uuid.uuid4().hex) for i in range(agents)
    )
    made = Thread.objects.bulk_create(
        Thread(topic=f"bulk {tag} {i}", last_seq=messages, creator=crew[0], updated_at=now) for i in range(threads)
    )
    batch = []
    for thread in made:
        for seq in range(1, messages + 1):
            author = crew[seq % agents]
            batch.append(
                Message(
                    thread=thread,
                    seq=seq,
                    author=author,
                    author_name=author.name,
                    content=f"message {seq} " + "lorem ipsum " * 10,
                    priority="urgent" if seq % 97 == 0 else "normal",
                    created_at=now,
                )
            )
            if len(batch) >= 5000:
                Message.objects.bulk_create(batch)
                batch = []
    Message.objects.bulk_create(batch)
    return made


def pages(thread: Thread) -> dict[str, str]:
    return {
        "dashboard": reverse("admin:index"),
        "threads": reverse("admin:threads_thread_changelist"),
        "conversation": reverse("admin:threads_thread_change", args=[thread.pk]),
        "earlier": reverse("admin:threads_thread_transcript", args=[thread.pk]) + f"?before={thread.last_seq - 60}",
        "messages": reverse("admin:threads_message_changelist"),
        "messages search": reverse("admin:threads_message_changelist") + "?q=lorem",
        "agents": reverse("admin:agents_agent_changelist"),
    }


# Fixed ceilings: the same with 1 thread of 3 messages, 100 x 100, and 1 x 100,000.
MAX_QUERIES = {
    "dashboard": 14,  # with the two queues (requests for a human, overdue replies)
    "threads": 12,
    "conversation": 14,
    "earlier": 6,
    "messages": 10,
    "messages search": 10,
    "agents": 10,
}


def measure(admin_client, django_assert_max_num_queries, thread: Thread, label: str) -> None:
    report = []
    for name, url in pages(thread).items():
        with django_assert_max_num_queries(MAX_QUERIES[name]) as captured:
            started = time.perf_counter()
            response = admin_client.get(url)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200, url
        report.append(f"{name}: {len(captured)} queries, {elapsed * 1000:.0f} ms, {len(response.content) // 1024} KB")
    print(f"\n[{label}]\n" + "\n".join(report))


def test_query_counts_do_not_grow_with_100_threads_of_100_messages(admin_client, django_assert_max_num_queries):
    small = fill(threads=1, messages=3)[0]
    measure(admin_client, django_assert_max_num_queries, small, "1 x 3")
    big = fill(threads=100, messages=100)
    measure(admin_client, django_assert_max_num_queries, big[0], "100 threads x 100 messages")


def test_query_counts_do_not_grow_with_a_100000_message_thread(admin_client, django_assert_max_num_queries):
    thread = fill(threads=1, messages=100_000)[0]
    measure(admin_client, django_assert_max_num_queries, thread, "1 thread x 100,000 messages")
    page = admin_client.get(reverse("admin:threads_thread_change", args=[thread.pk])).content.decode()
    assert f'id="msg-{thread.last_seq}"' in page and f'id="msg-{thread.last_seq - 50}"' not in page
    assert len(page) < 300_000  # a page of messages, never the whole thread


@pytest.fixture
def thread(make_agent):
    agent, token = make_agent(ide="Zed", model="Opus")
    thread, sync = services.create_thread(agent=agent, topic="perm test")
    _, chain = services.post_message(
        agent=agent, thread_id=str(thread.pk), content="hello", expected_last_seq=0, reply_token=sync.reply_token
    )
    thread.refresh_from_db()
    thread.secrets = [token, agent.token_hash, sync.reply_token, chain.reply_token]
    return thread


def test_the_conversation_screen_shows_newest_last_with_names_badges_and_safe_content(admin_client, thread):
    services.post_human_message(
        thread=thread,
        content="see https://example.com/x <img src=x onerror=alert(1)>\n```\n<b>code</b>\n```",
        author_name="admin",
        human_only=True,
        priority="urgent",
    )
    page = admin_client.get(reverse("admin:threads_thread_change", args=[thread.pk])).content.decode()
    assert page.index('id="msg-1"') < page.index('id="msg-2"') < page.index("thread-settings")
    assert "Zed · Opus" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<pre><code>&lt;b&gt;code&lt;/b&gt;</code></pre>" in page
    assert 'href="https://example.com/x" rel="noopener noreferrer nofollow"' in page
    assert "human only" in page and "urgent" in page


def test_the_composer_posts_as_the_staff_user_and_is_refused_on_a_closed_thread(admin_client, thread):
    url = reverse("admin:threads_thread_post", args=[thread.pk])
    response = admin_client.post(url, {"content": "from the console", "urgent": "on"}, HTTP_ACCEPT="application/json")
    assert response.json() == {"ok": True, "seq": 2}
    message = Message.objects.get(thread=thread, seq=2)
    assert (message.role, message.priority, message.author_name) == ("user", "urgent", "admin")
    services.close_thread(staff_user=STAFF, thread_id=thread.pk)
    response = admin_client.post(url, {"content": "anyone?"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and response.json() == {"ok": False, "error": "The thread is closed."}
    assert Thread.objects.get(pk=thread.pk).last_seq == 3  # two posts and the bus's announcement of the close


def test_thread_actions_on_the_page_go_through_the_domain_and_the_history(admin_client, thread):
    url = reverse("admin:threads_thread_act", args=[thread.pk])
    admin_client.post(url, {"action": "close", "summary": "shipped"})
    thread.refresh_from_db()
    assert (thread.status, thread.summary) == ("closed", "shipped")
    admin_client.post(url, {"action": "state", "state": "review"})
    assert Thread.objects.get(pk=thread.pk).status == "review"
    admin_client.post(url, {"action": "archive"})
    assert Thread.objects.get(pk=thread.pk).status == "archived"
    history = list(LogEntry.objects.filter(object_id=str(thread.pk)).values_list("change_message", flat=True))
    assert len(history) == 3


def test_staff_without_change_permission_sees_the_screen_but_cannot_post_or_act(client, thread):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_thread"))
    client.force_login(viewer)
    page = client.get(reverse("admin:threads_thread_change", args=[thread.pk])).content.decode()
    assert 'id="msg-1"' in page and 'id="composer"' not in page and 'id="close-thread"' not in page
    response = client.post(
        reverse("admin:threads_thread_post", args=[thread.pk]), {"content": "sneaky"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 403
    client.post(reverse("admin:threads_thread_act", args=[thread.pk]), {"action": "close"})
    thread.refresh_from_db()
    assert (thread.last_seq, thread.status) == (1, "discuss")


def test_anonymous_and_non_staff_users_cannot_post(client, thread):
    url = reverse("admin:threads_thread_post", args=[thread.pk])
    assert client.post(url, {"content": "hi"}).status_code == 302  # to the login page
    client.force_login(User.objects.create_user("clerk", password="pw"))
    assert client.post(url, {"content": "hi"}).status_code == 302
    assert Thread.objects.get(pk=thread.pk).last_seq == 1


def test_messages_cannot_be_added_or_deleted_singly(admin_client, thread):
    message = Message.objects.get(thread=thread, seq=1)
    assert admin_client.get(reverse("admin:threads_message_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:threads_message_delete", args=[message.pk]), {"post": "yes"}).status_code
        == 403
    )
    response = admin_client.post(
        reverse("admin:threads_message_changelist"), {"action": "delete_selected", "_selected_action": [message.pk]}
    )
    assert Message.objects.filter(pk=message.pk).exists(), response.status_code


def test_no_page_and_no_history_entry_shows_a_token_or_its_hash(admin_client, thread):
    agent = Agent.objects.get()
    admin_client.post(reverse("admin:threads_thread_act", args=[thread.pk]), {"action": "close", "summary": "done"})
    rotated = admin_client.post(
        reverse("admin:agents_agent_changelist"), {"action": "rotate_token", "_selected_action": [agent.pk]}
    )
    new_token = rotated.context["rotated"][0]["token"]
    agent.refresh_from_db()
    secrets = [*thread.secrets, new_token, agent.token_hash]
    urls = [
        *pages(thread).values(),
        reverse("admin:agents_agent_change", args=[agent.pk]),
        reverse("admin:agents_agent_history", args=[agent.pk]),
        reverse("admin:threads_thread_history", args=[thread.pk]),
    ]
    for url in urls:
        page = admin_client.get(url).content.decode()
        for secret in secrets:
            assert secret not in page, url
    history = " ".join(str(entry.__dict__) for entry in LogEntry.objects.all())
    for secret in secrets:
        assert secret not in history
