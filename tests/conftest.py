import asyncio
import json
import os
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.db import connection, connections

from agents import services as agent_services


def uses_postgres() -> bool:
    return connection.vendor == "postgresql"


def uses_redis() -> bool:
    return bool(os.environ.get("REDIS_URL"))


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


@pytest.fixture(autouse=True)
def fresh_heartbeat_cache():
    """Each test starts with no heartbeat writes remembered by this process."""
    agent_services.heartbeat_writes.clear()
    yield
    agent_services.heartbeat_writes.clear()


@pytest.fixture
def make_agent():
    def make(ide: str = "VS Code", model: str = "GPT", **kwargs):
        return agent_services.register_agent(ide=ide, model=model, **kwargs)

    return make


class Client:
    """A test agent on an in-process WebSocket: send requests, collect replies by id."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.replies: dict[Any, dict] = {}
        self._next = 0

    async def send(self, op: str, args: dict | None = None, *, id: Any = None) -> Any:
        if id is None:
            self._next += 1
            id = f"r{self._next}"
        frame = {"id": id, "op": op}
        if args is not None:
            frame["args"] = args
        await self.communicator.send_to(text_data=json.dumps(frame))
        return id

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def next_reply(self, timeout: float = 5) -> dict:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def reply(self, id: Any, timeout: float = 5) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while id not in self.replies:
            reply = await self.next_reply(timeout=max(0.01, deadline - loop.time()))
            self.replies[reply["id"]] = reply
        return self.replies.pop(id)

    async def call(self, op: str, args: dict | None = None, timeout: float = 5) -> dict:
        """Send a request and return its result; fail the test on an error reply."""
        reply = await self.reply(await self.send(op, args), timeout=timeout)
        assert reply["ok"], reply
        return reply["result"]

    async def error(self, op: str, args: dict | None = None, timeout: float = 5) -> dict:
        """Send a request that must fail and return its error."""
        reply = await self.reply(await self.send(op, args), timeout=timeout)
        assert not reply["ok"], reply
        return reply["error"]

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def connect():
    """Open in-process WebSocket clients on the real ASGI application."""
    from agentchat.asgi import application

    clients: list[Client] = []

    async def open_client(*, headers: list | None = None) -> Client:
        communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers or [])
        connected, _ = await communicator.connect()
        assert connected
        client = Client(communicator)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


async def registered(connect, ide: str = "VS Code", model: str = "GPT") -> tuple[Client, dict]:
    client = await connect()
    result = await client.call("agent_register", {"ide": ide, "model": model})
    return client, result
