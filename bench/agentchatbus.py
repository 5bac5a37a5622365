"""
The same workloads against AgentChatBus (the `agentchatbus` package from PyPI), for `python -m bench --compare`.

AgentChatBus is installed into its own virtual environment (`--compare-venv`,
created with `python3 -m venv` and `pip install` the first time and reused
after), started on a free loopback port with its own SQLite file, and driven
over its own MCP transport (SSE at /mcp/sse, the handshake-era protocol) with
the official `mcp` client of this project (`mcp.Client` in legacy mode over
`mcp.client.sse.sse_client`). Every agent is one MCP client with its own SSE
stream, joined with `bus_connect` (which registers it and binds it to that
stream) and waiting with `msg_wait`.

- Wake-up latency: 1 and `--compare-waiters` agents wait on one thread; the
  time from just before `msg_post` is sent to each `msg_wait` returning.
- Posts per second: one agent posting in one thread. AgentChatBus's `msg_post`
  returns no next reply token, so each post is preceded by the `msg_wait`
  (after the thread's last seq, timeout 0) that issues one: two calls per post.
- Memory per waiting agent: the server's VmRSS once the first agent has made
  the thread, and again once `--compare-waiters` more agents wait in it.
- Database statements per idle waiting agent per minute: the server runs
  under a launcher that sets a `sqlite3` trace callback on every connection
  it opens (AgentChatBus opens them with `aiosqlite`, which calls
  `sqlite3.connect`), so every statement SQLite runs is counted, including
  BEGIN and COMMIT; the count is read from a file the launcher rewrites every
  0.2 s.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

VERSION = "0.2.2"
MCP_VERSION = "1.30.0"
# AgentChatBus 0.2.2 asks for mcp>=1.3.0 but is written for the 1.x server API
# (Server.list_tools() as a decorator): with mcp 2.x it does not start.
REQUIREMENTS = (f"agentchatbus=={VERSION}", f"mcp[cli]=={MCP_VERSION}")
DEFAULT_VENV = Path.home() / ".cache" / "agentchat-bench" / f"agentchatbus-{VERSION}"
LONG_WAIT_MS = 600_000

# Runs inside AgentChatBus's virtual environment: count SQLite statements, then start its server.
LAUNCHER = """
import os, sqlite3, sys, threading, time

count_file = os.environ["BENCH_STATEMENT_COUNT_FILE"]
statements = 0
_connect = sqlite3.connect


def connect(*args, **kwargs):
    conn = _connect(*args, **kwargs)

    def trace(_sql):
        global statements
        statements += 1

    conn.set_trace_callback(trace)
    return conn


sqlite3.connect = connect


def publish():
    while True:
        with open(count_file + ".tmp", "w") as f:
            f.write(str(statements))
        os.replace(count_file + ".tmp", count_file)
        time.sleep(0.2)


threading.Thread(target=publish, daemon=True).start()
sys.argv = ["agentchatbus", "--host", "127.0.0.1", "--port", sys.argv[1]]
from src.cli import main

main()
"""


def log(step: str) -> None:
    print(f"[AgentChatBus] {step}", file=sys.stderr, flush=True)


def ensure_venv(venv: Path) -> Path:
    """AgentChatBus's own virtual environment (created and installed on first use); its python."""
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        f"import importlib.metadata as m; assert m.version('agentchatbus') == '{VERSION}'"
        f" and m.version('mcp') == '{MCP_VERSION}'",
    ]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"creating {venv} and installing {' '.join(REQUIREMENTS)}")
    subprocess.run(["python3", "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
        check=True,
        timeout=600,
    )
    subprocess.run(check, check=True)
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, port: int, count_file: Path):
        self.process, self.port, self.count_file = process, port, count_file
        self.pid = process.pid
        self.url = f"http://127.0.0.1:{port}/mcp/sse"

    def statements(self) -> int:
        time.sleep(0.5)  # the launcher rewrites the file every 0.2 s
        return int(self.count_file.read_text())


