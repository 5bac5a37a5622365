"""Checks of the rate limits: posts, registrations and threads per minute."""

import pytest

from tests.checks.support import hint_of, reported


@pytest.mark.parametrize(
    ("name", "check_id"),
    [
        ("RATE_LIMIT_PER_MINUTE", "agentchat.E004"),
        ("REGISTER_RATE_PER_MINUTE", "agentchat.E005"),
        ("THREAD_RATE_PER_MINUTE", "agentchat.E006"),
    ],
)
def test_a_negative_limit_is_an_error_and_zero_turns_it_off(settings, name, check_id):
    assert reported(settings, **{name: -1}) == [check_id]
    assert f"AGENTCHAT_{name}" in hint_of(settings, check_id, **{name: -1})
    assert reported(settings, **{name: 0}) == []


def test_a_registration_limit_below_a_team_burst_is_a_warning(settings):
    assert reported(settings, REGISTER_RATE_PER_MINUTE=10) == ["agentchat.W005"]
    assert reported(settings, REGISTER_RATE_PER_MINUTE=30) == []
