"""
Benchmark: wake-up latency and the database cost of idle waiting agents.

    .venv/bin/python -m agentchat.bench [--waiters 100] [--idle-seconds 60] [--quick]

It starts its own daphne processes on loopback ports and its own databases:
1. one process, SQLite, in-memory channel layer: N agents wait on one thread,
   one post; the latency from sending the post to each waiter's reply;
2. two processes, PostgreSQL + Redis: N waiters on the second process, the
   post on the first;
3. on PostgreSQL, N agents wait for `--idle-seconds` with no posts; the
   statements the database ran meanwhile come from PostgreSQL's own counters
   (`pg_stat_database.xact_commit + xact_rollback`: every statement outside
   an explicit transaction is one transaction).
Prints a JSON report and a table. Needs PostgreSQL at --postgres and Redis at
--redis for parts 2 and 3.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import websockets

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("daphne exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("daphne did not start")


@contextmanager
def server(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agentchat.asgi:application"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"ws://127.0.0.1:{port}/ws/agent/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        check=True,
    )


def postgres_database(base_url: str, name: str) -> str:
    """(Re)create database `name` on the server of `base_url`; return its URL."""
    import psycopg

    parts = urlsplit(base_url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def statements_so_far(base_url: str, name: str) -> int:
    """Transactions PostgreSQL counted in database `name` (read from another database)."""
    import psycopg

    parts = urlsplit(base_url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    return int(row[0])


class Client:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.n = 0

    @classmethod
    async def open(cls, url: str) -> "Client":
        return cls(await websockets.connect(url, max_queue=None, open_timeout=30))

    async def send(self, op: str, args: dict) -> str:
        self.n += 1
        request_id = str(self.n)
        await self.ws.send(json.dumps({"id": request_id, "op": op, "args": args}))
        return request_id

    async def call(self, op: str, args: dict) -> dict:
        request_id = await self.send(op, args)
        while True:
            frame = json.loads(await self.ws.recv())
            if frame["id"] == request_id:
                if not frame["ok"]:
                    raise RuntimeError(frame["error"])
                return frame["result"]


async def open_waiters(url: str, count: int) -> list[Client]:
    clients = []
    for start in range(0, count, 50):  # connect in batches, not 1,000 handshakes at once
        batch = await asyncio.gather(*(Client.open(url) for _ in range(start, min(count, start + 50))))
        await asyncio.gather(*(c.call("agent_register", {"ide": "Bench", "model": "Waiter"}) for c in batch))
        clients.extend(batch)
    return clients


async def wake_latency(post_url: str, wait_url: str, waiters: int, rounds: int) -> dict:
    """Milliseconds from sending a post to each waiter receiving its reply, over several posts."""
    poster = await Client.open(post_url)
    await poster.call("agent_register", {"ide": "Bench", "model": "Poster"})
    created = await poster.call("thread_create", {"topic": f"bench {time.time()}"})
    thread_id, token = created["thread"]["thread_id"], created["reply_token"]
    clients = await open_waiters(wait_url, waiters)

    async def woken_at(client: Client) -> float:
        frame = json.loads(await client.ws.recv())
        assert frame["ok"] and frame["result"]["messages"], frame
        return time.perf_counter()

    latencies: list[float] = []
    for seq in range(rounds):
        for client in clients:
            await client.send("msg_wait", {"thread_id": thread_id, "after_seq": seq, "timeout_ms": 120000})
        await asyncio.sleep(1 + waiters / 200)  # let every wait subscribe and sleep
        receivers = [asyncio.create_task(woken_at(c)) for c in clients]
        await asyncio.sleep(0)
        started = time.perf_counter()
        posted = await poster.call(
            "msg_post",
            {"thread_id": thread_id, "content": f"wake up {seq}", "expected_last_seq": seq, "reply_token": token},
        )
        token = posted["reply_token"]
        latencies.extend((t - started) * 1000 for t in await asyncio.gather(*receivers))
    for client in [poster, *clients]:
        await client.ws.close()
    latencies.sort()
    return {
        "waiters": waiters,
        "posts": rounds,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1),
        "max_ms": round(latencies[-1], 1),
    }


async def idle_cost(url: str, waiters: int, seconds: float, pg_base: str, db_name: str) -> dict:
    poster = await Client.open(url)
    await poster.call("agent_register", {"ide": "Bench", "model": "Owner"})
    created = await poster.call("thread_create", {"topic": f"idle {time.time()}"})
    clients = await open_waiters(url, waiters)
    for client in clients:
        await client.send(
            "msg_wait", {"thread_id": created["thread"]["thread_id"], "after_seq": 0, "timeout_ms": 3_600_000}
        )
    # PostgreSQL publishes a busy backend's counters up to 10 s late: let the
    # set-up's statements settle before the window opens.
    await asyncio.sleep(12 + waiters / 200)
    before = statements_so_far(pg_base, db_name)
    await asyncio.sleep(seconds)
    after = statements_so_far(pg_base, db_name)
    for client in [poster, *clients]:
        await client.ws.close()
    statements = after - before
    return {
        "waiters": waiters,
        "seconds": seconds,
        "statements": statements,
        "statements_per_agent_per_minute": round(statements / waiters / (seconds / 60), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=5, help="posts per wake-up measurement")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--quick", action="store_true", help="10 waiters, 20 s idle")
    options = parser.parse_args()
    if options.quick:
        options.waiters, options.idle_seconds, options.rounds = 10, 20, 3
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    report: dict = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}}

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        sqlite_env = {"DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3"}
        migrate(sqlite_env)
        url = stack.enter_context(server(sqlite_env))
        report["wake_one_process_sqlite"] = asyncio.run(wake_latency(url, url, options.waiters, options.rounds))

    pg_name = "agentchat_bench"
    pg_env = {"DATABASE_URL": postgres_database(options.postgres, pg_name), "REDIS_URL": options.redis}
    migrate(pg_env)
    with ExitStack() as stack:
        first = stack.enter_context(server(pg_env))
        second = stack.enter_context(server(pg_env))
        report["wake_two_processes_postgres_redis"] = asyncio.run(wake_latency(first, second, options.waiters, options.rounds))
    with ExitStack() as stack:
        url = stack.enter_context(server(pg_env))
        report["idle_waiting_cost_postgres"] = asyncio.run(
            idle_cost(url, options.waiters, options.idle_seconds, options.postgres, pg_name)
        )

    print(json.dumps(report, indent=2))
    print()
    print(f"{'figure':55} {'value':>12}")
    for key in ("wake_one_process_sqlite", "wake_two_processes_postgres_redis"):
        r = report[key]
        print(f"{key + ' p50/p99/max ms (' + str(r['waiters']) + ' waiters)':55} {r['p50_ms']}/{r['p99_ms']}/{r['max_ms']:>6}")
    idle = report["idle_waiting_cost_postgres"]
    print(f"{'idle statements per waiting agent per minute':55} {idle['statements_per_agent_per_minute']:>12}")
    print(f"{'idle statements in ' + str(idle['seconds']) + ' s, ' + str(idle['waiters']) + ' waiters':55} {idle['statements']:>12}")


if __name__ == "__main__":
    main()
