"""msg_post's sync rules and the thread operations, called directly on the domain layer.

PROTOCOL.md, "msg_post and the sync rules", "Fine points" and "Errors" are the
contract; every refusal is also checked to change nothing.
"""

import json
import uuid
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from agentchat import errors, tokens
from agents import services as agent_services
from threads import selectors, services
from threads.models import Message, ReplyToken, Thread
from threads.serializers import HIDDEN_CONTENT, message_to_dict

# The admin and the console act as a staff user (threads.services.check_administrator).
STAFF = SimpleNamespace(is_active=True, is_staff=True)

pytestmark = pytest.mark.django_db


# --- helpers -------------------------------------------------------------------


def configure(settings, **changes):
    """Change keys of settings.AGENTCHAT (a dict) for one test, restored afterwards."""
    settings.AGENTCHAT = {**settings.AGENTCHAT, **changes}


def post(agent, thread, sync, content="hello", **kwargs):
    """Post with the sync context the agent holds, unless a test overrides a field."""
    kwargs.setdefault("expected_last_seq", sync.current_seq)
    kwargs.setdefault("reply_token", sync.reply_token)
    return services.post_message(agent=agent, thread_id=str(thread.pk), content=content, **kwargs)


def state(thread):
    """Everything a refused post must leave alone."""
    fresh = Thread.objects.get(pk=thread.pk)
    return {
        "messages": list(Message.objects.order_by("thread_id", "seq").values_list("id", "seq", "content")),
        "last_seq": fresh.last_seq,
        "updated_at": fresh.updated_at,
        "status": fresh.status,
        "tokens": sorted(ReplyToken.objects.values_list("id", "consumed_at", "voided_at")),
    }


@contextmanager
def refused(thread, error_class):
    """Expect `error_class` and check that the refused request changed nothing."""
    before = state(thread)
    with pytest.raises(error_class) as info:
        yield info
    assert state(thread) == before


def token_row(sync):
    return ReplyToken.objects.get(token_hash=tokens.hash_token(sync.reply_token))


@pytest.fixture
def agent(make_agent):
    return make_agent()[0]


@pytest.fixture
def other(make_agent):
    return make_agent(model="Claude")[0]


@pytest.fixture
def created(agent):
    """A new thread by `agent`, with the sync context thread_create hands back."""
    return services.create_thread(agent=agent, topic="plan")


@pytest.fixture
def thread(created):
    return created[0]


@pytest.fixture
def sync(created):
    return created[1]


def join(agent, thread, read_seq=None):
    """A sync context for `agent`, as msg_wait would end with it."""
    if read_seq is None:
        read_seq = Thread.objects.get(pk=thread.pk).last_seq
    return services.finish_wait(agent=agent, thread_id=str(thread.pk), read_seq=read_seq)


# --- success and the chain token ----------------------------------------------


def test_post_stores_message_with_seq_1_and_returns_chain_token(agent, thread, sync):
    message, chain = post(agent, thread, sync, "first")

    assert message.seq == 1
    assert message.author == agent
    assert message.author_name == agent.name
    assert message.role == Message.Role.ASSISTANT
    assert message.priority == Message.Priority.NORMAL
    assert chain.current_seq == 1
    assert chain.reply_token != sync.reply_token
    assert Thread.objects.get(pk=thread.pk).last_seq == 1


def test_chain_token_posts_again_with_the_next_seq(agent, thread, sync):
    _, chain = post(agent, thread, sync, "first")
    second, chain2 = post(agent, thread, chain, "second")

    assert second.seq == 2
    assert chain2.current_seq == 2
    assert list(Message.objects.filter(thread=thread).values_list("seq", "content")) == [
        (1, "first"),
        (2, "second"),
    ]


def test_successful_post_consumes_its_token(agent, thread, sync):
    post(agent, thread, sync)

    assert token_row(sync).consumed_at is not None


def test_post_accepts_role_priority_metadata_and_stop_reason(agent, thread, sync):
    message, _ = post(
        agent,
        thread,
        sync,
        role="assistant",
        priority="urgent",
        metadata={"mentions": [str(agent.pk)], "stop_reason": "complete"},
    )

    message.refresh_from_db()
    assert message.role == "assistant"
    assert message.priority == "urgent"
    assert message.metadata == {"mentions": [str(agent.pk)], "stop_reason": "complete"}


def test_post_to_unknown_thread_is_not_found(agent, sync):
    with pytest.raises(errors.NotFound) as info:
        services.post_message(
            agent=agent,
            thread_id=str(uuid.uuid4()),
            content="x",
            expected_last_seq=0,
            reply_token=sync.reply_token,
        )
    assert info.value.extra["resource"] == "thread"


# --- MissingSyncFields ---------------------------------------------------------


@pytest.mark.parametrize("missing", ["expected_last_seq", "reply_token"])
def test_post_without_a_sync_field_is_missing_sync_fields(agent, thread, sync, missing):
    with refused(thread, errors.MissingSyncFields) as info:
        post(agent, thread, sync, **{missing: None})
    assert info.value.code == "MissingSyncFields"


