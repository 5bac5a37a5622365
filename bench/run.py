"""
Benchmark: wake-up latency, idle database cost, posts per second and memory per waiting socket.

    .venv/bin/python -m bench            # the full run (about 5 minutes)
    .venv/bin/python -m bench --quick    # under 2 minutes: fewer posts, a short heartbeat interval

It starts its own daphne processes on loopback ports (with `running_daphne`
of tests/support/servers.py, the launcher the end-to-end tests use too) and
its own databases: a temporary SQLite file, and the PostgreSQL database
`--pg-database` (dropped and created afresh). Every server
runs with the rate limits off (AGENTCHAT_*_RATE*=0) and the heartbeat interval and
timeout given here. The clients are the project's own `AgentChatClient`s,
without client heartbeats, all in this process.

1. Wake-up latency, one process (SQLite, in-memory channel layer): 1, 100 and
   1,000 agents wait on one thread; the time from just before sending
   `msg_post` to each waiter receiving its `msg_wait` reply, over several posts.
2. The same across two processes (PostgreSQL + Redis): the post on process A,
   the waiters on process B.
3. Posts per second: one agent posting with chain tokens (each post's reply
   token used by the next) in one thread, on SQLite and on PostgreSQL; and ten
   agents in ten threads at once, on PostgreSQL, on one server process and
   spread over two.
4. Idle cost, on a fresh PostgreSQL + Redis process: 1,000 agents wait with no
   posts. The statements the database ran meanwhile come from PostgreSQL's own
   counters (`pg_stat_database.xact_commit + xact_rollback`, read from another
   database: every statement outside an explicit transaction is one
   transaction). The server's RSS (VmRSS) is read before the sockets open and
   once they all wait.

5. With --compare, the same workloads against AgentChatBus (bench/agentchatbus.py):
   its figures next to AgentChat's, with their ratio.

Prints progress on stderr, then a JSON report and a table with the targets.
--quick keeps 1,000 waiters everywhere but takes 5 posts per wake-up figure
(not 20), 3 s per posts/s figure (not 10), a 4 s heartbeat interval (not 40 s)
and a 20 s idle window (not 160 s). The idle statements per agent per minute
grow with a shorter interval (the cost is per interval), so the report gives
them as measured and converted to the default 40 s interval.
"""

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from agentchat_client import AgentChatClient
from bench import agentchatbus
from tests.support.servers import BASE_DIR, Daphne, running_daphne

WAITER_COUNTS = (1, 100, 1000)
MCP_WAITER_COUNTS = (1, 100)
LONG_WAIT_MS = 3_600_000
STARTED = time.monotonic()


def log(step: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.0f} s] {step}", file=sys.stderr, flush=True)


# --- servers and databases -------------------------------------------------------


def server_env(options: argparse.Namespace, database_url: str, redis_url: str = "") -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        # Production mode: DEBUG would also record every query in memory.
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "AGENTCHAT_RATE_LIMIT_PER_MINUTE": "0",
        "AGENTCHAT_REGISTER_RATE_PER_MINUTE": "0",
        "AGENTCHAT_THREAD_RATE_PER_MINUTE": "0",
        "AGENTCHAT_HEARTBEAT_INTERVAL": str(options.heartbeat_interval),
        "AGENTCHAT_HEARTBEAT_TIMEOUT": str(options.heartbeat_timeout),
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        check=True,
    )


def admin_url(base_url: str) -> str:
    return urlunsplit(urlsplit(base_url)._replace(path="/postgres"))


