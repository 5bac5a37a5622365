"""Checks of the size limits: MAX_MESSAGE_CHARS and MAX_FRAME_BYTES, alone and together."""

from tests.checks.support import hint_of, reported


def test_sizes_must_be_positive(settings):
    assert reported(settings, MAX_MESSAGE_CHARS=0) == ["agentchat.E007"]
    assert reported(settings, MAX_FRAME_BYTES=0) == ["agentchat.E008"]


def test_a_frame_too_small_for_a_maximal_message_is_an_error(settings):
    assert reported(settings, MAX_MESSAGE_CHARS=100_000, MAX_FRAME_BYTES=100_000) == ["agentchat.E009"]
    assert "AGENTCHAT_MAX_FRAME_BYTES to at least 101024" in hint_of(
        settings, "agentchat.E009", MAX_MESSAGE_CHARS=100_000, MAX_FRAME_BYTES=100_000
    )
    assert reported(settings, MAX_MESSAGE_CHARS=1000, MAX_FRAME_BYTES=2024) == []
