"""Fault tolerance: Redis restarts, a killed server process, killed database
connections and a late heartbeat, with real daphne processes, PostgreSQL and Redis.

Every scenario ends with the same checker (faults.check_storage): each thread's
seqs are exactly 1..N, every post the client saw acknowledged is stored exactly
once (matched by client_msg_id), a post whose reply the fault swallowed is
stored at most once, and nothing else is stored. Agents also must never skip a
message (faults.check_reading): they resume from their cursor.
"""

import asyncio
import io
import os
import random
from contextlib import ExitStack

import psycopg
import pytest
from asgiref.sync import SyncToAsync
from django.core.management import call_command
from django.db import connection, connections

from agentchat_client import AgentChatClient
from agents.models import Agent as AgentModel
from tests.e2e.faults import (
    FaultClient,
    Ledger,
    RedisServer,
    chatter,
    check_reading,
    check_storage,
    database_conninfo,
    guarded_wait,
    listener,
    post_once,
    poster,
    terminate_backends,
)
from tests.support.servers import Daphne, daphne_on_test_database, require_postgres_and_redis

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

INTERVAL, TIMEOUT = 1, 3
FAST = {
    "AGENTCHAT_HEARTBEAT_INTERVAL": str(INTERVAL),
    "AGENTCHAT_HEARTBEAT_TIMEOUT": str(TIMEOUT),
    "AGENTCHAT_RATE_LIMIT_PER_MINUTE": "0",
}


@pytest.fixture
def servers():
    """Start daphne processes on demand; stop them all (and a private Redis) at the end."""
    require_postgres_and_redis()
    started: list[Daphne] = []
    with ExitStack() as stack:

        def start(env: dict[str, str]) -> Daphne:
            server = stack.enter_context(daphne_on_test_database({**FAST, **env}))
            started.append(server)
            return server

        def redis() -> RedisServer:
            server = RedisServer()
            stack.callback(server.stop)
            server.start()
            return server

        start.redis = redis
        start.started = started
        yield start
    # Whatever happened, the test process's own connection may have been killed.
    connection.close()


def assert_all_well(ledger: Ledger, thread_ids: list[str], servers: list[Daphne]) -> None:
    problems = check_storage(ledger, thread_ids) + check_reading(ledger) + ledger.unexpected
    for server in servers:
        problems += [f"daphne on port {server.port} reported a bug:\n{bug}" for bug in server.bugs()]
    acked = sum(1 for record in ledger.posts if record.acked)
    if os.environ.get("FAULTS_DEBUG"):  # what the faults did, for whoever tunes these tests
        lost = sum(1 for record in ledger.posts if record.lost)
        mismatches = sum(record.mismatches for record in ledger.posts)
        print(f"\nposts={len(ledger.posts)} acked={acked} lost={lost} mismatches={mismatches} {dict(ledger.counts)}")
    assert not problems, "\n".join(problems) + f"\n(counts: {dict(ledger.counts)})"
    assert acked >= len(thread_ids), f"too few posts acknowledged to mean anything: {acked}"


async def connect_all(urls: list[str], model: str) -> list[AgentChatClient]:
    clients = [FaultClient(url, ide="Faults", model=f"{model}{i}") for i, url in enumerate(urls)]
    await asyncio.gather(*(client.connect() for client in clients))
    return clients


async def close_all(clients: list[AgentChatClient]) -> None:
    await asyncio.gather(*(asyncio.wait_for(c.close(), 15) for c in clients), return_exceptions=True)


async def still_answers(url: str) -> None:
    """A fresh agent can connect to the server and use it."""
    async with AgentChatClient(url, ide="Faults", model="Probe", heartbeats=False) as probe:
        config = await asyncio.wait_for(probe.call("bus_get_config"), 15)
        assert config["heartbeat_interval"] == INTERVAL
        agents = await asyncio.wait_for(probe.call("agent_list"), 15)
        assert any(agent["agent_id"] == probe.agent_id for agent in agents["agents"])


