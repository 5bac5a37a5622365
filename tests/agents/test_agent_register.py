"""agent_register over the wire: the reply, numbered names, a bound socket, bad arguments."""

import pytest

from tests.support.wire import (
    AGENT_KEYS,
    registered,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_agent_register_returns_id_token_name_and_agent(connect):
    client = await connect()
    result = await client.call(
        "agent_register",
        {
            "ide": "VS Code",
            "model": "GPT",
            "display_name": "Planner",
            "description": "plans things",
            "capabilities": ["python", "review"],
        },
    )
    assert set(result) == {"agent_id", "token", "name", "agent"}
    assert isinstance(result["token"], str) and result["token"]
    assert result["name"] == "VS Code (GPT)"
    agent = result["agent"]
    assert set(agent) == AGENT_KEYS
    assert agent["agent_id"] == result["agent_id"]
    assert agent["display_name"] == "Planner"
    assert agent["description"] == "plans things"
    assert agent["capabilities"] == ["python", "review"]
    assert agent["is_online"] is True  # registering counts as a heartbeat
    assert "token" not in agent


async def test_agent_register_numbers_names_of_same_ide_and_model(connect):
    _, first = await registered(connect)
    _, second = await registered(connect)
    _, third = await registered(connect)
    assert [first["name"], second["name"], third["name"]] == ["VS Code (GPT)", "VS Code (GPT) 2", "VS Code (GPT) 3"]


async def test_agent_register_binds_the_socket(connect):
    client, _ = await registered(connect)
    result = await client.call("agent_list")
    assert len(result["agents"]) == 1


@pytest.mark.parametrize(
    "args, field",
    [
        ({"model": "GPT"}, "ide"),
        ({"ide": "VS Code"}, "model"),
        ({"ide": 3, "model": "GPT"}, "ide"),
        ({"ide": "VS Code", "model": ["GPT"]}, "model"),
        ({"ide": "  ", "model": "GPT"}, "ide"),
        ({"ide": "VS Code", "model": "GPT", "capabilities": "python"}, "capabilities"),
        ({"ide": "VS Code", "model": "GPT", "capabilities": [1, 2]}, "capabilities"),
        ({"ide": "VS Code", "model": "GPT", "display_name": 5}, "display_name"),
    ],
)
async def test_agent_register_with_missing_or_mistyped_arg_is_bad_request_naming_it(connect, args, field):
    client = await connect()
    error = await client.error("agent_register", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field


async def test_agent_register_again_rebinds_the_socket(connect):
    client, first = await registered(connect)
    second = await client.call("agent_register", {"ide": "Cursor", "model": "Claude"})
    result = await client.call("agent_update", {"description": "second"})
    assert result["agent"]["agent_id"] == second["agent_id"] != first["agent_id"]