# --- ReplyTokenInvalid -----------------------------------------------------------


def test_unknown_token_is_invalid(agent, thread, sync):
    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, sync, reply_token="not-a-token-we-issued")


def test_token_of_another_thread_is_invalid(agent, thread, sync):
    _, elsewhere = services.create_thread(agent=agent, topic="elsewhere")

    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, sync, reply_token=elsewhere.reply_token)
    assert token_row(elsewhere).consumed_at is None


def test_token_of_another_agent_is_invalid(agent, other, thread, sync):
    with refused(thread, errors.ReplyTokenInvalid):
        post(other, thread, sync)


def test_token_voided_by_seq_mismatch_is_invalid(agent, other, thread, sync):
    post(other, thread, join(other, thread), "news")
    with pytest.raises(errors.SeqMismatch):
        post(agent, thread, sync)

    # Even with the right expected_last_seq now, that token is gone.
    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, sync, expected_last_seq=1)


def test_token_voided_by_finish_wait_is_invalid_and_the_new_one_posts(agent, thread, sync):
    fresh = join(agent, thread)

    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, sync)
    message, _ = post(agent, thread, fresh)
    assert message.seq == 1


# --- ReplyTokenReplay / ReplyTokenExpired ----------------------------------------


def test_consumed_token_is_a_replay(agent, thread, sync):
    post(agent, thread, sync, "first")

    with refused(thread, errors.ReplyTokenReplay):
        post(agent, thread, sync, "again", expected_last_seq=1)


def test_token_past_its_lease_is_expired_and_stays_unconsumed(agent, thread, sync):
    with refused(thread, errors.ReplyTokenExpired):
        post(agent, thread, sync, now=sync.expires_at)
    assert token_row(sync).consumed_at is None


def test_token_just_inside_its_lease_posts(agent, thread, sync):
    message, _ = post(agent, thread, sync, now=sync.expires_at - timedelta(seconds=1))

    assert message.seq == 1


def test_lease_follows_reply_token_lease_seconds(settings, agent, thread):
    configure(settings, REPLY_TOKEN_LEASE_SECONDS=10)
    issued = timezone.now()
    sync = services.issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=0, now=issued)

    assert sync.expires_at == issued + timedelta(seconds=10)
    with refused(thread, errors.ReplyTokenExpired):
        post(agent, thread, sync, now=issued + timedelta(seconds=11))


# --- SeqMismatch -----------------------------------------------------------------


def test_stale_post_is_seq_mismatch_with_current_seq_and_new_messages(agent, other, thread, sync):
    other_sync = join(other, thread)
    _, other_sync = post(other, thread, other_sync, "b1")
    post(other, thread, other_sync, "b2")
    messages_before = Message.objects.count()

    with pytest.raises(errors.SeqMismatch) as info:
        post(agent, thread, sync, "stale")

    assert info.value.extra["current_seq"] == 2
    assert [(m["seq"], m["content"]) for m in info.value.extra["new_messages"]] == [(1, "b1"), (2, "b2")]
    assert Message.objects.count() == messages_before
    assert Thread.objects.get(pk=thread.pk).last_seq == 2
    json.dumps(info.value.as_dict())  # goes on the wire as it is


def test_seq_mismatch_new_messages_start_after_expected_last_seq(agent, thread):
    for n in range(1, 5):
        services.post_human_message(thread=thread, content=f"h{n}", author_name="Ada")
    sync = join(agent, thread, read_seq=2)

    with pytest.raises(errors.SeqMismatch) as info:
        post(agent, thread, sync)

    assert [m["seq"] for m in info.value.extra["new_messages"]] == [3, 4]


def test_seq_mismatch_carries_at_most_100_new_messages(agent, thread, sync):
    for n in range(105):
        services.post_human_message(thread=thread, content=f"h{n}", author_name="Ada")

    with pytest.raises(errors.SeqMismatch) as info:
        post(agent, thread, sync)

    assert info.value.extra["current_seq"] == 105
    assert [m["seq"] for m in info.value.extra["new_messages"]] == list(range(1, 101))


def test_seq_mismatch_hides_human_only_content_in_new_messages(agent, thread, sync):
    services.post_human_message(thread=thread, content="for humans", author_name="Ada", human_only=True)

    with pytest.raises(errors.SeqMismatch) as info:
        post(agent, thread, sync)

    assert info.value.extra["new_messages"][0]["content"] == HIDDEN_CONTENT
    assert "for humans" not in json.dumps(info.value.as_dict())


