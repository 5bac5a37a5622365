"""How many agents one client address may register per minute (REGISTER_RATE_PER_MINUTE)."""

from datetime import datetime

from django.conf import settings

from agentchat import ratelimit
from agents.models import Agent


def check_registration_rate(client_address: str, *, now: datetime) -> None:
    """RateLimited when the address registered REGISTER_RATE_PER_MINUTE agents in the last minute.

    Runs in the registering transaction, under a lock on the address, so
    that processes registering from one address at once count each other.
    """
    limit = settings.AGENTCHAT["REGISTER_RATE_PER_MINUTE"]
    if not limit:
        return
    ratelimit.lock_key(f"agentchat.register:{client_address}")
    ratelimit.enforce(
        Agent.objects.filter(registered_from=client_address),
        field="registered_at",
        limit=limit,
        now=now,
        what="agent registrations from this address",
    )
