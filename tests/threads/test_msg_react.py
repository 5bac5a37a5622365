"""msg_react, msg_unreact and the reactions of msg_get: on the domain layer, then over the wire."""

import pytest

from agentchat import errors
from tests.support.domain import STAFF
from tests.support.wire import registered
from tests.threads.toolbox import UNKNOWN_ID, post_as, refused
from threads import selectors, services
from threads.models import Reaction

domain = pytest.mark.django_db


@pytest.fixture
def message(agent, thread):
    return post_as(agent, thread, "ship it?")


def react(agent, message, reaction="+1"):
    return services.react(agent=agent, msg_id=str(message.pk), reaction=reaction)


@domain
def test_react_stores_one_reaction_and_reacting_again_is_harmless(agent, message):
    first, created = react(agent, message)
    again, created_again = react(agent, message)
    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
    assert Reaction.objects.count() == 1


@domain
def test_reactions_are_per_agent_and_per_string_and_listed_oldest_first(agent, other, message):
    react(agent, message, "+1")
    react(other, message, "+1")
    react(agent, message, "needs tests")
    _, reactions = selectors.message_with_reactions(msg_id=str(message.pk))
    assert [(r.agent_id, r.reaction) for r in reactions] == [
        (agent.pk, "+1"),
        (other.pk, "+1"),
        (agent.pk, "needs tests"),
    ]


@domain
def test_reaction_is_stripped(agent, message):
    reaction, _ = react(agent, message, "  eyes \n")
    assert reaction.reaction == "eyes"


@domain
def test_unreact_removes_and_unreacting_again_is_harmless(agent, other, message):
    react(agent, message)
    react(other, message)
    assert services.unreact(agent=agent, msg_id=str(message.pk), reaction="+1") is True
    assert services.unreact(agent=agent, msg_id=str(message.pk), reaction="+1") is False
    assert list(Reaction.objects.values_list("agent_id", flat=True)) == [other.pk]


@domain
@pytest.mark.parametrize("reaction", ["", "   ", "a\x07b", "x" * (services.MAX_REACTION_CHARS + 1)])
def test_bad_reaction_strings_are_bad_request(agent, message, reaction):
    with refused(errors.BadRequest) as info:
        react(agent, message, reaction)
    assert info.value.extra["field"] == "reaction"


@domain
def test_a_reaction_of_the_longest_length_is_accepted(agent, message):
    reaction, _ = react(agent, message, "x" * services.MAX_REACTION_CHARS)
    assert len(reaction.reaction) == services.MAX_REACTION_CHARS


@domain
def test_a_reaction_that_looks_like_a_secret_is_content_blocked(agent, message):
    with refused(errors.ContentBlocked):
        react(agent, message, "AKIA" + "ABCDEFGHIJKLMNOP")


@domain
def test_a_message_holds_at_most_the_bounded_number_of_reactions(agent, message, monkeypatch):
    monkeypatch.setattr("threads.services.reactions.MAX_REACTIONS_PER_MESSAGE", 3)
    for n in range(3):
        react(agent, message, f"r{n}")
    with refused(errors.Conflict):
        react(agent, message, "one too many")
    # An existing reaction is still returned as is, and removing one makes room.
    assert react(agent, message, "r0")[1] is False
    services.unreact(agent=agent, msg_id=str(message.pk), reaction="r0")
    assert react(agent, message, "room again")[1] is True


@domain
@pytest.mark.parametrize("msg_id", [UNKNOWN_ID, "nope"])
def test_unknown_message_is_not_found_both_ways(agent, message, msg_id):
    with refused(errors.NotFound):
        services.react(agent=agent, msg_id=msg_id, reaction="+1")
    with refused(errors.NotFound):
        services.unreact(agent=agent, msg_id=msg_id, reaction="+1")


@domain
def test_closed_thread_refuses_reactions_both_ways(agent, thread, message):
    react(agent, message)
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))
    with refused(errors.ThreadClosed):
        react(agent, message, "late")
    with refused(errors.ThreadClosed):
        services.unreact(agent=agent, msg_id=str(message.pk), reaction="+1")