def test_seq_mismatch_voids_all_of_the_agents_tokens_in_that_thread_only(agent, other, thread, sync):
    # A second outstanding token, as bus_connect issues without voiding the first.
    second = services.issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=0)
    _, elsewhere = services.create_thread(agent=agent, topic="elsewhere")
    other_sync = join(other, thread)
    _, other_chain = post(other, thread, other_sync, "news")

    with pytest.raises(errors.SeqMismatch):
        post(agent, thread, sync)

    assert token_row(sync).voided_at is not None
    assert token_row(second).voided_at is not None
    assert token_row(elsewhere).voided_at is None
    assert token_row(other_chain).voided_at is None
    with pytest.raises(errors.ReplyTokenInvalid):
        post(agent, thread, second, expected_last_seq=1)


def test_after_seq_mismatch_a_fresh_token_at_current_seq_posts(agent, other, thread, sync):
    post(other, thread, join(other, thread), "news")
    with pytest.raises(errors.SeqMismatch) as info:
        post(agent, thread, sync)

    fresh = join(agent, thread, read_seq=info.value.extra["current_seq"])
    message, _ = post(agent, thread, fresh, "caught up")

    assert message.seq == 2


def test_expected_last_seq_ahead_of_the_thread_is_refused(agent, thread, sync):
    with refused(thread, errors.BadRequest) as info:
        post(agent, thread, sync, expected_last_seq=5)
    assert info.value.extra["field"] == "expected_last_seq"


def test_seq_tolerance_accepts_a_post_that_is_slightly_behind(settings, agent, other, thread, sync):
    configure(settings, SEQ_TOLERANCE=1)
    post(other, thread, join(other, thread), "news")

    message, chain = post(agent, thread, sync, "one behind")

    assert message.seq == 2
    assert chain.current_seq == 2
    assert chain.max_new_messages == 1


def test_seq_tolerance_still_refuses_a_post_further_behind(settings, agent, other, thread, sync):
    configure(settings, SEQ_TOLERANCE=1)
    _, other_chain = post(other, thread, join(other, thread), "b1")
    post(other, thread, other_chain, "b2")

    with pytest.raises(errors.SeqMismatch) as info:
        post(agent, thread, sync)
    assert info.value.extra["current_seq"] == 2


# --- client_msg_id -----------------------------------------------------------------


def test_client_msg_id_retry_returns_the_first_message_and_stores_nothing(agent, thread, sync):
    first, _ = post(agent, thread, sync, "once", client_msg_id="c-1")
    before = Message.objects.count()

    # The retry carries the consumed token and a seq that is now behind.
    again, context = post(agent, thread, sync, "once", client_msg_id="c-1")

    assert again.pk == first.pk
    assert Message.objects.count() == before
    assert Thread.objects.get(pk=thread.pk).last_seq == 1
    assert context.current_seq == 1
    assert post(agent, thread, context, "next")[0].seq == 2


def test_client_msg_id_retry_needs_no_sync_fields(agent, thread, sync):
    first, _ = post(agent, thread, sync, client_msg_id="c-1")

    again, _ = post(agent, thread, sync, client_msg_id="c-1", expected_last_seq=None, reply_token=None)

    assert again.pk == first.pk
    assert Message.objects.count() == 1


def test_client_msg_id_retry_does_not_void_the_agents_tokens(agent, other, thread, sync):
    _, chain = post(agent, thread, sync, client_msg_id="c-1")

    post(agent, thread, sync, client_msg_id="c-1", expected_last_seq=0)

    assert token_row(chain).voided_at is None
    assert post(agent, thread, chain)[0].seq == 2


def test_same_client_msg_id_from_another_agent_is_a_new_message(agent, other, thread, sync):
    first, _ = post(agent, thread, sync, client_msg_id="c-1")

    theirs, _ = post(other, thread, join(other, thread), client_msg_id="c-1")

    assert theirs.pk != first.pk
    assert theirs.seq == 2


# --- ThreadClosed ------------------------------------------------------------------


@pytest.mark.parametrize("close", [services.close_thread, services.archive_thread], ids=["closed", "archived"])
def test_post_to_closed_or_archived_thread_is_thread_closed(agent, thread, sync, close):
    close(staff_user=STAFF, thread_id=str(thread.pk))

    with refused(thread, errors.ThreadClosed):
        post(agent, thread, sync)


def test_token_refused_by_a_closed_thread_posts_once_it_reopens(agent, thread, sync):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))
    with pytest.raises(errors.ThreadClosed):
        post(agent, thread, sync)

    services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="discuss")

    assert post(agent, thread, sync)[0].seq == 1


def test_token_is_checked_before_the_thread_state(agent, thread):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))
    context = join(agent, thread)

    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, context, reply_token="bogus")


def test_human_post_to_closed_thread_is_thread_closed(thread):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))

    with refused(thread, errors.ThreadClosed):
        services.post_human_message(thread=thread, content="hi", author_name="Ada")


# --- RateLimited -------------------------------------------------------------------


def test_post_over_the_rate_limit_is_refused_with_retry_after(settings, agent, thread, sync):
    configure(settings, RATE_LIMIT_PER_MINUTE=2)
    t0 = timezone.now()
    _, chain = post(agent, thread, sync, now=t0)
    _, chain = post(agent, thread, chain, now=t0 + timedelta(seconds=10))

    with refused(thread, errors.RateLimited) as info:
        post(agent, thread, chain, now=t0 + timedelta(seconds=20))

    # The oldest post in the window (t0) leaves it at t0 + 60 s, 40 s from now.
    assert info.value.extra["retry_after"] == 40