async def wakes_across(waiter: AgentChatClient, writer: AgentChatClient, thread_id: str, ledger: Ledger) -> None:
    """A long wait on one process is woken by a post on another (through Redis or the safety net)."""
    wait = asyncio.create_task(guarded_wait(waiter, thread_id, ledger, timeout_ms=20_000))
    await asyncio.sleep(0.5)
    record = await post_once(writer, thread_id, ledger, "wake up")
    assert record.acked is not None, record
    messages = await wait
    assert messages is not None and record.acked["seq"] in [m["seq"] for m in messages], messages


# --- 1. Redis restarts ------------------------------------------------------------


def test_redis_restarted_while_agents_wait_and_post(servers):
    redis = servers.redis()
    a = servers({"REDIS_URL": redis.url})
    b = servers({"REDIS_URL": redis.url})
    ledger = Ledger()

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        # Six posters (three per thread, on both processes) and two listeners.
        clients = await connect_all([a.url, b.url] * 4, "Redis")
        try:
            t1 = await clients[0].join("faults-redis-1")
            t2 = await clients[1].join("faults-redis-2")
            deadline = loop.time() + 35
            stop = asyncio.Event()
            listeners = [
                asyncio.create_task(listener(clients[6], t2, ledger, stop=stop, deadline=deadline)),
                asyncio.create_task(listener(clients[7], t1, ledger, stop=stop, deadline=deadline)),
            ]
            posters = [
                asyncio.create_task(poster(client, thread_id, ledger, posts=8, deadline=deadline))
                for client, thread_id in zip(clients[:6], [t1, t1, t1, t2, t2, t2])
            ]

            await asyncio.sleep(1.5)
            for down, up in ((2.0, 2.0), (1.0, 1.0)):
                await asyncio.to_thread(redis.kill)
                await asyncio.sleep(down)
                await asyncio.to_thread(redis.start)
                await asyncio.sleep(up)
            await asyncio.gather(*posters)
            stop.set()
            await asyncio.gather(*listeners)

            # After the restarts, waits on one process are still woken by posts on the other.
            await wakes_across(clients[7], clients[0], t1, ledger)  # b waits, a posts
            await wakes_across(clients[6], clients[5], t2, ledger)  # a waits, b posts
            assert a.alive() and b.alive(), "a daphne process died"
            await still_answers(a.url)
            await still_answers(b.url)
            return [t1, t2]
        finally:
            await close_all(clients)

    thread_ids = asyncio.run(scenario())
    assert redis.starts == 3
    assert_all_well(ledger, thread_ids, [a, b])


# --- 2. A server process killed ----------------------------------------------------


def test_daphne_killed_mid_wait_agents_resume_on_the_other(servers):
    a = servers({})
    b = servers({})
    ledger = Ledger()

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        clients = await connect_all([a.url] * 5 + [b.url] * 3, "Kill")
        try:
            t1 = await clients[0].join("faults-kill-1")
            t2 = await clients[5].join("faults-kill-2")
            deadline = loop.time() + 35
            stop = asyncio.Event()
            # clients[4] waits on both threads at once over one socket.
            listeners = [
                asyncio.create_task(listener(clients[4], t1, ledger, stop=stop, deadline=deadline)),
                asyncio.create_task(listener(clients[4], t2, ledger, stop=stop, deadline=deadline)),
                asyncio.create_task(listener(clients[7], t1, ledger, stop=stop, deadline=deadline)),
                # Requests beside the waits and posts of agents on the doomed process.
                asyncio.create_task(chatter(clients[0], t1, ledger, stop=stop, deadline=deadline)),
                asyncio.create_task(chatter(clients[4], t2, ledger, stop=stop, deadline=deadline)),
            ]
            posters = [
                asyncio.create_task(poster(client, thread_id, ledger, posts=8, deadline=deadline))
                for client, thread_id in zip(
                    [clients[0], clients[1], clients[5], clients[2], clients[3], clients[6]], [t1, t1, t1, t2, t2, t2]
                )
            ]
            await asyncio.sleep(2.5)
            # Their next connection goes to the survivor (as a load balancer would send it).
            for client in clients:
                if client.url == a.url:
                    client.url = b.url
            await asyncio.to_thread(a.kill)
            await asyncio.gather(*posters)
            stop.set()
            await asyncio.gather(*listeners)

            assert ledger.counts["post_connection_lost"] + ledger.counts["wait_connection_lost"] == 0, ledger.counts
            assert all(client.connects >= 2 for client in clients[:5]), [c.connects for c in clients]
            # The moved agents still wait and post, on the survivor.
            await wakes_across(clients[4], clients[6], t2, ledger)
            await wakes_across(clients[7], clients[1], t1, ledger)
            assert b.alive()
            await still_answers(b.url)
            return [t1, t2]
        finally:
            await close_all(clients)

    thread_ids = asyncio.run(scenario())
    assert not a.alive()
    assert_all_well(ledger, thread_ids, [a, b])


