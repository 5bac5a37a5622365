"""
The agents' domain, split by job:

- `registration`: register, authenticate, resume, update, unregister, rotate a token, list;
- `presence`: where heartbeats are written (coalesced), typing, and marking agents offline;
- `credentials`: revoking an agent's credentials (every socket bound to it), and the row lock
  that both checks them and serializes an agent's writes;
- `limits`: registrations per client address.

Callers import the functions from here.
"""

from agents.services.credentials import lock_agent
from agents.services.limits import check_registration_rate
from agents.services.presence import (
    heartbeat_due,
    heartbeat_would_lag,
    heartbeat_writes,
    mark_offline,
    mark_offline_agents,
    note_activity,
    record_activity,
    refresh_heartbeats,
    set_typing,
    store_heartbeats,
)
from agents.services.registration import (
    authenticate,
    authenticate_token,
    encode_agent_cursor,
    get_agent,
    inactive_agents,
    list_agents,
    page_agents,
    purge_inactive_agents,
    register_agent,
    resume_agent,
    rotate_token,
    unregister_agent,
    update_agent,
)

__all__ = [
    "heartbeat_due",
    "note_activity",
    "authenticate",
    "authenticate_token",
    "encode_agent_cursor",
    "check_registration_rate",
    "get_agent",
    "heartbeat_would_lag",
    "heartbeat_writes",
    "inactive_agents",
    "list_agents",
    "lock_agent",
    "mark_offline",
    "mark_offline_agents",
    "page_agents",
    "purge_inactive_agents",
    "record_activity",
    "refresh_heartbeats",
    "register_agent",
    "resume_agent",
    "rotate_token",
    "set_typing",
    "store_heartbeats",
    "unregister_agent",
    "update_agent",
]