def test_rate_limited_token_posts_once_the_minute_has_passed(settings, agent, thread, sync):
    configure(settings, RATE_LIMIT_PER_MINUTE=1)
    t0 = timezone.now()
    _, chain = post(agent, thread, sync, now=t0)
    with pytest.raises(errors.RateLimited):
        post(agent, thread, chain, now=t0 + timedelta(seconds=30))

    assert post(agent, thread, chain, now=t0 + timedelta(seconds=61))[0].seq == 2


def test_refused_posts_do_not_count_towards_the_rate_limit(settings, agent, thread, sync):
    configure(settings, RATE_LIMIT_PER_MINUTE=2)
    t0 = timezone.now()
    _, chain = post(agent, thread, sync, now=t0)
    for n in range(3):
        with pytest.raises(errors.ContentBlocked):
            post(agent, thread, chain, "AKIAIOSFODNN7EXAMPLE", now=t0 + timedelta(seconds=n + 1))

    assert post(agent, thread, chain, now=t0 + timedelta(seconds=5))[0].seq == 2


def test_rate_limit_counts_per_agent(settings, agent, other, thread, sync):
    configure(settings, RATE_LIMIT_PER_MINUTE=1)
    post(agent, thread, sync)

    assert post(other, thread, join(other, thread))[0].seq == 2


def test_rate_limit_zero_turns_it_off(settings, agent, thread, sync):
    configure(settings, RATE_LIMIT_PER_MINUTE=0)
    chain = sync
    for _ in range(40):
        message, chain = post(agent, thread, chain)

    assert message.seq == 40


# --- ContentBlocked ------------------------------------------------------------------

SECRETS = {
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_" + "a1B2c3D4e5" * 4,
    "gitlab_token": "glpat-" + "xY9_zW8-vU7tS6rQ5pO4",
    "openai_api_key": "sk-proj-" + "Ab3" * 12,
}


@pytest.mark.parametrize("pattern", SECRETS)
def test_content_with_a_secret_is_blocked_naming_the_pattern_not_the_secret(agent, thread, sync, pattern):
    secret = SECRETS[pattern]

    with refused(thread, errors.ContentBlocked) as info:
        post(agent, thread, sync, f"here is my config:\n{secret}\nthanks")

    assert info.value.extra["pattern"] == pattern
    assert secret not in json.dumps(info.value.as_dict())
    assert secret not in str(info.value)
    assert token_row(sync).consumed_at is None


def test_content_filter_can_be_turned_off(settings, agent, thread, sync):
    configure(settings, CONTENT_FILTER_ENABLED=False)

    message, _ = post(agent, thread, sync, SECRETS["aws_access_key_id"])

    assert message.content == SECRETS["aws_access_key_id"]


def test_text_that_only_resembles_a_secret_is_accepted(agent, thread, sync):
    message, _ = post(agent, thread, sync, "AKIA is the prefix of AWS key ids; sk- starts OpenAI keys.")

    assert message.seq == 1


# --- PayloadTooLarge and BadRequest ----------------------------------------------------


def test_content_over_max_message_chars_is_payload_too_large(settings, agent, thread, sync):
    configure(settings, MAX_MESSAGE_CHARS=10)

    with refused(thread, errors.PayloadTooLarge):
        post(agent, thread, sync, "x" * 11)


def test_content_of_exactly_max_message_chars_is_accepted(settings, agent, thread, sync):
    configure(settings, MAX_MESSAGE_CHARS=10)

    # Characters, not bytes: ten emoji are forty UTF-8 bytes.
    message, _ = post(agent, thread, sync, "\N{SLIGHTLY SMILING FACE}" * 10)

    assert len(message.content) == 10


def test_content_of_default_maximum_length_is_accepted(agent, thread, sync, settings):
    limit = settings.AGENTCHAT["MAX_MESSAGE_CHARS"]

    assert post(agent, thread, sync, "y" * limit)[0].seq == 1
    with pytest.raises(errors.PayloadTooLarge):
        post(agent, thread, join(agent, thread), "y" * (limit + 1))


def test_empty_content_is_bad_request(agent, thread, sync):
    with refused(thread, errors.BadRequest) as info:
        post(agent, thread, sync, "   ")
    assert info.value.extra["field"] == "content"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"metadata": {"visibility": "human_only"}}, "metadata.visibility"),
        ({"role": "boss"}, "role"),
        ({"priority": "high"}, "priority"),
        ({"metadata": {"stop_reason": "bored"}}, "metadata.stop_reason"),
        ({"metadata": {"mentions": "everyone"}}, "metadata.mentions"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
    ],
    ids=["visibility", "role", "priority", "stop_reason", "mentions", "metadata"],
)
def test_bad_fields_are_bad_request_naming_the_field(agent, thread, sync, fields, field):
    with refused(thread, errors.BadRequest) as info:
        post(agent, thread, sync, **fields)

    assert info.value.extra["field"] == field


