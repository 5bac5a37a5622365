"""Helpers for the fault-injection tests (test_faults.py).

A private redis-server the tests can kill and restart (the daphne processes come
from tests/support/servers.py). An AgentChatClient that can lose a post's reply
on purpose and counts what it absorbed. Agent workloads that record every post
they attempt in a Ledger, and the checker that compares the ledger with what
the database stored.
"""

import asyncio
import random
import subprocess
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import connection

from agentchat_client import AgentChatClient, AgentChatError, ConnectionLost
from tests.support.servers import current_database_url, free_port, wait_for_port

# A wait may outlive its own timeout by this much (reconnects, retries, a busy machine).
WAIT_SLACK = 25.0
# One logical post, all its client-side retries included, gets this long.
POST_TIMEOUT = 45.0


class RedisServer:
    """A private redis-server on a fixed loopback port that can be killed and restarted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="agentchat-redis-")
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process, "redis-server")
        self.starts += 1

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill()


class FaultClient(AgentChatClient):
    """AgentChatClient that can lose a post's reply on purpose, and counts its connections and absorbed errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connects = 0
        self.retryable_errors = 0
        self.retryable_codes: set[str] = set()
        # When set, the next msg_post commits but its reply is "lost": the socket
        # drops after the server answered, and this coroutine runs before the retry.
        self.lose_next_post_reply: Callable[[], Awaitable[None]] | None = None

    async def connect(self) -> None:
        self.connects += 1
        await super().connect()

    async def _request(self, op: str, args: dict[str, Any], ws: Any = None) -> dict[str, Any]:
        if op == "msg_post" and self.lose_next_post_reply is not None:
            meanwhile, self.lose_next_post_reply = self.lose_next_post_reply, None
            await super()._request(op, args, ws)
            await self._ws.close()
            await meanwhile()
            raise ConnectionLost()
        try:
            return await super()._request(op, args, ws)
        except AgentChatError as error:
            if error.data.get("retryable"):
                self.retryable_errors += 1
                self.retryable_codes.add(error.code)
            raise


# --- the ledger ------------------------------------------------------------------


@dataclass
class PostRecord:
    agent_id: str
    thread_id: str
    client_msg_id: str
    content: str
    # The message the server acknowledged, if it did.
    acked: dict[str, Any] | None = None
    # Some attempt's reply was lost (connection lost, retryable error): it may be stored.
    lost: bool = False
    attempts: int = 0
    mismatches: int = 0


