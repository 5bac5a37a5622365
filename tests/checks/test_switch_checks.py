"""Checks of the on/off settings: CONTENT_FILTER_ENABLED."""

from tests.checks.support import reported


def test_the_content_filter_switch_must_be_a_boolean(settings):
    assert reported(settings, CONTENT_FILTER_ENABLED=False) == []
    assert reported(settings, CONTENT_FILTER_ENABLED="no") == ["agentchat.E012"]
