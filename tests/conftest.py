from datetime import timedelta

import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent
from tests.support.wire import InProcessSocket, WireClient


@pytest.fixture(scope="session", autouse=True)
def system_checks_pass(django_db_blocker):
    """Refuse to run the suite when a system check fails, as Django's runner does."""
    with django_db_blocker.unblock():
        try:
            call_command("check", fail_level="ERROR", verbosity=0)
        except Exception as exc:  # SystemCheckError
            pytest.exit(f"System checks failed:\n{exc}", returncode=3)


@pytest.fixture(scope="session", autouse=True)
def close_async_connections(django_db_setup):
    """Close the connection kept by the thread that runs async ORM calls.

    database_sync_to_async runs every ORM call on one worker thread, whose
    connection persists (CONN_MAX_AGE) and would keep the test database from
    being dropped at the end of the run.
    """
    yield
    executor = SyncToAsync.single_thread_executor
    executor.submit(connections.close_all).result(timeout=10)


def forget_heartbeat_writes() -> None:
    """Make this process forget every heartbeat write it remembers (as a fresh process would).

    The only place the tests touch the heartbeat write-coalescing cache, which
    agents.services keeps private for now.
    """
    agent_services.heartbeat_writes.clear()


@pytest.fixture(autouse=True)
def fresh_heartbeat_cache():
    """Each test starts with no heartbeat writes remembered by this process."""
    forget_heartbeat_writes()
    yield
    forget_heartbeat_writes()


@pytest.fixture
def as_a_fresh_process():
    """A function that makes this process forget the heartbeat writes it made, as another process would."""
    return forget_heartbeat_writes


@pytest.fixture
def make_heartbeat_old():
    """An async function: make an agent's stored heartbeat `seconds` old, as if it had been silent that long.

    This process must then not believe it stored one a moment ago either.
    """

    async def make_old(agent_id: str, seconds: int) -> None:
        def update() -> None:
            Agent.objects.filter(pk=agent_id).update(last_heartbeat=timezone.now() - timedelta(seconds=seconds))

        await database_sync_to_async(update)()
        forget_heartbeat_writes()

    return make_old


@pytest.fixture
def agentchat_settings(settings):
    """A function that overrides keys of settings.AGENTCHAT for this test: agentchat_settings(RATE_LIMIT_PER_MINUTE=0).

    settings.AGENTCHAT is one dict; pytest-django's `settings` restores it after the test.
    """

    def override(**changes) -> None:
        settings.AGENTCHAT = {**settings.AGENTCHAT, **changes}

    return override


@pytest.fixture
def make_agent():
    def make(ide: str = "VS Code", model: str = "GPT", **kwargs):
        return agent_services.register_agent(ide=ide, model=model, **kwargs)

    return make


@pytest.fixture
async def connect():
    """Open in-process WebSocket clients on the real ASGI application."""
    from agentchat.asgi import application

    clients: list[WireClient] = []

    async def open_client(*, headers: list | None = None) -> WireClient:
        communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers or [])
        connected, _ = await communicator.connect()
        assert connected
        client = WireClient(InProcessSocket(communicator))
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()