# --- 3. Database connections killed ------------------------------------------------


def test_postgres_connections_terminated_mid_post(servers):
    a = servers({})
    b = servers({})
    ledger = Ledger()
    terminated, retryable = [], []

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        clients = await connect_all([a.url, b.url] * 3, "Pg")
        try:
            t1 = await clients[0].join("faults-pg-1")
            t2 = await clients[1].join("faults-pg-2")
            deadline = loop.time() + 35
            stop = asyncio.Event()
            listeners = [
                asyncio.create_task(listener(clients[4], t2, ledger, stop=stop, deadline=deadline)),
                asyncio.create_task(listener(clients[5], t1, ledger, stop=stop, deadline=deadline)),
            ]
            posters = [
                asyncio.create_task(poster(client, thread_id, ledger, posts=25, deadline=deadline, wait_ms=(100, 600)))
                for client, thread_id in zip(clients[:4], [t1, t1, t2, t2])
            ]
            async with await psycopg.AsyncConnection.connect(database_conninfo(), autocommit=True) as conn:
                # Keep killing connections (bounded) until requests have been hit.
                for round_ in range(40):
                    hit = sum(client.retryable_errors for client in clients)
                    if all(task.done() for task in posters) or (round_ >= 15 and hit):
                        break
                    await asyncio.sleep(random.uniform(0.1, 0.8))
                    terminated.append(await terminate_backends(conn))
            await asyncio.gather(*posters)
            stop.set()
            await asyncio.gather(*listeners)

            retryable.append(sum(client.retryable_errors for client in clients))
            assert set().union(*(client.retryable_codes for client in clients)) <= {"Internal"}
            # Once the database is left alone, everyone posts normally again.
            for client, thread_id in zip(clients[:4], [t1, t1, t2, t2]):
                record = await post_once(client, thread_id, ledger, "back to normal")
                assert record.acked is not None and not record.lost, record
            assert a.alive() and b.alive()
            await still_answers(a.url)
            await still_answers(b.url)
            return [t1, t2]
        finally:
            await close_all(clients)

    thread_ids = asyncio.run(scenario())
    # The terminations also killed the connection this test process keeps on
    # its async ORM thread; drop it so the next test starts with a live one.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
    assert sum(terminated) > 0, terminated
    assert retryable[0] > 0, "no request was hit by the terminated connections"
    assert_all_well(ledger, thread_ids, [a, b])


# --- 5. A lost reply ---------------------------------------------------------------


def test_a_post_whose_reply_was_lost_is_retried_without_skipping_what_others_posted(servers):
    server = servers({})
    ledger = Ledger()

    async def scenario() -> list[str]:
        mine, theirs = await connect_all([server.url] * 2, "Lost")
        try:
            thread_id = await mine.join("faults-lost-reply")
            await guarded_wait(mine, thread_id, ledger, timeout_ms=0)
            await guarded_wait(theirs, thread_id, ledger, timeout_ms=0)

            async def another_agent_replies() -> None:
                record = await post_once(theirs, thread_id, ledger, "a reply the retrying agent must read")
                assert record.acked is not None

            # The post commits, its reply is lost with the connection, someone else
            # posts, and the client reconnects and retries with the same client_msg_id.
            mine.lose_next_post_reply = another_agent_replies
            record = await post_once(mine, thread_id, ledger, "posted once, answered late")
            assert record.acked is not None and record.acked["seq"] == 1, record
            assert mine.connects == 2

            # The agent has not read seq 2: its next post is refused until it has.
            record = await post_once(mine, thread_id, ledger, "having read the reply")
            assert record.mismatches == 1 and record.acked is not None and record.acked["seq"] == 3, record
            assert sorted(ledger.seen[mine.agent_id][thread_id]) == [1, 2, 3]
            return [thread_id]
        finally:
            await close_all([mine, theirs])

    thread_ids = asyncio.run(scenario())
    assert_all_well(ledger, thread_ids, [server])


