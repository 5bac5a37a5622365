"""Checks of the on/off settings: CONTENT_FILTER_ENABLED, NOTIFY_ADMINS."""

from tests.checks.support import reported


def test_the_content_filter_switch_must_be_a_boolean(settings):
    assert reported(settings, CONTENT_FILTER_ENABLED=False) == []
    assert reported(settings, CONTENT_FILTER_ENABLED="no") == ["agentchat.E012"]


def test_the_notify_admins_switch_must_be_a_boolean(settings):
    settings.ADMINS = [("Ada", "ada@example.com")]
    assert reported(settings, NOTIFY_ADMINS=True) == []
    assert reported(settings, NOTIFY_ADMINS="yes") == ["agentchat.E014"]


def test_notifying_admins_without_admins_is_a_warning(settings):
    settings.ADMINS = []
    assert reported(settings, NOTIFY_ADMINS=True) == ["agentchat.W014"]
    assert reported(settings, NOTIFY_ADMINS=False) == []
