"""msg_post's sync rules on the domain layer (PROTOCOL.md, "msg_post and the sync rules"):
reply tokens (invalid, replayed, expired), SeqMismatch and the tolerance, closed threads.
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agentchat import errors
from tests.support.domain import STAFF, join, post, refused, token_state
from threads import services
from threads.models import Message, Thread
from threads.serializers import HIDDEN_CONTENT

pytestmark = pytest.mark.django_db


def test_unknown_token_is_invalid(agent, thread, sync):
    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, sync, reply_token="not-a-token-we-issued")


def test_token_of_another_thread_is_invalid(agent, thread, sync):
    _, elsewhere = services.create_thread(agent=agent, topic="elsewhere")

    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, sync, reply_token=elsewhere.reply_token)
    assert not token_state(elsewhere).used


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


def test_consumed_token_is_a_replay(agent, thread, sync):
    post(agent, thread, sync, "first")

    with refused(thread, errors.ReplyTokenReplay):
        post(agent, thread, sync, "again", expected_last_seq=1)


def test_token_past_its_lease_is_expired_and_stays_unconsumed(agent, thread, sync):
    with refused(thread, errors.ReplyTokenExpired):
        post(agent, thread, sync, now=sync.expires_at)
    assert not token_state(sync).used


def test_token_just_inside_its_lease_posts(agent, thread, sync):
    message, _ = post(agent, thread, sync, now=sync.expires_at - timedelta(seconds=1))

    assert message.seq == 1


def test_lease_follows_reply_token_lease_seconds(agentchat_settings, agent, thread):
    agentchat_settings(REPLY_TOKEN_LEASE_SECONDS=10)
    issued = timezone.now()
    sync = services.issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=0, now=issued)

    assert sync.expires_at == issued + timedelta(seconds=10)
    with refused(thread, errors.ReplyTokenExpired):
        post(agent, thread, sync, now=issued + timedelta(seconds=11))


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

    assert token_state(sync).voided
    assert token_state(second).voided
    assert not token_state(elsewhere).voided
    assert not token_state(other_chain).voided
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


def test_seq_tolerance_accepts_a_post_that_is_slightly_behind(agentchat_settings, agent, other, thread, sync):
    agentchat_settings(SEQ_TOLERANCE=1)
    post(other, thread, join(other, thread), "news")

    message, chain = post(agent, thread, sync, "one behind")

    assert message.seq == 2
    assert chain.current_seq == 2
    assert chain.max_new_messages == 1
    # Every sync context tells the tolerance, bus_connect's too.
    assert services.bus_connect(agent=other, thread_id=str(thread.pk)).sync.max_new_messages == 1


def test_seq_tolerance_still_refuses_a_post_further_behind(agentchat_settings, agent, other, thread, sync):
    agentchat_settings(SEQ_TOLERANCE=1)
    _, other_chain = post(other, thread, join(other, thread), "b1")
    post(other, thread, other_chain, "b2")

    with pytest.raises(errors.SeqMismatch) as info:
        post(agent, thread, sync)
    assert info.value.extra["current_seq"] == 2


@pytest.mark.parametrize("close", [services.close_thread, services.archive_thread], ids=["closed", "archived"])
def test_post_to_closed_or_archived_thread_is_thread_closed(agent, thread, sync, close):
    close(staff_user=STAFF, thread_id=str(thread.pk))

    # The bus announced the change (seq 1); an agent that read it is refused by the thread's state.
    with refused(thread, errors.ThreadClosed):
        post(agent, thread, sync, expected_last_seq=1)


def test_token_refused_by_a_closed_thread_posts_once_it_reopens(agent, thread, sync):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))
    with pytest.raises(errors.ThreadClosed):
        post(agent, thread, sync, expected_last_seq=1)

    services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="discuss")

    # Not consumed: having read both announcements (seq 1 and 2), the agent posts with it.
    assert post(agent, thread, sync, expected_last_seq=2)[0].seq == 3


def test_status_changes_are_announced_in_the_thread_by_the_bus(agent, thread, sync):
    services.close_thread(agent=agent, thread_id=str(thread.pk), summary="done for now")
    services.close_thread(agent=agent, thread_id=str(thread.pk))  # again: nothing changes, nothing announced
    services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="review")
    services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="review")  # unchanged
    services.archive_thread(agent=agent, thread_id=str(thread.pk))

    announcements = list(Message.objects.filter(thread=thread).order_by("seq"))
    assert [(m.seq, m.role, m.priority, m.author_id, m.author_name) for m in announcements] == [
        (1, "system", "system", None, services.BUS_AUTHOR),
        (2, "system", "system", None, services.BUS_AUTHOR),
        (3, "system", "system", None, services.BUS_AUTHOR),
    ]
    assert [m.metadata for m in announcements] == [
        {"event": "status_changed", "status": "closed", "previous_status": "discuss"},
        {"event": "status_changed", "status": "review", "previous_status": "closed"},
        {"event": "status_changed", "status": "archived", "previous_status": "review"},
    ]
    assert announcements[0].content == f"The thread is now closed (was discuss), by {agent.name}. Summary: done for now"
    assert "by staff" in announcements[1].content


def test_token_is_checked_before_the_thread_state(agent, thread):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))
    context = join(agent, thread)

    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, context, reply_token="bogus")


def test_human_post_to_closed_thread_is_thread_closed(thread):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))

    with refused(thread, errors.ThreadClosed):
        services.post_human_message(thread=thread, content="hi", author_name="Ada")


# --- signed tokens ------------------------------------------------------------------------


def test_a_tampered_token_is_invalid(agent, thread, sync):
    token = sync.reply_token
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]

    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, sync, reply_token=tampered)


def test_a_token_signed_under_another_secret_key_is_invalid_unless_that_key_is_a_fallback(
    agent, thread, sync, settings
):
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40

    with refused(thread, errors.ReplyTokenInvalid):
        post(agent, thread, sync)

    settings.SECRET_KEY_FALLBACKS = [old_key]
    message, _ = post(agent, thread, sync)
    assert message.seq == 1


def test_issuing_tokens_costs_no_statement(agent, thread, django_assert_num_queries):
    with django_assert_num_queries(0):
        contexts = services.issue_reply_tokens([(thread.pk, agent.pk, 0)] * 1000)
    assert len({c.reply_token for c in contexts}) == 1000
    assert [c.serial for c in contexts] == sorted({c.serial for c in contexts})  # increasing, no two alike
