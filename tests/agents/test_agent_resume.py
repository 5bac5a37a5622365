"""Sockets and credentials: anonymous sockets may do nothing but bind; agent_resume binds with a token."""

import pytest

from tests.support.wire import (
    AGENT_KEYS,
    UNKNOWN_ID,
    registered,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "op",
    [
        "agent_heartbeat",
        "agent_update",
        "agent_unregister",
        "agent_list",
        "agent_set_typing",
        "thread_create",
        "thread_list",
        "thread_get",
        "thread_set_state",
        "thread_close",
        "thread_archive",
        "msg_post",
        "msg_list",
        "msg_get",
        "msg_wait",
    ],
)
async def test_op_on_anonymous_socket_is_unauthenticated(connect, op):
    client = await connect()
    error = await client.error(op, {})
    assert error["code"] == "Unauthenticated"
    assert error["message"]


async def test_agent_resume_binds_a_new_socket_without_returning_the_token(connect):
    _, first = await registered(connect)
    other = await connect()
    result = await other.call("agent_resume", {"agent_id": first["agent_id"], "token": first["token"]})
    assert set(result) == {"agent"}
    assert set(result["agent"]) == AGENT_KEYS
    assert result["agent"]["agent_id"] == first["agent_id"]
    assert result["agent"]["is_online"] is True
    updated = await other.call("agent_update", {"display_name": "resumed"})
    assert updated["agent"]["agent_id"] == first["agent_id"]


async def test_agent_resume_with_wrong_token_is_invalid_credentials(connect):
    _, first = await registered(connect)
    other = await connect()
    error = await other.error("agent_resume", {"agent_id": first["agent_id"], "token": "not-the-token"})
    assert error["code"] == "InvalidCredentials"
    assert "not-the-token" not in error["message"]
    assert (await other.error("agent_list"))["code"] == "Unauthenticated"


@pytest.mark.parametrize("agent_id", [UNKNOWN_ID, "not-a-uuid"])
async def test_agent_resume_of_unknown_agent_is_invalid_credentials(connect, agent_id):
    client = await connect()
    error = await client.error("agent_resume", {"agent_id": agent_id, "token": "whatever"})
    assert error["code"] == "InvalidCredentials"


@pytest.mark.parametrize(
    "args, field",
    [
        ({"token": "t"}, "agent_id"),
        ({"agent_id": UNKNOWN_ID}, "token"),
        ({"agent_id": UNKNOWN_ID, "token": 1}, "token"),
    ],
)
async def test_agent_resume_with_missing_or_mistyped_arg_is_bad_request(connect, args, field):
    client = await connect()
    error = await client.error("agent_resume", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field
