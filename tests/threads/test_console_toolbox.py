"""The admin (console): staff edits, reactions and edit history on a message's page, full-text message search."""

import pytest
from django.urls import reverse

from tests.threads.toolbox import post_as
from threads import services
from threads.models import Message, MessageEdit

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(make_agent):
    return make_agent()[0]


@pytest.fixture
def thread(agent):
    return services.create_thread(agent=agent, topic="console")[0]


@pytest.fixture
def message(agent, thread):
    return post_as(agent, thread, "ship on friday")


def test_staff_edit_page_saves_a_new_version_with_the_staff_user_as_editor(admin_client, admin_user, message):
    url = reverse("admin:threads_message_edit_content", args=[message.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"content": "ship on monday"})
    assert response.status_code == 302
    fresh = Message.objects.get(pk=message.pk)
    assert (fresh.content, fresh.edit_version) == ("ship on monday", 1)
    [row] = MessageEdit.objects.all()
    assert (row.editor_user_id, row.editor_name, row.old_content) == (admin_user.pk, "admin", "ship on friday")


def test_staff_edit_page_refuses_a_secret_and_stores_nothing(admin_client, message):
    url = reverse("admin:threads_message_edit_content", args=[message.pk])
    response = admin_client.post(url, {"content": "AKIA" + "ABCDEFGHIJKLMNOP"})
    assert response.status_code == 200
    assert b"looks like it holds a secret" in response.content
    assert Message.objects.get(pk=message.pk).edit_version == 0
    assert not MessageEdit.objects.exists()


def test_message_page_shows_reactions_and_edit_history(admin_client, agent, message):
    services.react(agent=agent, msg_id=str(message.pk), reaction="rocket-ship")
    services.edit_message(msg_id=str(message.pk), content="ship on monday", agent=agent)
    page = admin_client.get(reverse("admin:threads_message_change", args=[message.pk])).content.decode()
    assert "rocket-ship" in page
    assert "ship on friday" in page  # the earlier content
    assert "Edit content" in page


def test_message_search_is_full_text_and_includes_human_only(admin_client, agent, thread, message):
    services.post_human_message(thread=thread, content="friday is a holiday", author_name="a", human_only=True)
    post_as(agent, thread, "nothing relevant")
    page = admin_client.get(reverse("admin:threads_message_changelist") + "?q=friday").content.decode()
    assert "ship on friday" in page
    assert "friday is a holiday" in page
    assert "nothing relevant" not in page


def test_message_search_without_words_shows_a_warning(admin_client, message):
    response = admin_client.get(reverse("admin:threads_message_changelist") + "?q=%21%21")
    assert response.status_code == 200
    assert b"no words to search for" in response.content