# --- over the wire --------------------------------------------------------------------------


async def first_message(client) -> str:
    created = await client.call("thread_create", {"topic": "wire"})
    posted = await client.call(
        "msg_post",
        {
            "thread_id": created["thread"]["thread_id"],
            "content": "ship it?",
            "expected_last_seq": created["current_seq"],
            "reply_token": created["reply_token"],
        },
    )
    return posted["message"]["msg_id"]


@pytest.mark.django_db(transaction=True)
async def test_react_unreact_and_msg_get_round_trip(connect):
    client, me = await registered(connect)
    msg_id = await first_message(client)
    assert (await client.call("msg_get", {"msg_id": msg_id}))["reactions"] == []

    result = await client.call("msg_react", {"msg_id": msg_id, "reaction": "+1"})
    assert result["created"] is True
    assert set(result["reaction"]) == {"reaction", "agent_id", "agent_name", "created_at"}
    assert (result["reaction"]["reaction"], result["reaction"]["agent_id"]) == ("+1", me["agent_id"])
    assert (await client.call("msg_react", {"msg_id": msg_id, "reaction": "+1"}))["created"] is False

    got = await client.call("msg_get", {"msg_id": msg_id})
    assert [(r["reaction"], r["agent_id"], r["agent_name"]) for r in got["reactions"]] == [
        ("+1", me["agent_id"], me["name"])
    ]

    assert await client.call("msg_unreact", {"msg_id": msg_id, "reaction": "+1"}) == {"removed": True}
    assert await client.call("msg_unreact", {"msg_id": msg_id, "reaction": "+1"}) == {"removed": False}
    assert (await client.call("msg_get", {"msg_id": msg_id}))["reactions"] == []


@pytest.mark.django_db(transaction=True)
async def test_react_errors_over_the_wire(connect, monkeypatch):
    client, _ = await registered(connect)
    msg_id = await first_message(client)
    too_long = "x" * (services.MAX_REACTION_CHARS + 1)
    for op in ("msg_react", "msg_unreact"):
        for args, code, field in [
            ({"msg_id": msg_id}, "BadRequest", "reaction"),
            ({"reaction": "+1"}, "BadRequest", "msg_id"),
            ({"msg_id": msg_id, "reaction": 1}, "BadRequest", "reaction"),
            ({"msg_id": msg_id, "reaction": too_long}, "BadRequest", "reaction"),
            ({"msg_id": msg_id, "reaction": " "}, "BadRequest", "reaction"),
            ({"msg_id": UNKNOWN_ID, "reaction": "+1"}, "NotFound", None),
        ]:
            error = await client.error(op, args)
            assert error["code"] == code, (op, args, error)
            if field:
                assert error["field"] == field
    error = await client.error("msg_react", {"msg_id": msg_id, "reaction": "AKIA" + "ABCDEFGHIJKLMNOP"})
    assert error["code"] == "ContentBlocked"

    monkeypatch.setattr("threads.services.reactions.MAX_REACTIONS_PER_MESSAGE", 1)
    await client.call("msg_react", {"msg_id": msg_id, "reaction": "only one"})
    assert (await client.error("msg_react", {"msg_id": msg_id, "reaction": "two"}))["code"] == "Conflict"

    thread_id = (await client.call("msg_get", {"msg_id": msg_id}))["message"]["thread_id"]
    await client.call("thread_close", {"thread_id": thread_id})
    for op in ("msg_react", "msg_unreact"):
        assert (await client.error(op, {"msg_id": msg_id, "reaction": "only one"}))["code"] == "ThreadClosed"

    got = await client.call("msg_get", {"msg_id": msg_id})
    assert [r["reaction"] for r in got["reactions"]] == ["only one"]

    anonymous = await connect()
    assert (await anonymous.error("msg_react", {"msg_id": msg_id, "reaction": "+1"}))["code"] == "Unauthenticated"