@pytest.mark.parametrize("reason", sorted(services.STOP_REASONS))
def test_every_documented_stop_reason_is_accepted(agent, thread, sync, reason):
    message, _ = post(agent, thread, sync, metadata={"stop_reason": reason})

    assert message.metadata["stop_reason"] == reason


# --- human_only -----------------------------------------------------------------


def test_human_only_content_is_hidden_from_agents_but_keeps_its_seq(agent, thread, sync):
    post(agent, thread, sync, "from the agent")
    hidden = services.post_human_message(thread=thread, content="budget is 10k", author_name="Ada", human_only=True)

    as_agent = message_to_dict(hidden)
    as_human = message_to_dict(hidden, for_agent=False)

    assert hidden.seq == 2
    assert as_agent["seq"] == 2
    assert as_agent["content"] == HIDDEN_CONTENT
    assert as_agent["metadata"] == {"visibility": "human_only"}
    assert as_human["content"] == "budget is 10k"


def test_human_post_has_role_user_and_no_author(thread):
    message = services.post_human_message(thread=thread, content="hello agents", author_name="Ada")

    assert message.role == Message.Role.USER
    assert message.author is None
    assert message.author_name == "Ada"
    assert message_to_dict(message)["content"] == "hello agents"


def test_agent_cannot_post_after_a_human_without_reading_it(agent, thread, sync):
    services.post_human_message(thread=thread, content="stop", author_name="Ada")

    with pytest.raises(errors.SeqMismatch):
        post(agent, thread, sync)


# --- reply_to_msg_id -----------------------------------------------------------------


def test_reply_to_a_message_of_the_same_thread_is_stored(agent, thread, sync):
    first, chain = post(agent, thread, sync, "question")

    reply, _ = post(agent, thread, chain, "answer", reply_to_msg_id=str(first.pk))

    assert reply.reply_to_id == first.pk
    assert message_to_dict(reply)["reply_to_msg_id"] == str(first.pk)


def test_reply_to_a_message_of_another_thread_is_not_found(agent, thread, sync):
    elsewhere, elsewhere_sync = services.create_thread(agent=agent, topic="elsewhere")
    foreign, _ = post(agent, elsewhere, elsewhere_sync, "over there")

    with refused(thread, errors.NotFound) as info:
        post(agent, thread, sync, reply_to_msg_id=str(foreign.pk))

    assert info.value.extra["resource"] == "message"


@pytest.mark.parametrize("msg_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_reply_to_an_unknown_message_is_not_found(agent, thread, sync, msg_id):
    with refused(thread, errors.NotFound) as info:
        post(agent, thread, sync, reply_to_msg_id=msg_id)

    assert info.value.extra["resource"] == "message"


# --- gap-free seq --------------------------------------------------------------------


def test_seq_stays_gap_free_across_agents_humans_and_refusals(settings, agent, other, thread, sync):
    configure(settings, MAX_MESSAGE_CHARS=50)
    _, chain = post(agent, thread, sync, "a1")
    with pytest.raises(errors.PayloadTooLarge):
        post(agent, thread, chain, "x" * 51)
    with pytest.raises(errors.ContentBlocked):
        post(agent, thread, chain, SECRETS["aws_access_key_id"])
    services.post_human_message(thread=thread, content="h2", author_name="Ada")
    with pytest.raises(errors.SeqMismatch):
        post(agent, thread, chain, "a-stale")
    post(other, thread, join(other, thread), "b3")
    _, chain = post(agent, thread, join(agent, thread), "a4")
    post(agent, thread, chain, "a5")

    seqs = list(Message.objects.filter(thread=thread).order_by("seq").values_list("seq", flat=True))
    assert seqs == [1, 2, 3, 4, 5]
    assert Thread.objects.get(pk=thread.pk).last_seq == 5


def test_each_thread_numbers_its_own_messages_from_1(agent, thread, sync):
    other_thread, other_sync = services.create_thread(agent=agent, topic="second")
    post(agent, thread, sync)

    assert post(agent, other_thread, other_sync)[0].seq == 1


# --- threads: create, state, close, archive --------------------------------------------


def test_create_thread_starts_in_discuss_with_creator_and_a_token_at_seq_0(agent, thread, sync):
    assert thread.status == Thread.Status.DISCUSS
    assert thread.creator == agent
    assert thread.last_seq == 0
    assert sync.current_seq == 0
    assert token_row(sync).agent == agent


@pytest.mark.parametrize("topic", ["plan", "  plan  "])
def test_create_thread_with_a_topic_in_use_is_conflict(agent, thread, topic):
    with pytest.raises(errors.Conflict):
        services.create_thread(agent=agent, topic=topic)

    assert Thread.objects.count() == 1


def test_topic_is_free_again_once_the_thread_is_archived(agent, thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    again, _ = services.create_thread(agent=agent, topic="plan")

    assert again.pk != thread.pk
    assert again.status == Thread.Status.DISCUSS


def test_closed_thread_keeps_its_topic(agent, thread):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))

    with pytest.raises(errors.Conflict):
        services.create_thread(agent=agent, topic="plan")


