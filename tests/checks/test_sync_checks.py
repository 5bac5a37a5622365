"""Checks of the sync rule's setting: SEQ_TOLERANCE."""

import pytest

from tests.checks.support import hint_of, reported


def test_zero_and_positive_tolerances_pass(settings):
    assert reported(settings, SEQ_TOLERANCE=0) == []
    assert reported(settings, SEQ_TOLERANCE=3) == []


@pytest.mark.parametrize("value", [-1, None, "0"])
def test_a_negative_or_missing_tolerance_is_an_error(settings, value):
    """SEQ_TOLERANCE=-1 used to pass the checks and then refuse every post."""
    assert reported(settings, SEQ_TOLERANCE=value) == ["agentchat.E002"]
    assert "AGENTCHAT_SEQ_TOLERANCE" in hint_of(settings, "agentchat.E002", SEQ_TOLERANCE=value)