@dataclass
class Ledger:
    posts: list[PostRecord] = field(default_factory=list)
    # Errors a fault must never cause (a bug in the server or the client).
    unexpected: list[str] = field(default_factory=list)
    # agent_id -> thread_id -> seqs the agent was shown (by msg_wait) or posted itself.
    seen: dict[str, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    counts: Counter = field(default_factory=Counter)

    def saw(self, client: AgentChatClient, thread_id: str, seqs: list[int]) -> None:
        self.seen[client.agent_id][thread_id].extend(seqs)


async def guarded_wait(
    client: AgentChatClient, thread_id: str, ledger: Ledger, *, timeout_ms: int
) -> list[dict] | None:
    """client.wait with a bound; record what it returned. None when the wait failed."""
    try:
        messages = await asyncio.wait_for(client.wait(thread_id, timeout_ms=timeout_ms), timeout_ms / 1000 + WAIT_SLACK)
    except TimeoutError:
        ledger.unexpected.append(f"msg_wait of {client.agent_id} on {thread_id} hung past its timeout")
        return None
    except ConnectionLost:
        ledger.counts["wait_connection_lost"] += 1
        return None
    except AgentChatError as error:
        if error.data.get("retryable"):
            ledger.counts["wait_retryable_exhausted"] += 1
            return None
        ledger.unexpected.append(f"msg_wait of {client.agent_id}: {error.data}")
        return None
    ledger.counts["wait_woken" if messages else "wait_timed_out"] += 1
    ledger.saw(client, thread_id, [m["seq"] for m in messages])
    return messages


async def post_once(
    client: AgentChatClient, thread_id: str, ledger: Ledger, content: str, *, attempts: int = 15
) -> PostRecord:
    """Post one message (one client_msg_id), retrying SeqMismatch (after a wait) and lost replies."""
    record = PostRecord(agent_id=client.agent_id, thread_id=thread_id, client_msg_id=uuid.uuid4().hex, content=content)
    ledger.posts.append(record)
    if "reply_token" not in client.threads.get(thread_id, {}):
        # client.post would wait for a token itself, out of the ledger's sight.
        await guarded_wait(client, thread_id, ledger, timeout_ms=0)
    for _attempt in range(attempts):
        record.attempts += 1
        try:
            message = await asyncio.wait_for(
                client.post(thread_id, content, client_msg_id=record.client_msg_id), POST_TIMEOUT
            )
        except AgentChatError as error:
            if error.code == "SeqMismatch":
                record.mismatches += 1
                # Behind: this returns at once with the missed messages and a fresh token.
                await guarded_wait(client, thread_id, ledger, timeout_ms=0)
                continue
            if error.data.get("retryable"):
                record.lost = True
                ledger.counts["post_retryable_exhausted"] += 1
                await asyncio.sleep(0.3)
                continue
            ledger.unexpected.append(f"msg_post {record.client_msg_id} by {client.agent_id}: {error.data}")
            return record
        except ConnectionLost:
            record.lost = True
            ledger.counts["post_connection_lost"] += 1
            await asyncio.sleep(0.3)
            continue
        except TimeoutError:
            record.lost = True
            ledger.unexpected.append(f"msg_post {record.client_msg_id} by {client.agent_id} hung")
            return record
        record.acked = message
        ledger.saw(client, thread_id, [message["seq"]])
        return record
    return record


async def poster(
    client: AgentChatClient,
    thread_id: str,
    ledger: Ledger,
    *,
    posts: int,
    deadline: float,
    wait_ms: tuple[int, int] = (300, 1500),
) -> None:
    """Post `posts` messages, reading the others' replies in between (bounded by `deadline`)."""
    loop = asyncio.get_running_loop()
    name = client.agent_id[:8]
    for i in range(posts):
        if loop.time() > deadline:
            break
        await post_once(client, thread_id, ledger, f"{name} #{i}")
        await guarded_wait(client, thread_id, ledger, timeout_ms=random.randint(*wait_ms))


async def listener(
    client: AgentChatClient,
    thread_id: str,
    ledger: Ledger,
    *,
    stop: asyncio.Event,
    deadline: float,
    timeout_ms: int = 4000,
) -> None:
    """Wait on a thread over and over, as a silent agent does, until told to stop."""
    loop = asyncio.get_running_loop()
    while not stop.is_set() and loop.time() < deadline:
        if await guarded_wait(client, thread_id, ledger, timeout_ms=timeout_ms) is None:
            await asyncio.sleep(0.2)


async def chatter(
    client: AgentChatClient, thread_id: str, ledger: Ledger, *, stop: asyncio.Event, deadline: float
) -> None:
    """Small requests every 0.1 s beside the client's waits and posts, over the same socket."""
    loop = asyncio.get_running_loop()
    while not stop.is_set() and loop.time() < deadline:
        try:
            await asyncio.wait_for(client.call("thread_get", thread_id=thread_id), WAIT_SLACK)
        except ConnectionLost:
            ledger.counts["chatter_connection_lost"] += 1
        except AgentChatError as error:
            if not error.data.get("retryable"):
                ledger.unexpected.append(f"thread_get of {client.agent_id}: {error.data}")
        except TimeoutError:
            ledger.unexpected.append(f"thread_get of {client.agent_id} hung")
        await asyncio.sleep(0.1)


# --- the checker ------------------------------------------------------------------


def check_storage(ledger: Ledger, thread_ids: list[str]) -> list[str]:
    """Compare the database with the ledger; return the problems (empty: all is well).

    - each thread's messages have seq exactly 1..N, and Thread.last_seq == N;
    - every acknowledged post is stored exactly once, as acknowledged;
    - a post whose reply was lost is stored at most once;
    - nothing else is stored (a refused post leaves no message).
    """
    from threads.models import Message, Thread

    connection.close()  # the fault may have killed this process's connection
    problems: list[str] = []
    stored: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for thread_id in thread_ids:
        rows = list(
            Message.objects.filter(thread_id=thread_id)
            .order_by("seq")
            .values("id", "seq", "author_id", "client_msg_id", "content")
        )
        seqs = [row["seq"] for row in rows]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"thread {thread_id}: seqs are {seqs}, not 1..{len(seqs)}")
        last_seq = Thread.objects.values_list("last_seq", flat=True).get(pk=thread_id)
        if last_seq != len(seqs):
            problems.append(f"thread {thread_id}: last_seq {last_seq} but {len(seqs)} messages")
        for row in rows:
            stored[(str(row["author_id"]), row["client_msg_id"])].append({**row, "thread_id": thread_id})

    for record in ledger.posts:
        rows = stored.pop((record.agent_id, record.client_msg_id), [])
        if record.acked is not None:
            if len(rows) != 1:
                problems.append(f"acknowledged post {record.client_msg_id} stored {len(rows)} times")
                continue
            row = rows[0]
            if (str(row["id"]), row["seq"], row["thread_id"], row["content"]) != (
                record.acked["msg_id"],
                record.acked["seq"],
                record.thread_id,
                record.content,
            ):
                problems.append(f"post {record.client_msg_id} stored as {row}, acknowledged as {record.acked}")
        elif record.lost:
            if len(rows) > 1:
                problems.append(f"post {record.client_msg_id} with a lost reply stored {len(rows)} times")
        elif rows:
            problems.append(f"refused post {record.client_msg_id} stored {len(rows)} times")
    for (author, client_msg_id), rows in stored.items():
        problems.append(f"stored message(s) nobody posted: author {author}, client_msg_id {client_msg_id}: {rows}")
    return problems


def check_reading(ledger: Ledger) -> list[str]:
    """Every agent (all joined before the first post) was shown every message, none skipped."""
    problems = []
    for agent_id, threads in ledger.seen.items():
        for thread_id, seqs in threads.items():
            if not seqs:
                continue
            missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs))
            if missing:
                problems.append(f"agent {agent_id} skipped seqs {missing} of thread {thread_id}")
    return problems


# --- PostgreSQL --------------------------------------------------------------------


def database_conninfo() -> str:
    return current_database_url().replace("postgres://", "postgresql://", 1)


async def terminate_backends(conn: psycopg.AsyncConnection) -> int:
    """Terminate every other session of this test's own database; return how many."""
    cursor = await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return sum(1 for (ok,) in await cursor.fetchall() if ok)
