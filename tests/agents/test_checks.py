"""The system checks that keep HEARTBEAT_INTERVAL below AGENT_HEARTBEAT_TIMEOUT."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from agents.checks import check_heartbeat_settings


@pytest.fixture
def heartbeat(agentchat_settings):
    """Set the heartbeat interval and timeout."""

    def configure(interval, timeout):
        agentchat_settings(HEARTBEAT_INTERVAL=interval, AGENT_HEARTBEAT_TIMEOUT=timeout)

    return configure


def ids(messages):
    return [message.id for message in messages]


def test_defaults_pass_the_checks(settings):
    assert (settings.AGENTCHAT["HEARTBEAT_INTERVAL"], settings.AGENTCHAT["AGENT_HEARTBEAT_TIMEOUT"]) == (40, 60)

    assert check_heartbeat_settings(None) == []


@pytest.mark.parametrize(("interval", "timeout"), [(60, 60), (61, 60), (120, 60)], ids=["equal", "above", "double"])
def test_interval_not_below_timeout_is_an_error(heartbeat, interval, timeout):
    heartbeat(interval, timeout)

    messages = check_heartbeat_settings(None)

    assert ids(messages) == ["agents.E001"]
    assert messages[0].is_serious()
    assert str(interval) in messages[0].msg and str(timeout) in messages[0].msg


@pytest.mark.parametrize(("interval", "timeout"), [(40, 59), (40, 41), (100, 149)])
def test_timeout_under_one_and_a_half_intervals_is_a_warning(heartbeat, interval, timeout):
    heartbeat(interval, timeout)

    messages = check_heartbeat_settings(None)

    assert ids(messages) == ["agents.W001"]
    assert not messages[0].is_serious()


@pytest.mark.parametrize(("interval", "timeout"), [(40, 60), (10, 15), (30, 300)])
def test_timeout_of_one_and_a_half_intervals_or_more_passes(heartbeat, interval, timeout):
    heartbeat(interval, timeout)

    assert check_heartbeat_settings(None) == []


@pytest.mark.parametrize("interval", [0, -5])
def test_interval_that_is_not_positive_is_an_error(heartbeat, interval):
    heartbeat(interval, 60)

    assert ids(check_heartbeat_settings(None)) == ["agents.E002"]


def test_check_command_refuses_an_interval_not_below_the_timeout(heartbeat):
    heartbeat(60, 60)

    with pytest.raises(SystemCheckError) as info:
        call_command("check", stdout=StringIO(), stderr=StringIO())

    assert "agents.E001" in str(info.value)


def test_check_command_reports_the_warning_without_failing(heartbeat):
    heartbeat(40, 50)
    stderr = StringIO()

    call_command("check", stdout=StringIO(), stderr=stderr)

    assert "agents.W001" in stderr.getvalue()