@pytest.mark.parametrize("topic", ["", "   "])
def test_create_thread_with_an_empty_topic_is_bad_request(agent, topic):
    with pytest.raises(errors.BadRequest) as info:
        services.create_thread(agent=agent, topic=topic)

    assert info.value.extra["field"] == "topic"
    assert not Thread.objects.exists()


def test_create_thread_with_unknown_template_is_not_found(agent):
    with pytest.raises(errors.NotFound) as info:
        services.create_thread(agent=agent, topic="plan", template_id="nope")

    assert info.value.extra["resource"] == "template"
    assert not Thread.objects.exists()


def test_set_thread_state_moves_freely_among_the_open_states(thread):
    for state in ["implement", "review", "done", "discuss", "review"]:
        changed = services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state=state)
        assert changed.status == state
        assert Thread.objects.get(pk=thread.pk).status == state


@pytest.mark.parametrize("state", ["closed", "archived"])
def test_set_thread_state_to_closed_or_archived_is_invalid_transition(thread, state):
    with pytest.raises(errors.InvalidTransition):
        services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state=state)

    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.DISCUSS


def test_set_thread_state_to_an_unknown_state_is_bad_request(thread):
    with pytest.raises(errors.BadRequest) as info:
        services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="party")

    assert info.value.extra["field"] == "state"


def test_set_thread_state_of_unknown_thread_is_not_found():
    with pytest.raises(errors.NotFound):
        services.set_thread_state(staff_user=STAFF, thread_id=str(uuid.uuid4()), state="review")


def test_set_thread_state_reopens_a_closed_thread(thread):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))

    reopened = services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="implement")

    stored = Thread.objects.get(pk=thread.pk)
    assert reopened.status == stored.status == Thread.Status.IMPLEMENT
    assert stored.closed_at is None


def test_set_thread_state_reopens_an_archived_thread(thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="discuss")

    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.DISCUSS


def test_reopening_an_archived_thread_whose_topic_was_reused_is_conflict(agent, thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))
    services.create_thread(agent=agent, topic="plan")

    with pytest.raises(errors.Conflict):
        services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="discuss")

    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.ARCHIVED


def test_close_thread_sets_closed_at_and_summary(thread):
    moment = timezone.now()

    closed = services.close_thread(staff_user=STAFF, thread_id=str(thread.pk), summary="we agreed", now=moment)

    stored = Thread.objects.get(pk=thread.pk)
    assert closed.status == stored.status == Thread.Status.CLOSED
    assert stored.closed_at == moment
    assert stored.summary == "we agreed"


def test_closing_twice_is_harmless_and_keeps_the_first_closed_at(thread):
    first = timezone.now()
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk), now=first)

    again = services.close_thread(staff_user=STAFF, thread_id=str(thread.pk), now=first + timedelta(hours=1))

    assert again.status == Thread.Status.CLOSED
    assert Thread.objects.get(pk=thread.pk).closed_at == first


def test_archiving_twice_is_harmless(thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))
    closed_at = Thread.objects.get(pk=thread.pk).closed_at

    again = services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    assert again.status == Thread.Status.ARCHIVED
    assert closed_at is not None
    assert Thread.objects.get(pk=thread.pk).closed_at == closed_at


def test_closing_an_archived_thread_leaves_it_archived(thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))

    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.ARCHIVED


