"""Agent registration, credentials and presence (agents.services)."""

import hashlib
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from agentchat import errors
from agents import services
from agents.models import Agent
from agents.serializers import agent_to_dict

pytestmark = pytest.mark.django_db


def set_heartbeat(agent, moment):
    Agent.objects.filter(pk=agent.pk).update(last_heartbeat=moment)
    agent.refresh_from_db()


# --- registration ------------------------------------------------------------


def test_register_names_agents_ide_model_then_numbers_repeats(make_agent):
    names = [make_agent(ide="Cursor", model="Sonnet")[0].name for _ in range(3)]

    assert names == ["Cursor (Sonnet)", "Cursor (Sonnet) 2", "Cursor (Sonnet) 3"]


def test_register_numbers_each_ide_model_pair_on_its_own(make_agent):
    make_agent(ide="Cursor", model="Sonnet")

    assert make_agent(ide="Cursor", model="Opus")[0].name == "Cursor (Opus)"
    assert make_agent(ide="Zed", model="Sonnet")[0].name == "Zed (Sonnet)"
    assert make_agent(ide="Cursor", model="Sonnet")[0].name == "Cursor (Sonnet) 2"


def test_register_strips_ide_and_model(make_agent):
    agent, _ = make_agent(ide="  Cursor ", model=" Sonnet  ")

    assert (agent.name, agent.ide, agent.model) == ("Cursor (Sonnet)", "Cursor", "Sonnet")


def test_unregistered_agents_keep_their_name(make_agent):
    first, _ = make_agent(ide="Cursor", model="Sonnet")
    services.unregister_agent(agent=first)

    assert make_agent(ide="Cursor", model="Sonnet")[0].name == "Cursor (Sonnet) 2"


@pytest.mark.parametrize(("ide", "model", "field"), [("", "GPT", "ide"), ("  ", "GPT", "ide"), ("Zed", "", "model")])
def test_register_with_empty_ide_or_model_is_bad_request(make_agent, ide, model, field):
    with pytest.raises(errors.BadRequest) as info:
        make_agent(ide=ide, model=model)

    assert info.value.extra["field"] == field
    assert not Agent.objects.exists()


def test_register_stores_only_the_sha256_of_the_token(make_agent):
    agent, token = make_agent()

    stored = Agent.objects.get(pk=agent.pk)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert stored.token_hash != token
    assert token not in str(list(Agent.objects.filter(pk=agent.pk).values()))


def test_every_agent_gets_a_different_token(make_agent):
    tokens = {make_agent()[1] for _ in range(5)}

    assert len(tokens) == 5


def test_register_counts_as_a_heartbeat(make_agent):
    before = timezone.now()
    agent, _ = make_agent()

    stored = Agent.objects.get(pk=agent.pk)
    assert stored.last_heartbeat >= before
    assert stored.status == Agent.Status.ONLINE
    assert stored.is_online


def test_agent_to_dict_never_shows_the_token_or_its_hash(make_agent):
    agent, token = make_agent()

    shown = str(agent_to_dict(agent))

    assert token not in shown
    assert agent.token_hash not in shown


# --- credentials ---------------------------------------------------------------


def test_authenticate_returns_the_agent_for_its_token(make_agent):
    agent, token = make_agent()

    assert services.authenticate(agent_id=str(agent.pk), token=token) == agent


def test_authenticate_with_another_agents_token_is_invalid_credentials(make_agent):
    agent, _ = make_agent()
    _, other_token = make_agent()

    with pytest.raises(errors.InvalidCredentials):
        services.authenticate(agent_id=str(agent.pk), token=other_token)


@pytest.mark.parametrize(
    "agent_id",
    [str(uuid.uuid4()), "not-a-uuid", "", "1"],
    ids=["unknown", "malformed", "empty", "integer"],
)
def test_authenticate_with_unknown_or_malformed_id_is_invalid_credentials(make_agent, agent_id):
    _, token = make_agent()

    with pytest.raises(errors.InvalidCredentials):
        services.authenticate(agent_id=agent_id, token=token)


def test_authenticate_with_wrong_token_is_invalid_credentials(make_agent):
    agent, token = make_agent()

    with pytest.raises(errors.InvalidCredentials) as wrong:
        services.authenticate(agent_id=str(agent.pk), token=token + "x")
    with pytest.raises(errors.InvalidCredentials) as unknown:
        services.authenticate(agent_id=str(uuid.uuid4()), token=token)

    # The answer does not tell which half was wrong.
    assert wrong.value.message == unknown.value.message


