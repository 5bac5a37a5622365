"""Real server processes on loopback ports: free ports, waiting for one, and daphne.

`Daphne` is the one launcher of `daphne agentchat.asgi:application`: the
end-to-end tests, the fault tests and the benchmark all start it from here.
Its output goes to a file: a pipe nobody reads would fill up and block it.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str = "daphne", timeout: float = 30) -> None:
    """Return once something accepts connections on the loopback port; fail if `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {timeout} s") from None
            time.sleep(0.05)


class Daphne:
    """`daphne agentchat.asgi:application` on a free loopback port, with `env` over this process's environment."""

    def __init__(self, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws/agent/"
        self.log = Path(tempfile.mkstemp(prefix="agentchat-daphne-", suffix=".log")[1])
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    *args,
                    "agentchat.asgi:application",
                ],
                cwd=BASE_DIR,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, self.process, "daphne")
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{error}: {self.output()[-2000:]}") from None

    @property
    def ws_url(self) -> str:
        return self.url

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, like a crashed host."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def bugs(self) -> list[str]:
        """Lines where an op failed with an unexpected exception (reported to the client as a bug)."""
        lines = self.output().splitlines()
        return [
            "\n".join(lines[i : i + 30])
            for i, line in enumerate(lines)
            if line.startswith("Op ") and line.endswith(" failed")
        ]


@contextmanager
def running_daphne(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[Daphne]:
    """A Daphne (with extra daphne `args`) for the duration of the block: stopped, and its log removed, on exit."""
    server = Daphne(env, args)
    try:
        yield server
    finally:
        server.stop()
        server.log.unlink(missing_ok=True)


def current_database_url() -> str:
    """A DATABASE_URL for the database the test run is using right now."""
    from django.db import connection

    conf = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{conf['NAME']}"
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf.get("PASSWORD") else "")
    return f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"


@contextmanager
def daphne_on_test_database(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[Daphne]:
    """A Daphne that shares the running test's database (and, through the environment, its Redis)."""
    with running_daphne({"DATABASE_URL": current_database_url(), **(env or {})}, args) as server:
        yield server


def require_postgres_and_redis() -> None:
    """Fail the test unless the run uses PostgreSQL and Redis (the README's second pass)."""
    import pytest
    from django.db import connection

    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.fail("These tests need DATABASE_URL=postgres://... and REDIS_URL (see the README's test command).")