# --- 4. A late heartbeat ------------------------------------------------------------


def mark_offline(agent_ids: list[str]) -> dict[str, str]:
    """Run `manage.py mark_offline_agents` here; return the agents' stored status.

    The test gives this process the servers' heartbeat settings (agentchat_settings).
    """
    try:
        call_command("mark_offline_agents", stdout=io.StringIO())
        return {
            str(pk): status for pk, status in AgentModel.objects.filter(pk__in=agent_ids).values_list("pk", "status")
        }
    finally:
        connections.close_all()  # this runs on a worker thread; leave no connection behind


def test_a_heartbeat_late_by_less_than_the_slack_never_takes_the_agent_offline(servers, agentchat_settings):
    agentchat_settings(HEARTBEAT_INTERVAL=INTERVAL, AGENT_HEARTBEAT_TIMEOUT=TIMEOUT)
    server = servers({})
    margin = 0.3

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        observer = AgentChatClient(server.url, ide="Faults", model="Observer")
        late = AgentChatClient(server.url, ide="Faults", model="Late", heartbeats=False)
        silent = AgentChatClient(server.url, ide="Faults", model="Silent", heartbeats=False)
        for client in (observer, late, silent):
            await client.connect()
        try:
            config = await observer.call("bus_get_config")
            assert (config["heartbeat_interval"], config["heartbeat_timeout"]) == (INTERVAL, TIMEOUT)
            ids = [late.agent_id, silent.agent_id]
            silent_since = loop.time()

            async def check_online(when: str) -> None:
                status = await asyncio.to_thread(mark_offline, ids)
                assert status[late.agent_id] == "online", f"marked offline {when}"
                agents = {a["agent_id"]: a for a in (await observer.call("agent_list"))["agents"]}
                assert agents[late.agent_id]["is_online"], f"listed offline {when}: {agents[late.agent_id]}"

            async def beat() -> float:
                sent = loop.time()
                result = await late.call("agent_heartbeat")
                assert result["ok"]
                return sent

            last = await beat()
            checked_late = 0
            for cycle in range(3):
                for _ in range(2):  # on schedule
                    await asyncio.sleep(max(0.0, last + INTERVAL - loop.time()))
                    last = await beat()
                    await check_online(f"after an on-time heartbeat (cycle {cycle})")
                # One heartbeat late by timeout - interval - margin; the cron runs just before it.
                due = last + INTERVAL + (TIMEOUT - INTERVAL - margin)
                await asyncio.sleep(max(0.0, due - margin - loop.time()))
                status = await asyncio.to_thread(mark_offline, ids)
                agents = {a["agent_id"]: a for a in (await observer.call("agent_list"))["agents"]}
                in_time = loop.time() - last < TIMEOUT  # else the machine stalled us past the timeout
                if in_time:
                    checked_late += 1
                    assert status[late.agent_id] == "online", "marked offline just before its late heartbeat"
                    assert agents[late.agent_id]["is_online"], agents[late.agent_id]
                await asyncio.sleep(max(0.0, due - loop.time()))
                last = await beat()
                await check_online(f"after the late heartbeat (cycle {cycle})")
                if checked_late >= 2:
                    break
            assert checked_late >= 1, "the machine never ran the cron within the timeout; cannot judge"

            # The cron does work: the agent that said nothing since registering goes offline.
            await asyncio.sleep(max(0.0, silent_since + TIMEOUT + 1 - loop.time()))
            status = await asyncio.to_thread(mark_offline, ids)
            assert status[silent.agent_id] == "offline"
            agents = {a["agent_id"]: a for a in (await observer.call("agent_list"))["agents"]}
            assert not agents[silent.agent_id]["is_online"]
            assert agents[late.agent_id]["is_online"]
        finally:
            await close_all([observer, late, silent])

    asyncio.run(scenario())
    assert server.alive()
    assert not server.bugs(), server.bugs()