@contextmanager
def running_server(python: Path, workdir: Path) -> Iterator[Server]:
    """AgentChatBus on a free loopback port with a fresh SQLite file; stopped on exit."""
    port = free_port()
    launcher = workdir / "launch_agentchatbus.py"
    launcher.write_text(LAUNCHER)
    count_file = workdir / "statements"
    env = {
        **os.environ,
        "AGENTCHATBUS_DB": str(workdir / "bus.db"),
        "AGENTCHATBUS_RATE_LIMIT": "0",
        "AGENTCHATBUS_RELOAD": "0",
        "BENCH_STATEMENT_COUNT_FILE": str(count_file),
        "HOME": str(workdir),  # its config and data stay in the bench's directory
    }
    log_file = open(workdir / "server.log", "w")
    process = subprocess.Popen(
        [str(python), str(launcher), str(port)], cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"AgentChatBus exited: {(workdir / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/threads", timeout=2).read()
                if count_file.exists():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("AgentChatBus did not start within 60 s")
            time.sleep(0.2)
        yield Server(process, port, count_file)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


def payload(result) -> dict:
    data = json.loads(result.content[0].text)
    if "error" in data:
        raise RuntimeError(f"AgentChatBus refused a call: {data}")
    return data


class Agent:
    """One AgentChatBus agent: an MCP client on its own SSE stream, joined to a thread with bus_connect."""

    def __init__(self, client, joined: dict):
        self.client = client
        self.agent_id = joined["agent"]["agent_id"]
        self.thread_id = joined["thread"]["thread_id"]
        self.seq = joined["current_seq"]
        self.token = joined["reply_token"]

    async def wait(self, after_seq: int, timeout_ms: int) -> dict:
        args = {"thread_id": self.thread_id, "after_seq": after_seq, "timeout_ms": timeout_ms, "return_format": "json"}
        return payload(await self.client.call_tool("msg_wait", args))

    async def post(self, content: str) -> dict:
        """One post with a fresh reply token: msg_wait (timeout 0) issues it, msg_post uses it."""
        sync = await self.wait(self.seq, 0)
        args = {
            "thread_id": self.thread_id,
            "author": self.agent_id,
            "content": content,
            "expected_last_seq": sync["current_seq"],
            "reply_token": sync["reply_token"],
        }
        posted = payload(await self.client.call_tool("msg_post", args))
        self.seq = posted["seq"]
        return posted


async def join(stack: AsyncExitStack, url: str, thread_name: str, names: list[str]) -> list[Agent]:
    """Open one MCP client per name and bus_connect each to `thread_name` (10 calls at a time)."""
    from mcp import Client
    from mcp.client.sse import sse_client

    clients = []
    for _ in names:  # entered (and so left) in this task: anyio's cancel scopes require it
        transport = sse_client(url, sse_read_timeout=LONG_WAIT_MS / 1000 + 60)
        clients.append(await stack.enter_async_context(Client(transport, mode="legacy")))

    async def connect(client, name: str) -> Agent:
        args = {"thread_name": thread_name, "ide": "Bench", "model": name}
        return Agent(client, payload(await client.call_tool("bus_connect", args)))

    agents: list[Agent] = []
    for start in range(0, len(names), 10):
        batch = zip(clients[start : start + 10], names[start : start + 10])
        agents += await asyncio.gather(*(connect(client, name) for client, name in batch))
    return agents


async def wake_latency(
    poster: Agent, waiters: list[Agent], pid: int, posts: int, until_quiet: Callable, summary_ms: Callable
) -> dict:
    latencies: list[float] = []
    for n in range(posts):

        async def woken_at(agent: Agent, after_seq: int = poster.seq) -> float:
            result = await agent.wait(after_seq, LONG_WAIT_MS)
            assert result["messages"], "a wait ended without the post"
            return time.perf_counter()

        receivers = []
        for start in range(0, len(waiters), 10):  # 10 calls at a time, as for AgentChat's MCP waiters
            receivers += [asyncio.create_task(woken_at(agent)) for agent in waiters[start : start + 10]]
            await asyncio.sleep(0.02)
        await until_quiet(pid, limit=2)  # its waits poll the database once a second: never quiet for long
        sync = await poster.wait(poster.seq, 0)  # the poster's token first, outside the timed part
        started = time.perf_counter()
        args = {
            "thread_id": poster.thread_id,
            "author": poster.agent_id,
            "content": f"wake up {n}",
            "expected_last_seq": sync["current_seq"],
            "reply_token": sync["reply_token"],
        }
        poster.seq = payload(await poster.client.call_tool("msg_post", args))["seq"]
        latencies.extend((t - started) * 1000 for t in await asyncio.gather(*receivers))
    return {"waiters": len(waiters), "posts": posts, **summary_ms(latencies)}