@pytest.mark.parametrize("thread_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_closing_an_unknown_thread_is_not_found(thread_id):
    with pytest.raises(errors.NotFound) as info:
        services.close_thread(staff_user=STAFF, thread_id=thread_id)

    assert info.value.extra["resource"] == "thread"


# --- selectors.list_threads ------------------------------------------------------------


def make_threads(agent, count, *, start=None):
    """Threads t0..t{count-1}, each one minute more recently active than the last."""
    start = start or timezone.now() - timedelta(hours=1)
    made = []
    for n in range(count):
        thread, _ = services.create_thread(agent=agent, topic=f"t{n}")
        Thread.objects.filter(pk=thread.pk).update(updated_at=start + timedelta(minutes=n))
        made.append(thread)
    return made


def topics(threads):
    return [t.topic for t in threads]


def test_list_threads_is_newest_activity_first(agent):
    make_threads(agent, 3)

    threads, has_more = selectors.list_threads()

    assert topics(threads) == ["t2", "t1", "t0"]
    assert has_more is False


def test_a_post_moves_a_thread_to_the_top(agent):
    oldest = make_threads(agent, 3)[0]

    post(agent, oldest, join(agent, oldest))

    assert topics(selectors.list_threads()[0]) == ["t0", "t2", "t1"]


def test_list_threads_leaves_out_archived_unless_asked_for(agent):
    made = make_threads(agent, 3)
    services.archive_thread(staff_user=STAFF, thread_id=str(made[1].pk))

    assert topics(selectors.list_threads()[0]) == ["t2", "t0"]
    assert topics(selectors.list_threads(status="archived")[0]) == ["t1"]


def test_list_threads_filters_by_status(agent):
    made = make_threads(agent, 3)
    services.close_thread(staff_user=STAFF, thread_id=str(made[0].pk))
    Thread.objects.filter(pk=made[0].pk).update(updated_at=timezone.now() - timedelta(days=1))

    assert topics(selectors.list_threads(status="closed")[0]) == ["t0"]
    assert topics(selectors.list_threads(status="discuss")[0]) == ["t2", "t1"]


def test_list_threads_pages_through_everything_once_with_the_cursor(agent):
    made = make_threads(agent, 5)
    # Two threads with the same activity time still page apart.
    Thread.objects.filter(pk=made[3].pk).update(updated_at=Thread.objects.get(pk=made[2].pk).updated_at)

    seen, cursor, pages = [], None, []
    while True:
        page, has_more = selectors.list_threads(limit=2, before=cursor)
        seen.extend(page)
        pages.append((len(page), has_more))
        if not has_more:
            break
        cursor = selectors.encode_cursor(page[-1])

    assert pages == [(2, True), (2, True), (1, False)]
    assert sorted(topics(seen)) == ["t0", "t1", "t2", "t3", "t4"]
    assert len({t.pk for t in seen}) == 5


def test_list_threads_has_more_is_false_on_an_exact_last_page(agent):
    make_threads(agent, 2)

    page, has_more = selectors.list_threads(limit=2)

    assert len(page) == 2
    assert has_more is False


@pytest.mark.parametrize("cursor", ["garbage!", "", "bm90IGpzb24", "WyJub3QgYSBkYXRlIiwgIngiXQ"])
def test_list_threads_with_a_bad_cursor_is_bad_request(cursor):
    with pytest.raises(errors.BadRequest) as info:
        selectors.list_threads(before=cursor)

    assert info.value.extra["field"] == "before"


# --- bus_connect -------------------------------------------------------------------------


def test_bus_connect_registers_an_agent_and_creates_the_thread_by_name():
    connection = services.bus_connect(agent=None, thread_name="release", ide="Cursor", model="Sonnet")

    assert connection.token is not None
    assert agent_services.authenticate(agent_id=str(connection.agent.pk), token=connection.token) == connection.agent
    assert connection.agent.name == "Cursor (Sonnet)"
    assert connection.created is True
    assert connection.is_administrator is True
    assert connection.thread.topic == "release"
    assert connection.thread.creator == connection.agent
    assert connection.messages == []
    assert connection.truncated is False
    assert connection.sync.current_seq == 0


def test_bus_connect_resumes_an_agent_into_an_existing_thread(make_agent, agent, thread):
    services.post_human_message(thread=thread, content="hello", author_name="Ada")
    newcomer, token = make_agent(model="Gemini")

    connection = services.bus_connect(agent=None, thread_name="plan", agent_id=str(newcomer.pk), token=token)

    assert connection.agent == newcomer
    assert connection.token is None
    assert connection.thread.pk == thread.pk
    assert connection.created is False
    assert connection.is_administrator is False
    assert [m.content for m in connection.messages] == ["hello"]
    assert connection.sync.current_seq == 1


def test_bus_connect_by_thread_id_marks_the_creator_as_administrator(agent, thread):
    connection = services.bus_connect(agent=agent, thread_id=str(thread.pk))

    assert connection.is_administrator is True
    assert connection.created is False


def test_bus_connect_token_posts_at_the_current_seq(agent, thread):
    services.post_human_message(thread=thread, content="hello", author_name="Ada")

    connection = services.bus_connect(agent=agent, thread_id=str(thread.pk))

    assert post(agent, thread, connection.sync)[0].seq == 2


def test_bus_connect_returns_the_newest_50_unseen_messages_and_says_it_truncated(agent, thread):
    for n in range(1, 56):
        services.post_human_message(thread=thread, content=f"m{n}", author_name="Ada")

    everything = services.bus_connect(agent=agent, thread_id=str(thread.pk))
    almost = services.bus_connect(agent=agent, thread_id=str(thread.pk), after_seq=4)
    recent = services.bus_connect(agent=agent, thread_id=str(thread.pk), after_seq=5)

    assert [m.seq for m in everything.messages] == list(range(6, 56))
    assert everything.truncated is True
    assert everything.sync.current_seq == 55
    assert [m.seq for m in almost.messages] == list(range(6, 56))
    assert almost.truncated is True
    assert [m.seq for m in recent.messages] == list(range(6, 56))
    assert recent.truncated is False


def test_bus_connect_system_prompt_is_bus_guidance_then_the_threads_prompt(agent):
    thread, _ = services.create_thread(agent=agent, topic="guided", system_prompt="Be brief.")

    connection = services.bus_connect(agent=agent, thread_id=str(thread.pk))

    assert connection.system_prompt.startswith(services.BUS_GUIDANCE)
    assert connection.system_prompt.endswith("Be brief.")


def test_bus_connect_by_the_name_of_an_archived_thread_creates_a_new_one(agent, thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    connection = services.bus_connect(agent=agent, thread_name="plan")

    assert connection.created is True
    assert connection.thread.pk != thread.pk


def test_bus_connect_with_wrong_credentials_is_invalid_credentials(agent):
    with pytest.raises(errors.InvalidCredentials):
        services.bus_connect(agent=None, thread_name="plan", agent_id=str(agent.pk), token="wrong")

    assert not Thread.objects.exists()


def test_bus_connect_without_thread_is_bad_request():
    with pytest.raises(errors.BadRequest):
        services.bus_connect(agent=None, ide="Cursor", model="Sonnet")


def test_bus_connect_without_identity_on_an_anonymous_socket_is_bad_request():
    with pytest.raises(errors.BadRequest):
        services.bus_connect(agent=None, thread_name="plan")

    assert not Thread.objects.exists()


def test_bus_connect_to_unknown_thread_id_is_not_found(agent):
    with pytest.raises(errors.NotFound) as info:
        services.bus_connect(agent=agent, thread_id=str(uuid.uuid4()))

    assert info.value.extra["resource"] == "thread"


# --- read_for_wait -------------------------------------------------------------------


def chain_posts(agent, thread, sync, metadatas):
    for metadata in metadatas:
        _, sync = post(agent, thread, sync, metadata=metadata)
    return sync


def test_read_for_wait_with_nothing_new_reads_up_to_the_last_seq(agent, thread, sync):
    chain_posts(agent, thread, sync, [{}, {}])

    found = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=2, limit=10)

    assert found.messages == []
    assert found.has_more is False
    assert found.read_seq == 2


def test_read_for_wait_returns_the_oldest_limit_and_reads_only_up_to_them(agent, thread, sync):
    chain_posts(agent, thread, sync, [{}] * 5)

    first = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=2)
    rest = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=first.read_seq, limit=10)

    assert [m.seq for m in first.messages] == [1, 2]
    assert first.has_more is True
    assert first.read_seq == 2
    assert [m.seq for m in rest.messages] == [3, 4, 5]
    assert rest.has_more is False
    assert rest.read_seq == 5


