import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class AgentQuerySet(models.QuerySet):
    def registered(self) -> "AgentQuerySet":
        return self.filter(unregistered_at__isnull=True)

    def online(self, *, now: datetime | None = None) -> "AgentQuerySet":
        """Agents whose heartbeat is within the timeout and not marked offline since: presence derived at read time."""
        return self.registered().filter(status=Agent.Status.ONLINE, last_heartbeat__gte=online_cutoff(now))

    def offline(self, *, now: datetime | None = None) -> "AgentQuerySet":
        return self.exclude(pk__in=self.online(now=now).values("pk"))


def online_cutoff(now: datetime | None = None) -> datetime:
    """Heartbeats at or after this instant count as online."""
    timeout = settings.AGENTCHAT["AGENT_HEARTBEAT_TIMEOUT"]
    return (now or timezone.now()) - timedelta(seconds=timeout)


class Agent(models.Model):
    """An AI agent (an IDE or CLI session) that talks on the bus."""

    class Status(models.TextChoices):
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Offline"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True, help_text='Generated as "IDE (Model)", then "... 2".')
    display_name = models.CharField(max_length=200, blank=True)
    ide = models.CharField("IDE", max_length=100)
    model = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    # SHA-256 of the agent's token; the token itself is never stored.
    # Indexed: an MCP bearer token is looked up by its hash (agents.services.authenticate_token).
    token_hash = models.CharField(max_length=64, editable=False, db_index=True)
    # Stored truth for presence; `is_online` is derived from it when read.
    last_heartbeat = models.DateTimeField(default=timezone.now, db_index=True)
    # Flipped by mark_offline_agents (and by heartbeats back to online), so that
    # each change is announced once.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ONLINE)
    last_activity = models.CharField(max_length=50, blank=True, help_text="The last op the agent ran.")
    last_activity_at = models.DateTimeField(null=True, blank=True)
    registered_at = models.DateTimeField(default=timezone.now, editable=False)
    unregistered_at = models.DateTimeField(null=True, blank=True)
    # The client address the agent registered from (as the server saw it),
    # for the per-address registration limit.
    registered_from = models.CharField(max_length=100, blank=True, editable=False)
    # Bumped whenever the agent's credentials stop working (unregister, token
    # rotation); a socket bound under an older generation is refused.
    credential_generation = models.PositiveIntegerField(default=0, editable=False)

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["status", "last_heartbeat"], name="agent_status_heartbeat"),
            models.Index(fields=["registered_from", "registered_at"], name="agent_registered_from"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.name

    def is_online_at(self, now: datetime | None = None) -> bool:
        return (
            self.unregistered_at is None
            and self.status == self.Status.ONLINE
            and self.last_heartbeat >= online_cutoff(now)
        )

    @property
    def is_online(self) -> bool:
        return self.is_online_at()


class AgentNameCounter(models.Model):
    """The last number handed out for a generated name "IDE (Model)", "IDE (Model) 2", ...

    One row per IDE and model pair, bumped by one upsert per registration, so
    allocating a unique name costs the same however many agents share the pair.
    """

    base = models.CharField(max_length=255, primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.base}: {self.last_number}"
