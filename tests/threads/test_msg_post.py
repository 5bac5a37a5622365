"""msg_post on the domain layer (threads.services.post_message): what a post stores and returns,
its fields, client_msg_id retries, replies, human-only messages and gap-free seqs.

The sync rules: test_msg_post_sync_rules.py; rate limit, secrets and size: test_msg_post_limits.py;
the reply and one case per error code over the wire: test_msg_post_over_the_wire.py.
Every refusal is also checked to change nothing (tests.support.domain.refused).
"""

import uuid

import pytest

from agentchat import errors
from tests.support.domain import SECRETS, join, post, refused, token_state
from threads import services
from threads.models import Message, Thread
from threads.serializers import HIDDEN_CONTENT, message_to_dict

pytestmark = pytest.mark.django_db


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

    assert token_state(sync).used


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


@pytest.mark.parametrize("missing", ["expected_last_seq", "reply_token"])
def test_post_without_a_sync_field_is_missing_sync_fields(agent, thread, sync, missing):
    with refused(thread, errors.MissingSyncFields) as info:
        post(agent, thread, sync, **{missing: None})
    assert info.value.code == "MissingSyncFields"


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

    assert not token_state(chain).voided
    assert post(agent, thread, chain)[0].seq == 2


def test_same_client_msg_id_from_another_agent_is_a_new_message(agent, other, thread, sync):
    first, _ = post(agent, thread, sync, client_msg_id="c-1")

    theirs, _ = post(other, thread, join(other, thread), client_msg_id="c-1")

    assert theirs.pk != first.pk
    assert theirs.seq == 2


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


def test_seq_stays_gap_free_across_agents_humans_and_refusals(agentchat_settings, agent, other, thread, sync):
    agentchat_settings(MAX_MESSAGE_CHARS=50)
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