def postgres_database(base_url: str, name: str) -> str:
    """(Re)create database `name` on the server of `base_url`; return its URL."""
    import psycopg

    with psycopg.connect(admin_url(base_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


def statements_so_far(base_url: str, name: str) -> int:
    """Transactions PostgreSQL counted in database `name` (read from another database)."""
    import psycopg

    with psycopg.connect(admin_url(base_url), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    return int(row[0])


def rss_kib(pid: int) -> int:
    """The resident set size of a process, from /proc/PID/status (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def machine(options: argparse.Namespace) -> dict:
    import psycopg
    import redis

    with psycopg.connect(admin_url(options.postgres), autocommit=True) as conn:
        postgres_version = conn.execute("SHOW server_version").fetchone()[0]
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", platform.platform()),
        "python": platform.python_version(),
        "postgresql": postgres_version,
        "redis": redis.Redis.from_url(options.redis).info("server")["redis_version"],
    }


# --- clients ------------------------------------------------------------------------


async def connect_agents(url: str, count: int, name: str) -> list[AgentChatClient]:
    """Register `count` agents, 50 handshakes at a time."""
    clients: list[AgentChatClient] = []
    for start in range(0, count, 50):
        # A model name per agent: registering one more agent of the same IDE and model reads all their names.
        batch = [
            AgentChatClient(url, ide="Bench", model=f"{name} {i:04d}", heartbeats=False)
            for i in range(start, min(count, start + 50))
        ]
        await asyncio.gather(*(client.connect() for client in batch))
        clients.extend(batch)
    return clients


async def close_all(clients: list[AgentChatClient]) -> None:
    for start in range(0, len(clients), 100):
        await asyncio.gather(*(client.close() for client in clients[start : start + 100]))


async def new_thread(client: AgentChatClient, topic: str) -> str:
    """Create a thread and take its first reply token (wait() remembers it for post())."""
    created = await client.call("thread_create", topic=f"{topic} {time.time()}")
    thread_id = created["thread"]["thread_id"]
    await client.wait(thread_id, timeout_ms=0)
    return thread_id


def settle_client_heap() -> None:
    """Collect, then freeze, this process's objects: the clients' sockets live as long as the figure.

    A thousand clients in one process (not one per agent, as in real use)
    would otherwise have this process's full garbage collections, each
    scanning all of them, land in the middle of the latencies it measures.
    """
    gc.collect()
    gc.freeze()


def summary_ms(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "p50_ms": round(statistics.median(values), 1),
        "p99_ms": round(values[math.ceil(len(values) * 0.99) - 1], 1),
        "max_ms": round(values[-1], 1),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def until_quiet(pid: int, quiet: float = 0.3, limit: float = 30) -> None:
    """Sleep until server `pid` has used no CPU for `quiet` seconds: every wait sent to it is asleep."""
    deadline = time.monotonic() + limit
    used, quiet_since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet:
        await asyncio.sleep(0.05)
        if cpu_seconds(pid) != used:
            used, quiet_since = cpu_seconds(pid), time.monotonic()


# --- (a) wake-up latency --------------------------------------------------------------


async def wake_latency(poster: AgentChatClient, waiters: list[AgentChatClient], waiter_pid: int, posts: int) -> dict:
    """Milliseconds from just before sending msg_post to each waiter receiving its reply."""
    thread_id = await new_thread(poster, f"wake {len(waiters)}")

    async def woken_at(client: AgentChatClient) -> float:
        messages = await client.wait(thread_id, timeout_ms=LONG_WAIT_MS)
        assert messages, "a wait ended without the post"
        return time.perf_counter()

    latencies: list[float] = []
    settle_client_heap()
    for n in range(posts):
        receivers = [asyncio.create_task(woken_at(client)) for client in waiters]
        await until_quiet(waiter_pid)
        started = time.perf_counter()
        await poster.post(thread_id, f"wake up {n}")
        latencies.extend((t - started) * 1000 for t in await asyncio.gather(*receivers))
    return {"waiters": len(waiters), "posts": posts, **summary_ms(latencies)}


async def wake_figures(post_server: Daphne, wait_server: Daphne, posts: int) -> list[dict]:
    poster = (await connect_agents(post_server.url, 1, "Poster"))[0]
    waiters = await connect_agents(wait_server.url, max(WAITER_COUNTS), "Waiter")
    figures = []
    for count in WAITER_COUNTS:
        log(f"wake-up, {count} waiter(s)")
        figures.append(await wake_latency(poster, waiters[:count], wait_server.pid, posts))
    await close_all([poster, *waiters])
    return figures


# --- (a') wake-up of MCP waiters -----------------------------------------------------


async def mcp_wake_figures(server: Daphne, posts: int) -> list[dict]:
    """A post over the WebSocket waking agents that wait in msg_wait over MCP (/mcp, bearer tokens, SSE)."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    mcp_url = server.url.replace("ws://", "http://").replace("/ws/agent/", "/mcp")
    poster = (await connect_agents(server.url, 1, "McpPoster"))[0]
    figures = []
    async with AsyncExitStack() as stack:

        async def open_client(token: str | None) -> Client:
            headers = {"Authorization": f"Bearer {token}"} if token else None
            http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
            return await stack.enter_async_context(Client(streamable_http_client(mcp_url, http_client=http)))

        registrar = await open_client(None)
        clients = []
        for i in range(max(MCP_WAITER_COUNTS)):
            registered = await registrar.call_tool("agent_register", {"ide": "Bench", "model": f"McpWaiter {i:04d}"})
            clients.append(await open_client(registered.structured_content["token"]))
        for count in MCP_WAITER_COUNTS:
            log(f"MCP wake-up, {count} waiter(s)")
            thread_id = await new_thread(poster, f"mcp wake {count}")
            latencies: list[float] = []
            for n in range(posts):

                async def woken_at(client: Client, thread_id: str = thread_id, after_seq: int = n) -> float:
                    args = {"thread_id": thread_id, "after_seq": after_seq, "timeout_ms": 250_000}
                    result = await client.call_tool("msg_wait", args)
                    assert result.structured_content["messages"], "an MCP wait ended without the post"
                    return time.perf_counter()

                receivers = []
                for start in range(
                    0, count, 10
                ):  # 10 requests at a time: a burst would overflow daphne's listen backlog
                    receivers += [
                        asyncio.create_task(woken_at(client)) for client in clients[start : min(count, start + 10)]
                    ]
                    await asyncio.sleep(0.02)
                await until_quiet(server.pid)
                started = time.perf_counter()
                await poster.post(thread_id, f"wake up {n}")
                latencies.extend((t - started) * 1000 for t in await asyncio.gather(*receivers))
            figures.append({"waiters": count, "posts": posts, **summary_ms(latencies)})
    await close_all([poster])
    return figures


# --- (c) posts per second ----------------------------------------------------------------


async def posts_per_second(urls: list[str], agents: int, seconds: float) -> dict:
    """Each agent posts in its own thread, one post after another, chaining reply tokens.

    The agents connect to the servers of `urls` in turn (one server process
    runs a process's database work on one thread: more processes, more
    posts at once).
    """
    log(f"posts per second, {agents} agent(s), {len(urls)} process(es)")
    clients = []
    for n, url in enumerate(urls):
        clients += await connect_agents(url, len(range(n, agents, len(urls))), f"Poster{agents}x{len(urls)}p{n}")
    threads = [await new_thread(client, "posts") for client in clients]
    round_trips: list[float] = []

    async def post_until(client: AgentChatClient, thread_id: str, deadline: float) -> int:
        count = 0
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            await client.post(thread_id, f"post {count}")
            round_trips.append((time.perf_counter() - sent) * 1000)
            count += 1
        return count

    started = time.perf_counter()
    counts = await asyncio.gather(
        *(post_until(client, thread_id, started + seconds) for client, thread_id in zip(clients, threads))
    )
    elapsed = time.perf_counter() - started
    await close_all(clients)
    return {
        "agents": agents,
        "processes": len(urls),
        "posts": sum(counts),
        "seconds": round(elapsed, 1),
        "posts_per_second": round(sum(counts) / elapsed, 1),
        "round_trip_p50_ms": round(statistics.median(round_trips), 1),
    }


# --- (b) idle database cost and (d) memory per waiting socket -----------------------------


async def idle_cost(server: Daphne, options: argparse.Namespace) -> dict:
    log(f"idle cost and memory, {options.idle_waiters} waiters, {options.idle_seconds:.0f} s window")
    owner = (await connect_agents(server.url, 1, "Owner"))[0]
    thread_id = await new_thread(owner, "idle")
    rss_before = rss_kib(server.pid)
    waiters = await connect_agents(server.url, options.idle_waiters, "Idle")
    waits = [asyncio.create_task(client.wait(thread_id, timeout_ms=LONG_WAIT_MS)) for client in waiters]
    # PostgreSQL publishes a busy backend's counters up to 10 s late: let the
    # set-up's statements settle before the window opens.
    await asyncio.sleep(12 + options.idle_waiters / 200)
    rss_after = rss_kib(server.pid)
    before = statements_so_far(options.postgres, options.pg_database)
    await asyncio.sleep(options.idle_seconds)
    after = statements_so_far(options.postgres, options.pg_database)
    assert not any(wait.done() for wait in waits), "a wait ended during the idle window"
    for wait in waits:
        wait.cancel()
    await close_all([owner, *waiters])

    statements = after - before
    intervals = options.idle_seconds / options.heartbeat_interval
    per_interval = statements / intervals
    return {
        "idle": {
            "waiters": options.idle_waiters,
            "seconds": options.idle_seconds,
            "heartbeat_interval_s": options.heartbeat_interval,
            "statements": statements,
            "statements_per_process_per_heartbeat_interval": round(per_interval, 2),
            "statements_per_agent_per_minute": round(statements / options.idle_waiters * 60 / options.idle_seconds, 5),
            # The cost per interval does not depend on its length: at the default 40 s interval.
            "statements_per_agent_per_minute_at_40s_interval": round(per_interval * 1.5 / options.idle_waiters, 5),
        },
        "memory": {
            "sockets": options.idle_waiters,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "kib_per_waiting_socket": round((rss_after - rss_before) / options.idle_waiters, 1),
        },
    }


# --- (e) the comparison with AgentChatBus ----------------------------------------------------


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "-"
    if ours == 0:
        return "inf" if theirs else "1"
    return f"{theirs / ours:.3g}"


def comparison(report: dict) -> list[dict]:
    """Rows of AgentChat's figure, AgentChatBus's and their ratio (AgentChatBus / AgentChat)."""
    bus = report["agentchatbus"]
    bus_wake = {f["waiters"]: f for f in bus["wake"]}
    one = {f["waiters"]: f for f in report.get("wake_one_process_sqlite", [])}
    mcp = {f["waiters"]: f for f in report.get("wake_mcp_one_process_sqlite", [])}
    posts = report.get("posts_per_second", {})
    rows = []

    def row(figure: str, ours: float | None, theirs: float | None, note: str = "") -> None:
        rows.append(
            {"figure": figure, "agentchat": ours, "agentchatbus": theirs, "ratio": ratio(ours, theirs), "note": note}
        )

    for count in sorted(bus_wake):
        for stat in ("p50_ms", "p99_ms"):
            label = f"wake-up {stat[:3]}, {count} waiter(s), ms"
            row(f"{label} (AgentChat over WebSocket)", one.get(count, {}).get(stat), bus_wake[count][stat])
            row(f"{label} (AgentChat over MCP)", mcp.get(count, {}).get(stat), bus_wake[count][stat])
    row(
        "posts/s, one agent, one thread, SQLite",
        posts.get("sqlite_one_agent", {}).get("posts_per_second"),
        bus["posts_per_second"]["posts_per_second"],
        "AgentChatBus: msg_wait for a token + msg_post per post",
    )
    memory = report.get("memory_postgres", {})
    row(
        "server RSS per waiting agent, KiB",
        memory.get("kib_per_waiting_socket"),
        bus["memory"]["kib_per_waiting_agent"],
        f"AgentChat: {memory.get('sockets')} WebSockets; AgentChatBus: {bus['memory']['sockets']} SSE streams",
    )
    idle = report.get("idle_postgres", {})
    row(
        "database statements per idle waiting agent per minute",
        idle.get("statements_per_agent_per_minute_at_40s_interval"),
        bus["idle"]["statements_per_agent_per_minute"],
        "default settings: AgentChat's 40 s interval (PostgreSQL counters); AgentChatBus's sqlite3 trace",
    )
    return rows


def print_comparison(rows: list[dict]) -> None:
    width = max(len(r["figure"]) for r in rows)
    print(f"{'figure':{width}}  {'AgentChat':>10}  {'AgentChatBus':>12}  {'ratio':>8}  note")
    for r in rows:
        ours = "-" if r["agentchat"] is None else r["agentchat"]
        print(f"{r['figure']:{width}}  {ours:>10}  {r['agentchatbus']:>12}  {r['ratio']:>8}  {r['note']}")


# --- report -----------------------------------------------------------------------------


def targets(report: dict) -> list[dict]:
    one = {f["waiters"]: f for f in report["wake_one_process_sqlite"]}
    two = {f["waiters"]: f for f in report["wake_two_processes_postgres_redis"]}
    idle, posts = report["idle_postgres"], report["posts_per_second"]
    rows = [
        ("wake-up p99, 100 waiters, one process (ms)", one[100]["p99_ms"], "<=", 25),
        ("wake-up p99, 1,000 waiters, one process (ms)", one[1000]["p99_ms"], "<=", 150),
        ("wake-up p99, 100 waiters, two processes via Redis (ms)", two[100]["p99_ms"], "<=", 50),
        (
            "idle statements per waiting agent per minute, 1,000 waiters, 40 s interval",
            idle["statements_per_agent_per_minute_at_40s_interval"],
            "<=",
            0.01,
        ),
        ("posts/s, one agent, one thread, PostgreSQL", posts["postgres_one_agent"]["posts_per_second"], ">=", 300),
        ("RSS per idle waiting socket (KiB)", report["memory_postgres"]["kib_per_waiting_socket"], "<=", 50),
    ]
    return [
        {
            "figure": name,
            "value": value,
            "target": f"{op} {goal}",
            "met": value <= goal if op == "<=" else value >= goal,
        }
        for name, value, op, goal in rows
    ]


def print_table(report: dict) -> None:
    lines: list[tuple[str, str]] = []
    for key, label in (
        ("wake_one_process_sqlite", "wake-up, one process (SQLite)"),
        ("wake_two_processes_postgres_redis", "wake-up, two processes (PostgreSQL + Redis)"),
        ("wake_mcp_one_process_sqlite", "MCP wake-up, post over WebSocket, one process (SQLite)"),
    ):
        for f in report.get(key, []):
            lines.append(
                (f"{label}, {f['waiters']} waiter(s), p50/p99/max ms", f"{f['p50_ms']} / {f['p99_ms']} / {f['max_ms']}")
            )
    if "posts_per_second" not in report:  # --mcp-only
        for name, value in lines:
            print(f"{name}  {value}")
        return
    for key, label in (
        ("sqlite_one_agent", "posts/s, one agent, SQLite"),
        ("postgres_one_agent", "posts/s, one agent, PostgreSQL"),
        ("postgres_ten_agents", "posts/s, 10 agents in 10 threads, PostgreSQL"),
        ("postgres_ten_agents_two_processes", "posts/s, 10 agents in 10 threads, PostgreSQL, two processes"),
    ):
        f = report["posts_per_second"][key]
        lines.append((label, f"{f['posts_per_second']} (p50 {f['round_trip_p50_ms']} ms)"))
    idle = report["idle_postgres"]
    lines += [
        (f"idle statements, {idle['waiters']} waiters, {idle['seconds']} s", str(idle["statements"])),
        (
            f"  per process per heartbeat interval ({idle['heartbeat_interval_s']} s)",
            str(idle["statements_per_process_per_heartbeat_interval"]),
        ),
        ("  per waiting agent per minute (measured)", str(idle["statements_per_agent_per_minute"])),
        (
            "  per waiting agent per minute at a 40 s interval",
            str(idle["statements_per_agent_per_minute_at_40s_interval"]),
        ),
    ]
    memory = report["memory_postgres"]
    lines.append(
        (
            f"RSS per waiting socket, {memory['sockets']} sockets, KiB",
            f"{memory['kib_per_waiting_socket']} ({memory['rss_before_kib']} -> {memory['rss_after_kib']} KiB)",
        )
    )
    width = max(len(name) for name, _ in lines)
    print(f"{'figure':{width}}  value")
    for name, value in lines:
        print(f"{name:{width}}  {value}")
    print()
    width = max(len(t["figure"]) for t in report["targets"])
    print(f"{'target':{width}}  {'value':>8}  {'goal':>8}  met")
    for t in report["targets"]:
        print(f"{t['figure']:{width}}  {t['value']:>8}  {t['target']:>8}  {'yes' if t['met'] else 'NO'}")


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 posts per figure, 3 s posts/s runs, 4 s / 6 s heartbeat, 20 s idle window",
    )
    parser.add_argument("--mcp-only", action="store_true", help="only the MCP wake-up figures (about a minute)")
    parser.add_argument("--posts", type=int, help="posts per wake-up figure (default 20)")
    parser.add_argument("--post-seconds", type=float, help="duration of each posts/s figure (default 10)")
    parser.add_argument("--heartbeat-interval", type=int, help="server AGENTCHAT_HEARTBEAT_INTERVAL, s (default 40)")
    parser.add_argument("--heartbeat-timeout", type=int, help="server AGENTCHAT_HEARTBEAT_TIMEOUT, s (1.5 x interval)")
    parser.add_argument("--idle-seconds", type=float, help="idle window (default 4 heartbeat intervals; --quick 5)")
    parser.add_argument("--idle-waiters", type=int, default=1000)
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--pg-database", default="agentchat_bench", help="created afresh on every run")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--compare",
        action="store_true",
        help=f"also run the workloads against AgentChatBus {agentchatbus.VERSION} and print both side by side",
    )
    parser.add_argument("--compare-only", action="store_true", help="only AgentChatBus's figures (about 2 minutes)")
    parser.add_argument(
        "--compare-venv",
        default=str(agentchatbus.DEFAULT_VENV),
        help="AgentChatBus's own virtual environment, created on first use (default %(default)s)",
    )
    parser.add_argument("--compare-waiters", type=int, default=100, help="AgentChatBus waiters (default 100)")
    parser.add_argument(
        "--compare-idle-seconds",
        type=float,
        default=30,
        help="AgentChatBus idle window (default 30; it intervenes once all agents of a thread waited 60 s)",
    )
    options = parser.parse_args()
    quick = options.quick
    options.posts = options.posts or (5 if quick else 20)
    options.post_seconds = options.post_seconds or (3 if quick else 10)
    options.heartbeat_interval = options.heartbeat_interval or (4 if quick else 40)
    options.heartbeat_timeout = options.heartbeat_timeout or math.ceil(options.heartbeat_interval * 1.5)
    options.idle_seconds = options.idle_seconds or (5 if quick else 4) * options.heartbeat_interval
    return options


def main() -> None:
    options = parse_options()
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    report: dict = {
        "machine": machine(options),
        "settings": {
            "quick": options.quick,
            "posts_per_wake_figure": options.posts,
            "seconds_per_posts_figure": options.post_seconds,
            "heartbeat_interval_s": options.heartbeat_interval,
            "heartbeat_timeout_s": options.heartbeat_timeout,
            "rate_limit_per_minute": 0,
        },
    }
    if options.quick:
        report["settings"]["note"] = (
            "quick mode: fewer posts per figure, shorter posts/s runs, a 4 s heartbeat interval and a 20 s idle"
            " window; still 1,000 waiters for wake-up, idle cost and memory"
        )

    if options.compare_only:
        with tempfile.TemporaryDirectory() as tmp:
            report["agentchatbus"] = agentchatbus.run(options, tmp, until_quiet, summary_ms, rss_kib)
        print(json.dumps(report, indent=2))
        return

    with tempfile.TemporaryDirectory() as tmp:
        sqlite_env = server_env(options, f"sqlite:///{tmp}/bench.sqlite3")
        migrate(sqlite_env)
        log("one process: SQLite, in-memory channel layer")
        with running_daphne(sqlite_env) as server:
            if not options.mcp_only:
                report["wake_one_process_sqlite"] = asyncio.run(wake_figures(server, server, options.posts))
            report["wake_mcp_one_process_sqlite"] = asyncio.run(mcp_wake_figures(server, options.posts))
            if options.mcp_only:
                print(json.dumps(report, indent=2))
                print()
                print_table(report)
                return
            sqlite_posts = asyncio.run(posts_per_second([server.url], 1, options.post_seconds))

    pg_env = server_env(options, postgres_database(options.postgres, options.pg_database), options.redis)
    migrate(pg_env)
    log("two processes: PostgreSQL + Redis")
    with running_daphne(pg_env) as first, running_daphne(pg_env) as second:
        report["wake_two_processes_postgres_redis"] = asyncio.run(wake_figures(first, second, options.posts))
        report["posts_per_second"] = {
            "sqlite_one_agent": sqlite_posts,
            "postgres_one_agent": asyncio.run(posts_per_second([first.url], 1, options.post_seconds)),
            "postgres_ten_agents": asyncio.run(posts_per_second([first.url], 10, options.post_seconds)),
            "postgres_ten_agents_two_processes": asyncio.run(
                posts_per_second([first.url, second.url], 10, options.post_seconds)
            ),
        }
    with running_daphne(pg_env) as server:  # a fresh process: its memory holds nothing but the waiters
        idle = asyncio.run(idle_cost(server, options))
    report["idle_postgres"], report["memory_postgres"] = idle["idle"], idle["memory"]

    report["targets"] = targets(report)
    if options.compare:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                report["agentchatbus"] = agentchatbus.run(options, tmp, until_quiet, summary_ms, rss_kib)
            report["comparison"] = comparison(report)
        except Exception as error:  # AgentChat's figures are still reported
            log(f"the comparison failed: {error!r}")
            report["agentchatbus_error"] = repr(error)
    report["runtime_s"] = round(time.monotonic() - STARTED)
    print(json.dumps(report, indent=2))
    print()
    print_table(report)
    if "comparison" in report:
        print()
        print_comparison(report["comparison"])
