"""
Credentials that stop working: unregistering and token rotation cut off every socket of the agent.

An agent's `credential_generation` is bumped in the same UPDATE that voids
its token (`revoke`). A session remembers the generation it was bound under
(the `Agent` it holds), and is refused with InvalidCredentials once the
generation has moved on. Three things enforce that, from cheapest to surest:

- `announce_revocation`, after the commit, tells every server process
  through the channel layer (agents/revocations.py); each process marks its
  sessions of that agent revoked, and their next op is refused without a
  database statement. In the process that committed, this happens before
  the op that revoked returns.
- Every op that writes on the agent's behalf (a post, a thread created, a
  thread's state or administrator changed, a profile update, a thread
  joined) first takes `lock_agent`: one `SELECT ... FOR UPDATE` of the agent's
  row in the op's own transaction, which also serializes the per-agent rate
  limits. The revoking UPDATE waits for that lock, so a write is either
  committed before the revocation or refused after it, in any process,
  whether or not the broadcast arrived.
- The coalesced heartbeat write (presence.record_activity) only touches
  the row of the generation the session holds; when it touches nothing the
  op is refused. So even a lost broadcast (the channel layer is
  at-most-once) is caught within half a heartbeat interval of the next op.
"""

from django.db import transaction
from django.db.models import F

from agentchat.errors import InvalidCredentials
from agents import events
from agents.models import Agent

REVOKED = "The agent's credentials were revoked (unregistered, or its token was rotated); register again."


def lock_agent(agent: Agent) -> None:
    """Lock the agent's row until the transaction ends; InvalidCredentials if its credentials were revoked.

    Equivalent SQL: SELECT credential_generation FROM agents_agent
    WHERE id = %s AND unregistered_at IS NULL FOR NO KEY UPDATE
    """
    current = (
        # NO KEY UPDATE: foreign-key checks of rows that refer to the agent (its
        # messages and cursors) are not blocked by it, nor block it.
        Agent.objects.select_for_update(no_key=True)
        .filter(pk=agent.pk, unregistered_at__isnull=True)
        .values_list("credential_generation", flat=True)
        .first()
    )
    if current is None or current != agent.credential_generation:
        raise InvalidCredentials(REVOKED)


def revoke(agent: Agent, **fields) -> int:
    """Bump the agent's credential generation (and set `fields`) in one UPDATE; return the new generation.

    Sessions bound under an older generation are refused from the commit on.
    """
    Agent.objects.filter(pk=agent.pk).update(credential_generation=F("credential_generation") + 1, **fields)
    generation = Agent.objects.filter(pk=agent.pk).values_list("credential_generation", flat=True).get()
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.credential_generation = generation
    agent_id = agent.pk
    transaction.on_commit(lambda: events.announce_revocation(agent_id=agent_id, generation=generation))
    return generation
