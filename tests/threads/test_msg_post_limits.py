"""msg_post's limits on the domain layer: the rate limit, the secret filter, the message size."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agentchat import errors
from tests.support.domain import SECRETS, join, post, refused, token_state

pytestmark = pytest.mark.django_db


def test_post_over_the_rate_limit_is_refused_with_retry_after(agentchat_settings, agent, thread, sync):
    agentchat_settings(RATE_LIMIT_PER_MINUTE=2)
    t0 = timezone.now()
    _, chain = post(agent, thread, sync, now=t0)
    _, chain = post(agent, thread, chain, now=t0 + timedelta(seconds=10))

    with refused(thread, errors.RateLimited) as info:
        post(agent, thread, chain, now=t0 + timedelta(seconds=20))

    # The oldest post in the window (t0) leaves it at t0 + 60 s, 40 s from now.
    assert info.value.extra["retry_after"] == 40


def test_rate_limited_token_posts_once_the_minute_has_passed(agentchat_settings, agent, thread, sync):
    agentchat_settings(RATE_LIMIT_PER_MINUTE=1)
    t0 = timezone.now()
    _, chain = post(agent, thread, sync, now=t0)
    with pytest.raises(errors.RateLimited):
        post(agent, thread, chain, now=t0 + timedelta(seconds=30))

    assert post(agent, thread, chain, now=t0 + timedelta(seconds=61))[0].seq == 2


def test_refused_posts_do_not_count_towards_the_rate_limit(agentchat_settings, agent, thread, sync):
    agentchat_settings(RATE_LIMIT_PER_MINUTE=2)
    t0 = timezone.now()
    _, chain = post(agent, thread, sync, now=t0)
    for n in range(3):
        with pytest.raises(errors.ContentBlocked):
            post(agent, thread, chain, "AKIAIOSFODNN7EXAMPLE", now=t0 + timedelta(seconds=n + 1))

    assert post(agent, thread, chain, now=t0 + timedelta(seconds=5))[0].seq == 2


def test_rate_limit_counts_per_agent(agentchat_settings, agent, other, thread, sync):
    agentchat_settings(RATE_LIMIT_PER_MINUTE=1)
    post(agent, thread, sync)

    assert post(other, thread, join(other, thread))[0].seq == 2


def test_rate_limit_zero_turns_it_off(agentchat_settings, agent, thread, sync):
    agentchat_settings(RATE_LIMIT_PER_MINUTE=0)
    chain = sync
    for _ in range(40):
        message, chain = post(agent, thread, chain)

    assert message.seq == 40


@pytest.mark.parametrize("pattern", SECRETS)
def test_content_with_a_secret_is_blocked_naming_the_pattern_not_the_secret(agent, thread, sync, pattern):
    secret = SECRETS[pattern]

    with refused(thread, errors.ContentBlocked) as info:
        post(agent, thread, sync, f"here is my config:\n{secret}\nthanks")

    assert info.value.extra["pattern"] == pattern
    assert secret not in json.dumps(info.value.as_dict())
    assert secret not in str(info.value)
    assert not token_state(sync).used


def test_content_filter_can_be_turned_off(agentchat_settings, agent, thread, sync):
    agentchat_settings(CONTENT_FILTER_ENABLED=False)

    message, _ = post(agent, thread, sync, SECRETS["aws_access_key_id"])

    assert message.content == SECRETS["aws_access_key_id"]


def test_text_that_only_resembles_a_secret_is_accepted(agent, thread, sync):
    message, _ = post(agent, thread, sync, "AKIA is the prefix of AWS key ids; sk- starts OpenAI keys.")

    assert message.seq == 1


def test_content_over_max_message_chars_is_payload_too_large(agentchat_settings, agent, thread, sync):
    agentchat_settings(MAX_MESSAGE_CHARS=10)

    with refused(thread, errors.PayloadTooLarge):
        post(agent, thread, sync, "x" * 11)


def test_content_of_exactly_max_message_chars_is_accepted(agentchat_settings, agent, thread, sync):
    agentchat_settings(MAX_MESSAGE_CHARS=10)

    # Characters, not bytes: ten emoji are forty UTF-8 bytes.
    message, _ = post(agent, thread, sync, "\N{SLIGHTLY SMILING FACE}" * 10)

    assert len(message.content) == 10


def test_content_of_default_maximum_length_is_accepted(agent, thread, sync, settings):
    limit = settings.AGENTCHAT["MAX_MESSAGE_CHARS"]

    assert post(agent, thread, sync, "y" * limit)[0].seq == 1
    with pytest.raises(errors.PayloadTooLarge):
        post(agent, thread, join(agent, thread), "y" * (limit + 1))
