import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def addressees(metadata: dict | None) -> list[str]:
    """The agents a message is addressed to: its `mentions` and its `handoff_target`."""
    metadata = metadata or {}
    targets = list(metadata.get("mentions") or [])
    if metadata.get("handoff_target"):
        targets.append(metadata["handoff_target"])
    return targets


# Messages whose content agents never see (metadata.visibility, set by humans only).
# The has_key test keeps `exclude(HUMAN_ONLY)` true for messages without the key:
# comparing a missing key gives SQL NULL, and NOT NULL would drop them.
HUMAN_ONLY = Q(metadata__has_key="visibility", metadata__visibility="human_only")


class ThreadTemplate(models.Model):
    """A reusable starting point for threads: a system prompt and metadata."""

    id = models.SlugField(primary_key=True, max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    system_prompt = models.TextField(blank=True)
    default_metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Thread(models.Model):
    """A shared conversation; its messages are numbered 1, 2, 3... by `seq`."""

    class Status(models.TextChoices):
        DISCUSS = "discuss", "Discuss"
        IMPLEMENT = "implement", "Implement"
        REVIEW = "review", "Review"
        DONE = "done", "Done"
        CLOSED = "closed", "Closed"
        ARCHIVED = "archived", "Archived"

    OPEN_STATES = (Status.DISCUSS, Status.IMPLEMENT, Status.REVIEW, Status.DONE)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    topic = models.CharField(max_length=300)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DISCUSS)
    summary = models.TextField(blank=True)
    system_prompt = models.TextField(blank=True)
    template = models.ForeignKey(ThreadTemplate, null=True, blank=True, on_delete=models.SET_NULL)
    metadata = models.JSONField(default=dict, blank=True)
    # The seq of the newest message; bumped under a row lock by post_message.
    last_seq = models.PositiveIntegerField(default=0, editable=False)
    creator = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="created_threads"
    )
    # Closes, archives, reopens and changes the state of the thread (with staff);
    # the creator at first, then whoever it (or staff) hands the role to.
    administrator = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="administered_threads"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Last activity: creation, a post or a state change.
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["topic"], condition=~Q(status="archived"), name="thread_topic_unique_unless_archived"
            )
        ]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="thread_status_updated"),
            models.Index(fields=["creator", "created_at"], name="thread_creator_created"),
        ]

    def __str__(self) -> str:
        return self.topic

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATES


class Message(models.Model):
    """One post in a thread. Never deleted or renumbered; edits keep history."""

    class Role(models.TextChoices):
        USER = "user", "User (human)"
        ASSISTANT = "assistant", "Assistant (agent)"
        SYSTEM = "system", "System"

    class Priority(models.TextChoices):
        NORMAL = "normal", "Normal"
        URGENT = "urgent", "Urgent"
        SYSTEM = "system", "System"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField(editable=False)
    # Null for posts by humans from the admin.
    author = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    author_name = models.CharField(max_length=200)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ASSISTANT)
    content = models.TextField()
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    metadata = models.JSONField(default=dict, blank=True)
    client_msg_id = models.CharField(max_length=200, null=True, blank=True)
    # The nonce of the reply token this post used (threads.services.reply_tokens):
    # a token is used once. None for the messages of humans and of the bus.
    token_nonce = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    edited_at = models.DateTimeField(null=True, blank=True)
    edit_version = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["thread", "seq"]
        constraints = [
            # Gap-free numbering is post_message's job; uniqueness is the database's.
            models.UniqueConstraint(fields=["thread", "seq"], name="message_thread_seq_unique"),
            models.UniqueConstraint(
                fields=["author", "client_msg_id"],
                condition=Q(client_msg_id__isnull=False),
                name="message_author_client_msg_id_unique",
            ),
        ]
        indexes = [models.Index(fields=["author", "created_at"], name="message_author_created")]

    def __str__(self) -> str:
        return f"{self.thread_id}#{self.seq}"

    @property
    def is_human_only(self) -> bool:
        return self.metadata.get("visibility") == "human_only"


class MessageEdit(models.Model):
    """One edit of a message: the content it replaced. Append-only, like the messages."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    # The edit_version this edit gave the message (1 for the first edit).
    version = models.PositiveIntegerField()
    old_content = models.TextField()
    # An agent (msg_edit) or a staff user (the admin); the name stays when either goes.
    editor_agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="message_edits"
    )
    editor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="message_edits"
    )
    editor_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["message", "version"]
        constraints = [
            models.UniqueConstraint(fields=["message", "version"], name="messageedit_message_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.message} v{self.version}"


class Reaction(models.Model):
    """A short free-form reaction by an agent to a message; one of each string per agent."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="reactions")
    reaction = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["message", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "agent", "reaction"], name="reaction_message_agent_unique")
        ]

    def __str__(self) -> str:
        return f"{self.reaction} on {self.message}"


class Participant(models.Model):
    """One agent in one thread: how far the bus delivered the thread to it, how far it read, its last post.

    Cursors only move forward (threads.services.cursors writes them, in one
    statement per batch). `owed_seq` is the oldest message addressed to the
    agent (a mention or handoff by someone else) that was delivered to it and
    that it had not answered (posted after) when it was delivered, and
    `owed_since` when: overdue replies are counted from there. It is owed
    while `last_post_seq` is below it; it stays after the answer (the exact
    delivery time of that message) until the next one is delivered.
    """

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="participants")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="participations")
    delivered_seq = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    seen_seq = models.PositiveIntegerField(default=0)
    seen_at = models.DateTimeField(null=True, blank=True)
    last_post_seq = models.PositiveIntegerField(null=True, blank=True)
    last_post_at = models.DateTimeField(null=True, blank=True)
    owed_seq = models.PositiveIntegerField(null=True, blank=True)
    owed_since = models.DateTimeField(null=True, blank=True)
    # The agent's reply tokens for the thread issued before this serial are void
    # (threads.services.reply_tokens): a msg_wait's end or a SeqMismatch moves it.
    tokens_void_before = models.BigIntegerField(default=0)
    joined_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["thread", "joined_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["agent", "thread"], name="participant_agent_thread_unique")]
        indexes = [
            models.Index(fields=["thread", "joined_at"], name="participant_thread_joined"),
            models.Index(fields=["owed_since"], name="participant_owed_since"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} in {self.thread_id}"


class HumanRequest(models.Model):
    """A message whose agent asks a human for a decision (metadata.needs_human), until answered or dismissed."""

    class Resolution(models.TextChoices):
        ANSWERED = "answered", "Answered"
        DISMISSED = "dismissed", "Dismissed"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="human_request")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="human_requests")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True)
    # The staff message that answered it (reply_to_msg_id), or the reason it was dismissed.
    answer = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["resolved_at", "created_at"], name="humanrequest_open")]

    def __str__(self) -> str:
        return f"request for a human in {self.message}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
