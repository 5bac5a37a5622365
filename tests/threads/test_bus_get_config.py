"""bus_get_config over the wire."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


async def test_bus_get_config_works_anonymously_and_reports_the_settings(connect, agentchat_settings):
    agentchat_settings(
        HEARTBEAT_INTERVAL=11,
        AGENT_HEARTBEAT_TIMEOUT=33,
        MSG_WAIT_TIMEOUT_MS=1234,
        SEQ_TOLERANCE=2,
        RATE_LIMIT_PER_MINUTE=9,
        MAX_MESSAGE_CHARS=500,
    )
    client = await connect()
    assert await client.call("bus_get_config") == {
        "version": 1,
        "heartbeat_interval": 11,
        "heartbeat_timeout": 33,
        "msg_wait_timeout_ms": 1234,
        "seq_tolerance": 2,
        "rate_limit_per_minute": 9,
        "max_message_chars": 500,
    }
    # It does not bind the socket.
    assert (await client.error("agent_list"))["code"] == "Unauthenticated"
