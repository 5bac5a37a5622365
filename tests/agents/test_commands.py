"""manage.py mark_offline_agents (run from cron)."""

import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.utils import timezone

from agents import events
from agents import services as agent_services
from agents.models import Agent

pytestmark = pytest.mark.django_db


def run(*args, **options):
    out = StringIO()
    call_command("mark_offline_agents", *args, stdout=out, **options)
    return out.getvalue()


def silent_for(agent, seconds):
    """Make the agent's stored heartbeat `seconds` old, still marked online."""
    Agent.objects.filter(pk=agent.pk).update(
        last_heartbeat=timezone.now() - timedelta(seconds=seconds), status=Agent.Status.ONLINE
    )


def status(agent):
    return Agent.objects.get(pk=agent.pk).status


@pytest.fixture
def agent(make_agent):
    return make_agent()[0]


def test_agent_just_inside_the_timeout_stays_online(agent):
    silent_for(agent, 55)

    output = run()

    assert status(agent) == Agent.Status.ONLINE
    assert output == "Marked 0 agent(s) offline (no heartbeat for 60 s).\n"


def test_agent_just_past_the_timeout_is_marked_offline(agent):
    silent_for(agent, 65)

    output = run()

    assert status(agent) == Agent.Status.OFFLINE
    assert output == "Marked 1 agent(s) offline (no heartbeat for 60 s).\n"


def test_only_the_stale_agents_are_marked(make_agent):
    fresh, _ = make_agent(model="Fresh")
    stale, _ = make_agent(model="Stale")
    staler, _ = make_agent(model="Staler")
    silent_for(stale, 90)
    silent_for(staler, 3600)

    output = run()

    assert [status(a) for a in (fresh, stale, staler)] == ["online", "offline", "offline"]
    assert output.startswith("Marked 2 agent(s)")


def test_timeout_follows_the_setting(agentchat_settings, agent):
    agentchat_settings(HEARTBEAT_INTERVAL=60, AGENT_HEARTBEAT_TIMEOUT=120)
    silent_for(agent, 90)

    output = run()

    assert status(agent) == Agent.Status.ONLINE
    assert "(no heartbeat for 120 s)" in output


def test_timeout_option_overrides_the_setting(agent):
    silent_for(agent, 45)
    run()
    assert status(agent) == Agent.Status.ONLINE

    output = run("--timeout", "30")

    assert status(agent) == Agent.Status.OFFLINE
    assert output == "Marked 1 agent(s) offline (no heartbeat for 30 s).\n"


@pytest.mark.parametrize("timeout", ["0", "-10"])
def test_timeout_option_must_be_positive(agent, timeout):
    silent_for(agent, 3600)

    with pytest.raises(CommandError):
        run("--timeout", timeout)

    assert status(agent) == Agent.Status.ONLINE


def test_dry_run_reports_and_changes_nothing(agent):
    silent_for(agent, 65)

    output = run("--dry-run")

    assert status(agent) == Agent.Status.ONLINE
    assert output == "Would mark 1 agent(s) offline (no heartbeat for 60 s).\n"


def test_second_run_changes_nothing(agent):
    silent_for(agent, 65)
    run()
    before = Agent.objects.values_list("pk", "status", "last_heartbeat").get(pk=agent.pk)

    output = run()

    assert output.startswith("Marked 0 agent(s)")
    assert Agent.objects.values_list("pk", "status", "last_heartbeat").get(pk=agent.pk) == before


def test_unregistered_agents_are_not_counted_again(agent):
    agent_services.unregister_agent(agent=agent)
    Agent.objects.filter(pk=agent.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))

    assert run().startswith("Marked 0 agent(s)")


def test_verbose_run_lists_the_marked_agents(agent):
    silent_for(agent, 65)

    output = run(verbosity=2)

    assert agent.name in output
    assert str(agent.pk) in output
    assert output.splitlines()[-1] == "Marked 1 agent(s) offline (no heartbeat for 60 s)."


def test_each_agent_marked_offline_is_announced_after_commit(
    make_agent, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(events, "group_send", lambda group, message: sent.append((group, message)))
    stale, _ = make_agent(model="Stale")
    fresh, _ = make_agent(model="Fresh")
    silent_for(stale, 65)

    with django_capture_on_commit_callbacks(execute=True):
        run()

    assert sent == [
        (
            events.PRESENCE_GROUP,
            {"type": "agent.presence", "agent_id": str(stale.pk), "name": stale.name, "is_online": False},
        )
    ]


def test_dry_run_announces_nothing(agent, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(events, "group_send", lambda group, message: sent.append((group, message)))
    silent_for(agent, 65)

    with django_capture_on_commit_callbacks(execute=True):
        run("--dry-run")

    assert sent == []


def test_marked_agent_writes_its_next_heartbeat_at_once(agent, django_assert_num_queries):
    """The sweep forgets the coalescing memory, so a returning agent is stored online again."""
    silent_for(agent, 65)
    agent_services.record_activity(agent=agent, op="msg_list")  # remembered, not written: coalesced
    run()

    with django_assert_num_queries(1):
        assert agent_services.record_activity(agent=agent, op="agent_heartbeat") is True

    assert status(agent) == Agent.Status.ONLINE


# --- the race with a heartbeat (PostgreSQL: real row locks) -----------------------


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_heartbeat_committed_while_the_sweep_waits_keeps_the_agent_online(agent):
    if connection.vendor != "postgresql":
        pytest.fail("This test needs DATABASE_URL=postgres://... (see the README's test command).")
    silent_for(agent, 3600)
    row_locked, commit_heartbeat, sweep_done = threading.Event(), threading.Event(), threading.Event()
    outcome = {}

    def heartbeat():
        try:
            with transaction.atomic():
                agent_services.refresh_heartbeats(agent_ids=[agent.pk])  # UPDATE: the row is locked
                row_locked.set()
                assert commit_heartbeat.wait(timeout=30)
        except BaseException as exc:
            outcome["heartbeat"] = exc
        finally:
            row_locked.set()
            connections.close_all()

    def sweep():
        try:
            outcome["output"] = run()
        except BaseException as exc:
            outcome["sweep"] = exc
        finally:
            sweep_done.set()
            connections.close_all()

    heartbeat_thread = threading.Thread(target=heartbeat)
    heartbeat_thread.start()
    assert row_locked.wait(timeout=30)
    sweep_thread = threading.Thread(target=sweep)
    sweep_thread.start()
    # Sequence, not timing: go on once the sweep's UPDATE is queued behind the row lock.
    deadline = time.monotonic() + 30
    while not waiting_on_a_lock() and not sweep_done.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    blocked = waiting_on_a_lock()
    commit_heartbeat.set()
    heartbeat_thread.join(timeout=30)
    sweep_thread.join(timeout=30)

    assert "heartbeat" not in outcome and "sweep" not in outcome, outcome
    assert blocked, "the sweep never waited for the heartbeat's row lock"
    assert outcome["output"].startswith("Marked 0 agent(s)")
    stored = Agent.objects.get(pk=agent.pk)
    assert stored.status == Agent.Status.ONLINE
    assert stored.is_online


def test_register_agent_prints_a_token_that_authenticates():
    out = StringIO()
    call_command("register_agent", "--ide", "Claude Code", "--model", "claude", "--token-only", stdout=out)
    token = out.getvalue().strip()
    assert agent_services.authenticate_token(token=token).name == "Claude Code (claude)"
