"""Checks of the timing settings: msg_wait's default timeout, the reply-token lease, the cron ages."""

import pytest

from tests.checks.support import hint_of, reported


def test_the_defaults_pass(settings):
    assert reported(settings) == []


@pytest.mark.parametrize("value", [0, -1, 3_600_001, "300000", 1.5, True])
def test_msg_wait_timeout_out_of_range_is_an_error(settings, value):
    assert reported(settings, MSG_WAIT_TIMEOUT_MS=value) == ["agentchat.E001"]


@pytest.mark.parametrize("value", [1, 3_600_000])
def test_msg_wait_timeout_at_its_bounds_passes(settings, value):
    assert reported(settings, MSG_WAIT_TIMEOUT_MS=value) == []


@pytest.mark.parametrize("value", [0, -5])
def test_a_lease_must_be_positive(settings, value):
    assert reported(settings, REPLY_TOKEN_LEASE_SECONDS=value) == ["agentchat.E003"]
    assert "AGENTCHAT_REPLY_TOKEN_LEASE_SECONDS" in hint_of(settings, "agentchat.E003", REPLY_TOKEN_LEASE_SECONDS=value)


def test_idle_minutes_and_inactive_days_may_be_zero_not_negative(settings):
    assert reported(settings, THREAD_IDLE_TIMEOUT_MINUTES=0, INACTIVE_AGENT_DAYS=0) == []
    assert reported(settings, THREAD_IDLE_TIMEOUT_MINUTES=-1) == ["agentchat.E010"]
    assert reported(settings, INACTIVE_AGENT_DAYS=-1) == ["agentchat.E011"]


@pytest.mark.parametrize("value", [-1, "600", 1.5, True])
def test_reply_expected_seconds_may_be_zero_not_negative(settings, value):
    assert reported(settings, REPLY_EXPECTED_SECONDS=0) == []
    assert reported(settings, REPLY_EXPECTED_SECONDS=value) == ["agentchat.E013"]
    assert "AGENTCHAT_REPLY_EXPECTED_SECONDS" in hint_of(settings, "agentchat.E013", REPLY_EXPECTED_SECONDS=value)


@pytest.mark.parametrize("value", [[0, 10, 10], [700, 10], [700, -1, 10], "700,10,10", [700, True, 10]])
def test_gc_thresholds_must_be_three_positive_integers(settings, value):
    assert reported(settings, GC_THRESHOLDS=value) == ["agentchat.E015"]
    assert "AGENTCHAT_GC_THRESHOLDS" in hint_of(settings, "agentchat.E015", GC_THRESHOLDS=value)


def test_gc_thresholds_of_python_pass(settings):
    assert reported(settings, GC_THRESHOLDS=[700, 10, 10]) == []