async def measure(server: Server, options, until_quiet: Callable, summary_ms: Callable) -> dict:
    waiter_count = options.compare_waiters
    report: dict = {"version": VERSION, "transport": "MCP over SSE (handshake-era protocol)", "database": "SQLite"}
    async with AsyncExitStack() as stack:
        log("wake-up")
        poster, *_ = await join(stack, server.url, "wake", ["Poster"])
        waiters = await join(stack, server.url, "wake", [f"Waiter {i:04d}" for i in range(waiter_count)])
        report["wake"] = []
        for count in (1, waiter_count):
            log(f"wake-up, {count} waiter(s)")
            report["wake"].append(
                await wake_latency(poster, waiters[:count], server.pid, options.posts, until_quiet, summary_ms)
            )

        log("posts per second, 1 agent")
        author, *_ = await join(stack, server.url, "posts", ["Author"])
        round_trips: list[float] = []
        started = time.perf_counter()
        while time.perf_counter() < started + options.post_seconds:
            sent = time.perf_counter()
            await author.post(f"post {len(round_trips)}")
            round_trips.append((time.perf_counter() - sent) * 1000)
        elapsed = time.perf_counter() - started
        report["posts_per_second"] = {
            "agents": 1,
            "posts": len(round_trips),
            "seconds": round(elapsed, 1),
            "posts_per_second": round(len(round_trips) / elapsed, 1),
            "round_trip_p50_ms": summary_ms(round_trips)["p50_ms"],
            "calls_per_post": 2,
        }
    return report


async def measure_idle(server: Server, options, rss_kib: Callable) -> dict:
    """A fresh server: RSS and statements while `--compare-waiters` agents wait with no posts."""
    waiter_count = options.compare_waiters
    seconds = options.compare_idle_seconds
    log(f"idle cost and memory, {waiter_count} waiters, {seconds:.0f} s window")
    stack = AsyncExitStack()
    owner, *_ = await join(stack, server.url, "idle", ["Owner"])
    await asyncio.sleep(1)
    rss_before = rss_kib(server.pid)
    waiters = await join(stack, server.url, "idle", [f"Idle {i:04d}" for i in range(waiter_count)])
    waits = [asyncio.create_task(agent.wait(agent.seq, LONG_WAIT_MS)) for agent in waiters]
    await asyncio.sleep(5)
    rss_after = rss_kib(server.pid)
    before = server.statements()
    await asyncio.sleep(seconds)
    after = server.statements()
    assert not any(wait.done() for wait in waits), "a wait ended during the idle window"
    # End the waits the ordinary way (a post), then the clients: a cancelled
    # call leaves its SSE stream a late reply that its closed reader refuses.
    try:
        await owner.post("the end")
        await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 30)
        await stack.aclose()
    except Exception as error:  # the figures are taken; a client's shutdown does not change them
        log(f"clients closed with an error: {error!r}")
    statements = after - before
    return {
        "idle": {
            "waiters": waiter_count,
            "seconds": seconds,
            "statements": statements,
            "statements_per_agent_per_minute": round(statements / waiter_count * 60 / seconds, 3),
        },
        "memory": {
            "sockets": waiter_count,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "kib_per_waiting_agent": round((rss_after - rss_before) / waiter_count, 1),
        },
    }


def run(options, tmp: str, until_quiet: Callable, summary_ms: Callable, rss_kib: Callable) -> dict:
    python = ensure_venv(Path(options.compare_venv))
    first, second = Path(tmp) / "agentchatbus-1", Path(tmp) / "agentchatbus-2"
    first.mkdir()
    second.mkdir()
    log("server 1: wake-up and posts/s")
    with running_server(python, first) as server:
        report = asyncio.run(measure(server, options, until_quiet, summary_ms))
    log("server 2 (fresh): idle cost and memory")
    with running_server(python, second) as server:
        report.update(asyncio.run(measure_idle(server, options, rss_kib)))
    return report