def test_read_seq_of_a_partial_read_refuses_a_post_until_the_rest_is_read(agent, thread, sync):
    chain_posts(agent, thread, sync, [{}] * 3)
    partial = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=1)
    context = services.finish_wait(agent=agent, thread_id=str(thread.pk), read_seq=partial.read_seq)

    with pytest.raises(errors.SeqMismatch):
        post(agent, thread, context)


def test_read_for_wait_for_agent_returns_only_mentions_and_handoffs(agent, other, thread, sync):
    me, them = str(other.pk), str(agent.pk)
    chain_posts(
        agent,
        thread,
        sync,
        [{}, {"mentions": [me]}, {"handoff_target": me}, {"mentions": [them]}, {"mentions": [them, me]}, {}],
    )

    found = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=10, for_agent=me)

    assert [m.seq for m in found.messages] == [2, 3, 5]
    assert found.has_more is False
    assert found.read_seq == 6


def test_read_for_wait_for_agent_with_more_matches_than_the_limit(agent, other, thread, sync):
    me = str(other.pk)
    chain_posts(agent, thread, sync, [{"mentions": [me]}, {}, {"handoff_target": me}, {"mentions": [me]}])

    found = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=2, for_agent=me)

    assert [m.seq for m in found.messages] == [1, 3]
    assert found.has_more is True
    assert found.read_seq == 3


def test_read_for_wait_for_agent_with_no_match_reads_everything(agent, other, thread, sync):
    chain_posts(agent, thread, sync, [{}, {"mentions": [str(agent.pk)]}])

    found = selectors.read_for_wait(thread_id=str(thread.pk), after_seq=0, limit=10, for_agent=str(other.pk))

    assert found.messages == []
    assert found.has_more is False
    assert found.read_seq == 2


@pytest.mark.parametrize("thread_id", [str(uuid.uuid4()), "not-a-uuid", "12"])
def test_read_for_wait_on_unknown_or_malformed_thread_is_not_found(thread_id):
    with pytest.raises(errors.NotFound) as info:
        selectors.read_for_wait(thread_id=thread_id, after_seq=0, limit=10)

    assert info.value.extra["resource"] == "thread"


def test_finish_wait_voids_older_tokens_of_that_agent_only(agent, other, thread, sync):
    other_sync = join(other, thread)

    fresh = services.finish_wait(agent=agent, thread_id=str(thread.pk), read_seq=0)

    assert token_row(sync).voided_at is not None
    assert token_row(fresh).voided_at is None
    assert token_row(other_sync).voided_at is None
    assert fresh.current_seq == 0