def test_unregister_voids_the_token_and_takes_the_agent_offline(make_agent):
    agent, token = make_agent()

    services.unregister_agent(agent=agent)

    stored = Agent.objects.get(pk=agent.pk)
    assert stored.status == Agent.Status.OFFLINE
    assert stored.unregistered_at is not None
    assert not stored.is_online
    with pytest.raises(errors.InvalidCredentials):
        services.authenticate(agent_id=str(agent.pk), token=token)


def test_unregistered_agent_cannot_resume(make_agent):
    agent, token = make_agent()
    services.unregister_agent(agent=agent)

    with pytest.raises(errors.InvalidCredentials):
        services.resume_agent(agent_id=str(agent.pk), token=token)


def test_rotate_token_replaces_the_old_token(make_agent):
    agent, old = make_agent()

    new = services.rotate_token(agent=agent)

    assert services.authenticate(agent_id=str(agent.pk), token=new) == agent
    with pytest.raises(errors.InvalidCredentials):
        services.authenticate(agent_id=str(agent.pk), token=old)


def test_resume_brings_an_offline_agent_back_online(make_agent):
    agent, token = make_agent()
    Agent.objects.filter(pk=agent.pk).update(
        status=Agent.Status.OFFLINE, last_heartbeat=timezone.now() - timedelta(hours=1)
    )

    resumed = services.resume_agent(agent_id=str(agent.pk), token=token)

    stored = Agent.objects.get(pk=agent.pk)
    assert resumed.pk == agent.pk
    assert stored.status == Agent.Status.ONLINE
    assert stored.is_online
    assert stored.last_activity == "agent_resume"


# --- presence ------------------------------------------------------------------


def test_is_online_until_the_heartbeat_is_older_than_the_timeout(make_agent):
    agent, _ = make_agent()
    now = timezone.now()
    set_heartbeat(agent, now - timedelta(seconds=60))

    assert agent.is_online_at(now) is True
    assert agent.is_online_at(now + timedelta(seconds=1)) is False


def test_is_online_follows_agent_heartbeat_timeout(agentchat_settings, make_agent):
    agent, _ = make_agent()
    now = timezone.now()
    set_heartbeat(agent, now - timedelta(seconds=90))
    assert agent.is_online_at(now) is False

    agentchat_settings(AGENT_HEARTBEAT_TIMEOUT=120)

    assert agent.is_online_at(now) is True


def test_is_online_is_derived_even_when_stored_status_is_stale(make_agent):
    """Between runs of mark_offline_agents the stored status may lag; is_online does not."""
    agent, _ = make_agent()
    set_heartbeat(agent, timezone.now() - timedelta(minutes=5))

    assert agent.status == Agent.Status.ONLINE
    assert agent.is_online is False
    assert agent_to_dict(agent)["is_online"] is False


def test_online_queryset_agrees_with_is_online(make_agent):
    now = timezone.now()
    fresh, _ = make_agent(model="Fresh")
    stale, _ = make_agent(model="Stale")
    gone, _ = make_agent(model="Gone")
    set_heartbeat(fresh, now - timedelta(seconds=59))
    set_heartbeat(stale, now - timedelta(seconds=61))
    services.unregister_agent(agent=gone, now=now)

    online = set(Agent.objects.online(now=now))

    assert online == {fresh}
    assert {a for a in Agent.objects.all() if a.is_online_at(now)} == online
    assert set(Agent.objects.offline(now=now)) == {stale, gone}


def test_list_agents_leaves_out_unregistered_and_can_filter_online(make_agent):
    now = timezone.now()
    fresh, _ = make_agent(model="Fresh")
    stale, _ = make_agent(model="Stale")
    gone, _ = make_agent(model="Gone")
    set_heartbeat(stale, now - timedelta(minutes=5))
    services.unregister_agent(agent=gone)

    assert services.list_agents(now=now) == [fresh, stale]
    assert services.list_agents(online_only=True, now=now) == [fresh]


# --- heartbeat writes ------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """A monotonic clock the heartbeat coalescing reads, moved by hand."""
    now = SimpleNamespace(value=1000.0)
    monkeypatch.setattr(services.heartbeat_writes, "clock", lambda: now.value)
    return now


