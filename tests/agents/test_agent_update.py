"""agent_update and agent_unregister over the wire."""

import pytest

from tests.support.wire import (
    AGENT_KEYS,
    registered,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_agent_update_changes_only_the_given_fields(connect):
    client = await connect()
    await client.call(
        "agent_register", {"ide": "VS Code", "model": "GPT", "display_name": "Old", "description": "keep me"}
    )
    result = await client.call("agent_update", {"display_name": "New", "capabilities": ["sql"]})
    assert set(result) == {"agent"}
    agent = result["agent"]
    assert set(agent) == AGENT_KEYS
    assert (agent["display_name"], agent["description"], agent["capabilities"]) == ("New", "keep me", ["sql"])
    listed = (await client.call("agent_list"))["agents"][0]
    assert (listed["display_name"], listed["capabilities"]) == ("New", ["sql"])


@pytest.mark.parametrize(
    "args, field",
    [
        ({"display_name": 1}, "display_name"),
        ({"description": []}, "description"),
        ({"capabilities": "x"}, "capabilities"),
    ],
)
async def test_agent_update_with_mistyped_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("agent_update", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


async def test_agent_unregister_unbinds_voids_the_token_and_hides_the_agent(connect):
    client, me = await registered(connect)
    observer, _ = await registered(connect, model="Claude")
    assert await client.call("agent_unregister") == {"ok": True}
    assert (await client.error("agent_list"))["code"] == "Unauthenticated"
    other = await connect()
    error = await other.error("agent_resume", {"agent_id": me["agent_id"], "token": me["token"]})
    assert error["code"] == "InvalidCredentials"
    ids = [a["agent_id"] for a in (await observer.call("agent_list"))["agents"]]
    assert me["agent_id"] not in ids
