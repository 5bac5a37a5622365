"""bus_connect: register or resume an agent, join a thread (creating it by name), hand over what it needs."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from agentchat.errors import BadRequest
from agents import services as agent_services
from agents.models import Agent
from threads import selectors
from threads.models import Message, Thread
from threads.services.cursors import advance_cursors, delivery
from threads.services.lifecycle import check_thread_rate, clean_topic, insert_thread
from threads.services.reply_tokens import SyncContext, issue_reply_token

# Prepended to every thread's own prompt in bus_connect.
BUS_GUIDANCE = (
    "You are one of several agents collaborating in a shared AgentChat thread. "
    "Read every new message before you post: each post must carry the reply_token "
    "and expected_last_seq from your latest msg_wait, msg_post or bus_connect. "
    "If a post is refused with SeqMismatch, read the new_messages it carries and "
    "call msg_wait for a fresh token. Wait with msg_wait instead of polling, keep "
    "posts short and concrete, and mention an agent (metadata.mentions) or hand "
    "off (metadata.handoff_target) when you need a specific agent to act."
)

# bus_connect returns at most this many of the newest unseen messages.
JOIN_MESSAGES = 50


@dataclass
class Joined:
    """An agent in a thread: what bus_connect returns."""

    agent: Agent
    thread: Thread
    created: bool
    messages: list[Message]
    truncated: bool
    sync: SyncContext
    # The agent's token, when bus_connect registered it just now (shown this once).
    token: str | None = None

    @property
    def is_administrator(self) -> bool:
        return self.thread.administrator_id == self.agent.pk

    @property
    def system_prompt(self) -> str:
        return "\n\n".join(part for part in (BUS_GUIDANCE, self.thread.system_prompt) if part)


def join_thread(
    *, agent: Agent, thread_id: str | None = None, thread_name: str | None = None, after_seq: int = 0
) -> Joined:
    """Find (or create, by name) a thread and hand the agent what it needs to post."""
    created = False
    if thread_id is not None:
        thread = selectors.get_thread(thread_id=thread_id)
    else:
        topic = clean_topic(thread_name or "")
        thread = Thread.objects.exclude(status=Thread.Status.ARCHIVED).filter(topic=topic).first()
        if thread is None:
            check_thread_rate(agent, now=timezone.now())
            try:
                thread = insert_thread(topic=topic, creator=agent)
                created = True
            except IntegrityError:  # another agent created it a moment ago
                thread = Thread.objects.exclude(status=Thread.Status.ARCHIVED).get(topic=topic)
    messages, truncated = selectors.newest_messages(thread=thread, after_seq=after_seq, limit=JOIN_MESSAGES)
    # The thread row may be older than the newest message read: never hand out less than was read.
    current_seq = max(thread.last_seq, messages[-1].seq if messages else 0)
    sync = issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=current_seq)
    # Joined, and handed the newest messages (the reply keeps the newest when it trims).
    advance_cursors([delivery(thread_id=thread.pk, agent_id=agent.pk, messages=messages)])
    return Joined(agent=agent, thread=thread, created=created, messages=messages, truncated=truncated, sync=sync)


@transaction.atomic
def bus_connect(
    *,
    agent: Agent | None,
    thread_id: str | None = None,
    thread_name: str | None = None,
    ide: str | None = None,
    model: str | None = None,
    agent_id: str | None = None,
    token: str | None = None,
    after_seq: int = 0,
    client_address: str | None = None,
) -> Joined:
    """Register or resume the agent (or keep the bound one), then join the thread.

    `client_address` is where a registration comes from (REGISTER_RATE_PER_MINUTE).
    """
    if thread_id is None and thread_name is None:
        raise BadRequest("Give thread_name or thread_id.", field="thread_name")
    new_token = None
    if agent_id is not None or token is not None:
        if agent_id is None or token is None:
            raise BadRequest("agent_id and token go together.", field="token" if token is None else "agent_id")
        agent = agent_services.resume_agent(agent_id=agent_id, token=token)
    elif ide is not None or model is not None:
        if ide is None or model is None:
            raise BadRequest("ide and model go together.", field="model" if model is None else "ide")
        agent, new_token = agent_services.register_agent(ide=ide, model=model, client_address=client_address)
    elif agent is None:
        raise BadRequest("Give ide and model to register, or agent_id and token to resume.", field="ide")
    else:
        agent_services.lock_agent(agent)  # the bound agent's credentials still hold
    joined = join_thread(agent=agent, thread_id=thread_id, thread_name=thread_name, after_seq=after_seq)
    joined.token = new_token
    return joined
