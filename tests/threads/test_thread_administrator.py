"""A thread's administrator: who may close, archive, reopen and change its state, and handing the role on."""

import pytest
from django.contrib.auth import get_user_model

from agentchat import errors
from threads import services
from threads.models import Message, Thread

pytestmark = pytest.mark.django_db

CHANGES = {
    "close": lambda thread, **actor: services.close_thread(thread_id=str(thread.pk), summary="mine now", **actor),
    "archive": lambda thread, **actor: services.archive_thread(thread_id=str(thread.pk), **actor),
    "set_state": lambda thread, **actor: services.set_thread_state(thread_id=str(thread.pk), state="review", **actor),
}


@pytest.fixture
def owner(make_agent):
    return make_agent(model="Owner")[0]


@pytest.fixture
def other(make_agent):
    return make_agent(model="Other")[0]


@pytest.fixture
def thread(owner):
    return services.create_thread(agent=owner, topic="well-known")[0]


@pytest.fixture
def staff():
    return get_user_model().objects.create_user(username="lead", password="x", is_staff=True)


def stored(thread):
    return Thread.objects.get(pk=thread.pk)


def join(agent, thread):
    return services.join_thread(agent=agent, thread_id=str(thread.pk))


def test_the_creator_is_the_administrator(owner, other, thread):
    assert stored(thread).administrator_id == owner.pk
    assert join(owner, thread).is_administrator
    assert not join(other, thread).is_administrator


@pytest.mark.parametrize("change", CHANGES)
def test_another_agent_is_forbidden_and_changes_nothing(other, thread, change):
    before = Thread.objects.filter(pk=thread.pk).values().get()

    with pytest.raises(errors.Forbidden):
        CHANGES[change](thread, agent=other)

    assert Thread.objects.filter(pk=thread.pk).values().get() == before


@pytest.mark.parametrize("change", CHANGES)
def test_the_administrator_may(owner, thread, change):
    changed = CHANGES[change](thread, agent=owner)

    assert changed.status == {"close": "closed", "archive": "archived", "set_state": "review"}[change]


@pytest.mark.parametrize("change", CHANGES)
def test_a_staff_user_may(staff, thread, change):
    assert CHANGES[change](thread, staff_user=staff).status != Thread.Status.DISCUSS


@pytest.mark.parametrize("change", CHANGES)
def test_a_user_who_is_not_staff_is_forbidden(thread, change):
    user = get_user_model().objects.create_user(username="visitor", password="x")

    with pytest.raises(errors.Forbidden):
        CHANGES[change](thread, staff_user=user)

    assert stored(thread).status == Thread.Status.DISCUSS


def test_a_change_needs_exactly_one_actor(owner, staff, thread):
    with pytest.raises(TypeError):
        services.close_thread(thread_id=str(thread.pk))
    with pytest.raises(TypeError):
        services.close_thread(thread_id=str(thread.pk), agent=owner, staff_user=staff)


def test_a_thread_without_administrator_is_for_staff_only(owner, staff, thread):
    Thread.objects.filter(pk=thread.pk).update(administrator=None)

    with pytest.raises(errors.Forbidden):
        services.close_thread(thread_id=str(thread.pk), agent=owner)
    assert services.close_thread(thread_id=str(thread.pk), staff_user=staff).status == Thread.Status.CLOSED


def test_the_administrator_hands_the_role_to_a_participant(owner, other, thread):
    join(other, thread)

    changed, announcement = services.set_administrator(thread_id=str(thread.pk), agent_id=str(other.pk), agent=owner)

    assert changed.administrator_id == other.pk
    assert join(other, thread).is_administrator and not join(owner, thread).is_administrator
    # The new administrator may close it; the old one may no longer.
    with pytest.raises(errors.Forbidden):
        services.set_thread_state(thread_id=str(thread.pk), state="review", agent=owner)
    assert services.close_thread(thread_id=str(thread.pk), agent=other).status == Thread.Status.CLOSED
    # Announced in the thread by the bus.
    assert announcement == Message.objects.get(thread=thread, seq=1)
    assert (announcement.author_id, announcement.author_name, announcement.role, announcement.priority) == (
        None,
        services.BUS_AUTHOR,
        "system",
        "system",
    )
    assert announcement.metadata == {
        "event": "administrator_changed",
        "administrator_agent_id": str(other.pk),
        "previous_administrator_agent_id": str(owner.pk),
    }
    assert other.name in announcement.content and owner.name in announcement.content


def test_a_staff_user_hands_the_role_on_even_in_a_closed_thread(owner, other, staff, thread):
    join(other, thread)
    services.close_thread(thread_id=str(thread.pk), agent=owner)

    changed, announcement = services.set_administrator(
        thread_id=str(thread.pk), agent_id=str(other.pk), staff_user=staff
    )

    assert changed.administrator_id == other.pk
    assert "staff user lead" in announcement.content
    assert stored(thread).status == Thread.Status.CLOSED


def test_only_the_administrator_or_staff_hands_the_role_on(other, thread):
    join(other, thread)

    with pytest.raises(errors.Forbidden):
        services.set_administrator(thread_id=str(thread.pk), agent_id=str(other.pk), agent=other)

    assert stored(thread).administrator_id != other.pk
    assert stored(thread).last_seq == 0


def test_the_new_administrator_must_take_part_in_the_thread(owner, other, thread):
    with pytest.raises(errors.BadRequest) as refused:
        services.set_administrator(thread_id=str(thread.pk), agent_id=str(other.pk), agent=owner)

    assert refused.value.extra["field"] == "administrator_agent_id"
    assert stored(thread).administrator_id == owner.pk
    assert stored(thread).last_seq == 0


@pytest.mark.parametrize("agent_id", ["00000000-0000-0000-0000-000000000000", "not-an-id"])
def test_an_unknown_agent_is_not_found(owner, thread, agent_id):
    with pytest.raises(errors.NotFound) as refused:
        services.set_administrator(thread_id=str(thread.pk), agent_id=agent_id, agent=owner)

    assert refused.value.extra["resource"] == "agent"


def test_handing_the_role_to_its_holder_changes_and_announces_nothing(owner, thread):
    changed, announcement = services.set_administrator(thread_id=str(thread.pk), agent_id=str(owner.pk), agent=owner)

    assert (changed.administrator_id, announcement, stored(thread).last_seq) == (owner.pk, None, 0)


def test_a_thread_created_by_bus_connect_is_administered_by_its_creator(owner, other):
    joined = services.bus_connect(agent=owner, thread_name="by name")
    again = services.bus_connect(agent=other, thread_name="by name")

    assert joined.is_administrator and joined.thread.administrator_id == owner.pk
    assert not again.is_administrator