def test_record_activity_writes_once_then_coalesces_within_half_an_interval(
    make_agent, clock, django_assert_num_queries, as_a_fresh_process
):
    agent, _ = make_agent()
    as_a_fresh_process()  # as if registered in another process
    first = timezone.now() + timedelta(seconds=1)

    # Unknown to this process: one UPDATE tries "back from offline", one stores it.
    with django_assert_num_queries(2):
        assert services.record_activity(agent=agent, op="msg_list", now=first) is True
    clock.value += 19.9  # HEARTBEAT_INTERVAL is 40: writes are 20 s apart at most
    with django_assert_num_queries(0):
        assert services.record_activity(agent=agent, op="msg_get", now=first + timedelta(seconds=19)) is False

    stored = Agent.objects.get(pk=agent.pk)
    assert stored.last_heartbeat == first
    assert stored.last_activity == "msg_list"
    # The in-memory agent still reflects the latest op.
    assert agent.last_activity == "msg_get"


def test_record_activity_writes_again_after_half_an_interval(
    make_agent, clock, django_assert_num_queries, as_a_fresh_process
):
    agent, _ = make_agent()
    as_a_fresh_process()
    services.record_activity(agent=agent, op="msg_list")
    later = timezone.now() + timedelta(seconds=20)
    clock.value += 20

    with django_assert_num_queries(1):
        assert services.record_activity(agent=agent, op="agent_heartbeat", now=later) is True

    assert Agent.objects.get(pk=agent.pk).last_heartbeat == later


def test_registering_counts_as_the_first_write(make_agent, clock, django_assert_num_queries):
    agent, _ = make_agent()

    with django_assert_num_queries(0):
        assert services.record_activity(agent=agent, op="agent_heartbeat") is False


def test_record_activity_brings_a_marked_offline_agent_back_online(make_agent, as_a_fresh_process):
    agent, _ = make_agent()
    as_a_fresh_process()
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.OFFLINE)

    services.record_activity(agent=agent, op="agent_heartbeat")

    assert Agent.objects.get(pk=agent.pk).status == Agent.Status.ONLINE


def test_record_activity_does_not_revive_an_unregistered_agent(make_agent):
    agent, _ = make_agent()
    services.unregister_agent(agent=agent)

    with pytest.raises(errors.InvalidCredentials):
        services.record_activity(agent=agent, op="agent_heartbeat")

    stored = Agent.objects.get(pk=agent.pk)
    assert stored.status == Agent.Status.OFFLINE
    assert stored.is_online is False


def test_refresh_heartbeats_writes_many_agents_in_one_update(make_agent, django_assert_num_queries):
    agents = [make_agent(model=f"M{n}")[0] for n in range(5)]
    Agent.objects.update(status=Agent.Status.OFFLINE, last_heartbeat=timezone.now() - timedelta(hours=1))
    now = timezone.now()

    with django_assert_num_queries(1):
        written = services.refresh_heartbeats(agent_ids=[a.pk for a in agents], now=now)

    assert written == 5
    assert set(Agent.objects.values_list("last_heartbeat", "status")) == {(now, Agent.Status.ONLINE)}


def test_refresh_heartbeats_skips_unregistered_agents(make_agent):
    live, _ = make_agent(model="Live")
    gone, _ = make_agent(model="Gone")
    services.unregister_agent(agent=gone)

    assert services.refresh_heartbeats(agent_ids=[live.pk, gone.pk]) == 1
    assert Agent.objects.get(pk=gone.pk).status == Agent.Status.OFFLINE


def test_refresh_heartbeats_with_no_agents_touches_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert services.refresh_heartbeats(agent_ids=[]) == 0


def test_refreshed_agents_skip_their_next_op_write(make_agent, clock, django_assert_num_queries, as_a_fresh_process):
    agent, _ = make_agent()
    as_a_fresh_process()
    services.refresh_heartbeats(agent_ids=[agent.pk])

    with django_assert_num_queries(0):
        assert services.record_activity(agent=agent, op="msg_post") is False


def test_an_agent_marked_offline_that_acts_again_is_back_online_and_announced(
    make_agent, monkeypatch, django_capture_on_commit_callbacks, as_a_fresh_process
):
    agent, _ = make_agent()
    Agent.objects.filter(pk=agent.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=120))
    assert [row["id"] for row in services.mark_offline_agents()] == [agent.pk]
    announced = []
    monkeypatch.setattr(
        "agents.services.presence.events.announce_presence", lambda a, online: announced.append((a.pk, online))
    )
    as_a_fresh_process()

    with django_capture_on_commit_callbacks(execute=True):
        assert services.record_activity(agent=agent, op="agent_heartbeat") is True

    stored = Agent.objects.get(pk=agent.pk)
    assert stored.status == Agent.Status.ONLINE and stored.is_online
    assert announced == [(agent.pk, True)]
