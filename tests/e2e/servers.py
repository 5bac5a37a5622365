"""Real daphne processes and a real WebSocket client for end-to-end tests."""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import websockets
from django.db import connection

from agentchat.bench import free_port, wait_for_port

BASE_DIR = Path(__file__).resolve().parents[2]


def current_database_url() -> str:
    """A DATABASE_URL for the database the test run is using right now."""
    conf = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{conf['NAME']}"
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf.get("PASSWORD") else "")
    return f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"


@contextmanager
def daphne(*, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run `daphne [args] agentchat.asgi:application` on a free loopback port; yield its ws URL."""
    port = free_port()
    process_env = {**os.environ, "DATABASE_URL": current_database_url(), **(env or {})}
    log = tempfile.TemporaryFile()  # a pipe nobody reads could fill up and block the server
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *args, "agentchat.asgi:application"],
        cwd=BASE_DIR,
        env=process_env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        try:
            wait_for_port(port, process)
        except RuntimeError as error:
            log.seek(0)
            raise RuntimeError(f"{error}: {log.read().decode()[-2000:]}") from None
        yield f"ws://127.0.0.1:{port}/ws/agent/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class Agent:
    """A minimal protocol client over the `websockets` package."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.replies: dict[Any, dict] = {}
        self.counter = 0

    @classmethod
    async def connect(cls, url: str) -> "Agent":
        return cls(await websockets.connect(url, open_timeout=10))

    async def send(self, op: str, args: dict | None = None) -> str:
        self.counter += 1
        request_id = f"e{self.counter}"
        await self.ws.send(json.dumps({"id": request_id, "op": op, "args": args or {}}))
        return request_id

    async def reply(self, request_id: str, timeout: float = 10) -> dict:
        import asyncio

        async def read() -> dict:
            while request_id not in self.replies:
                frame = json.loads(await self.ws.recv())
                self.replies[frame["id"]] = frame
            return self.replies.pop(request_id)

        return await asyncio.wait_for(read(), timeout)

    async def call(self, op: str, args: dict | None = None, timeout: float = 10) -> dict:
        reply = await self.reply(await self.send(op, args), timeout)
        assert reply["ok"], reply
        return reply["result"]

    async def close(self) -> None:
        await self.ws.close()
