"""Registrations per address, threads per agent, unique names at any scale, and purging inactive agents."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from agentchat import errors
from agents import services
from agents.models import Agent, AgentNameCounter
from threads import services as thread_services
from threads.models import Message, Participant, Thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    def configure(**values):
        settings.AGENTCHAT = {**settings.AGENTCHAT, **values}

    return configure


def register(address, model="GPT", now=None):
    return services.register_agent(ide="CLI", model=model, client_address=address, now=now)[0]


# --- registrations per client address ------------------------------------------------------


def test_an_address_may_register_the_limit_in_a_minute_then_is_rate_limited(limits):
    limits(REGISTER_RATE_PER_MINUTE=3)
    start = timezone.now()
    for n in range(3):
        register("198.51.100.1", now=start + timedelta(seconds=n * 10))

    with pytest.raises(errors.RateLimited) as refused:
        register("198.51.100.1", now=start + timedelta(seconds=25))

    # The oldest of the three leaves the window 60 s after it registered: 35 s later.
    assert refused.value.extra["retry_after"] == 35
    assert Agent.objects.count() == 3
    register("198.51.100.2", now=start + timedelta(seconds=25))  # another address
    register("198.51.100.1", now=start + timedelta(seconds=61))  # the window moved on


def test_the_default_lets_a_team_start_at_once():
    for n in range(40):
        register("198.51.100.1", model=f"M{n}")

    assert Agent.objects.count() == 40


def test_zero_turns_the_registration_limit_off(limits):
    limits(REGISTER_RATE_PER_MINUTE=0)
    for _ in range(5):
        register("198.51.100.1")


def test_registering_without_an_address_is_not_limited(limits):
    limits(REGISTER_RATE_PER_MINUTE=1)
    for _ in range(3):
        services.register_agent(ide="CLI", model="GPT")


# --- threads per agent -------------------------------------------------------------------------


def test_an_agent_may_create_the_limit_of_threads_in_a_minute(limits, make_agent):
    limits(THREAD_RATE_PER_MINUTE=2)
    agent = make_agent()[0]
    other = make_agent(model="Other")[0]
    thread_services.create_thread(agent=agent, topic="one")
    thread_services.bus_connect(agent=agent, thread_name="two")

    with pytest.raises(errors.RateLimited) as refused:
        thread_services.create_thread(agent=agent, topic="three")
    with pytest.raises(errors.RateLimited):
        thread_services.bus_connect(agent=agent, thread_name="four")

    assert 1 <= refused.value.extra["retry_after"] <= 60
    assert Thread.objects.count() == 2
    thread_services.create_thread(agent=other, topic="three")  # per agent
    thread_services.bus_connect(agent=agent, thread_name="one")  # joining creates nothing


def test_zero_turns_the_thread_limit_off(limits, make_agent):
    limits(THREAD_RATE_PER_MINUTE=0)
    agent = make_agent()[0]
    for n in range(25):
        thread_services.create_thread(agent=agent, topic=f"t{n}")


# --- unique names -----------------------------------------------------------------------------------


def test_names_are_numbered_in_order():
    names = [services.register_agent(ide="VS Code", model="GPT")[0].name for _ in range(3)]

    assert names == ["VS Code (GPT)", "VS Code (GPT) 2", "VS Code (GPT) 3"]


def test_allocating_a_name_costs_the_same_however_many_agents_share_it(django_assert_num_queries):
    Agent.objects.bulk_create(
        [Agent(name=f"Many (Agents) {n}", ide="Many", model="Agents", token_hash="") for n in range(2, 500)]
    )
    AgentNameCounter.objects.create(base="Many (Agents)", last_number=499)

    with django_assert_num_queries(6) as queries:  # savepoints, one counter upsert, the insert
        agent, _ = services.register_agent(ide="Many", model="Agents")

    assert agent.name == "Many (Agents) 500"
    assert not [q["sql"] for q in queries.captured_queries if "LIKE" in q["sql"].upper()]


def test_a_name_taken_before_the_counter_existed_is_skipped():
    Agent.objects.create(name="Old (Timer)", ide="Old", model="Timer", token_hash="")
    Agent.objects.create(name="Old (Timer) 2", ide="Old", model="Timer", token_hash="")

    assert services.register_agent(ide="Old", model="Timer")[0].name == "Old (Timer) 3"


# --- purge_inactive_agents ---------------------------------------------------------------------------


def run(*args):
    out = StringIO()
    call_command("purge_inactive_agents", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def silent_for(make_agent):
    def make(days, model):
        agent = make_agent(model=model)[0]
        then = timezone.now() - timedelta(days=days)
        Agent.objects.filter(pk=agent.pk).update(last_heartbeat=then, registered_at=then)
        return agent

    return make


def test_purge_deletes_agents_inactive_longer_than_the_days_and_keeps_their_messages(silent_for, make_agent):
    gone = silent_for(31, "Gone")
    recent = silent_for(29, "Recent")
    thread, sync = thread_services.create_thread(agent=gone, topic="kept")
    Agent.objects.filter(pk=gone.pk).update(credential_generation=0)
    message, _ = thread_services.post_message(
        agent=gone,
        thread_id=str(thread.pk),
        content="my words stay",
        expected_last_seq=0,
        reply_token=sync.reply_token,
    )
    Agent.objects.filter(pk=gone.pk).update(last_heartbeat=timezone.now() - timedelta(days=31))

    output = run("--days", "30", "-v", "2")

    assert output.endswith("Deleted 1 agent(s) inactive for more than 30 day(s).\n")
    assert f"{gone.name} ({gone.pk})" in output
    assert set(Agent.objects.values_list("pk", flat=True)) == {recent.pk}
    kept = Message.objects.get(pk=message.pk)
    assert (kept.author_id, kept.author_name, kept.content) == (None, gone.name, "my words stay")
    assert Thread.objects.get(pk=thread.pk).creator_id is None
    assert not Participant.objects.filter(agent_id=gone.pk).exists()
    assert run("--days", "30").startswith("Deleted 0 agent(s)")  # a second run changes nothing


def test_purge_dry_run_deletes_nothing(silent_for):
    silent_for(40, "Gone")

    assert run("--days", "30", "--dry-run").startswith("Would delete 1 agent(s)")
    assert Agent.objects.count() == 1


def test_purge_uses_the_setting_and_zero_turns_it_off(silent_for, limits):
    silent_for(40, "Gone")
    limits(INACTIVE_AGENT_DAYS=0)
    assert run() == "Inactive agents are not purged (INACTIVE_AGENT_DAYS is 0).\n"
    assert run("--days", "0") == "Inactive agents are not purged (--days is 0).\n"
    limits(INACTIVE_AGENT_DAYS=30)
    assert run().startswith("Deleted 1 agent(s)")


def test_purge_refuses_negative_days():
    with pytest.raises(CommandError, match="--days must not be negative"):
        run("--days", "-1")
