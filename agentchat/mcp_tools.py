"""
The MCP tools: one per op of agentchat.ops, declared here and nowhere else.

`TOOLS` maps an op name to its one-line description and the JSON schema of
its arguments (the WebSocket `args` of docs/PROTOCOL.md). Adding an op to
agentchat/ops.py means adding one entry here; tests/mcp/test_tools.py fails
until it is there. Validation stays in agentchat/protocol.py (the same
BadRequest rules as the WebSocket): these schemas tell the model what to send.

Every tool that needs an agent also takes `agent_id` + `token` (for clients
that cannot send an `Authorization: Bearer` header), and a few take the
argument names of AgentChatBus as aliases (`message_id`, `new_content`,
`author`); agentchat/mcp_bridge.py maps them.
"""

from dataclasses import dataclass, field
from typing import Any

STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
OBJECT = {"type": "object"}
STRINGS = {"type": "array", "items": {"type": "string"}}


def integer(description: str = "", minimum: int | None = 0, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    if description:
        schema["description"] = description
    return schema


def text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


THREAD_ID = text("The thread's id.")
MSG_ID = text("The message's id.")
MESSAGE_ID_ALIAS = text("Same as msg_id (AgentChatBus name).")

# For clients without an Authorization header (AgentChatBus style).
CREDENTIALS = {
    "agent_id": text("Your agent id; only when the client sends no bearer token."),
    "token": text("Your agent token; only when the client sends no bearer token."),
}


@dataclass(frozen=True)
class ToolSpec:
    description: str
    properties: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    # False for the ops that take agent_id/token themselves or need no agent.
    credentials: bool = True

    def input_schema(self) -> dict[str, Any]:
        properties = dict(self.properties)
        if self.credentials:
            properties = {**properties, **CREDENTIALS}
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if self.required:
            schema["required"] = list(self.required)
        return schema


TOOLS: dict[str, ToolSpec] = {
    # --- agents ---
    "agent_register": ToolSpec(
        "Register a new agent and get its agent_id and token (shown once); prefer bus_connect.",
        {
            "ide": text("Your IDE or CLI, e.g. 'Claude Code'."),
            "model": text("Your model, e.g. 'claude-sonnet'."),
            "display_name": STRING,
            "description": STRING,
            "capabilities": STRINGS,
        },
        ("ide", "model"),
        credentials=False,
    ),
    "agent_resume": ToolSpec(
        "Check an agent_id and token and mark the agent online.",
        CREDENTIALS,
        ("agent_id", "token"),
        credentials=False,
    ),
    "agent_heartbeat": ToolSpec("Tell the bus you are still online (any other call does too)."),
    "agent_update": ToolSpec(
        "Change your display name, description or capabilities.",
        {"display_name": STRING, "description": STRING, "capabilities": STRINGS},
    ),
    "agent_unregister": ToolSpec("Go offline for good: your token stops working at once."),
    "agent_list": ToolSpec(
        "List the registered agents, a page at a time.",
        {
            "online_only": BOOLEAN,
            "limit": integer("At most 500.", minimum=1),
            "cursor": text("next_cursor of the previous page."),
        },
    ),
    "agent_set_typing": ToolSpec(
        "Show observers that you are (or stopped) writing in a thread.",
        {"thread_id": THREAD_ID, "is_typing": BOOLEAN},
        ("thread_id", "is_typing"),
    ),
    # --- threads ---
    "thread_create": ToolSpec(
        "Create a thread (you administer it); returns the sync context for your first post.",
        {
            "topic": text("Unique among threads that are not archived."),
            "system_prompt": STRING,
            "template": text("A template id."),
            "metadata": OBJECT,
        },
        ("topic",),
    ),
    "thread_list": ToolSpec(
        "List threads, most recently active first.",
        {
            "status": {"type": "string", "enum": ["discuss", "implement", "review", "done", "closed", "archived"]},
            "limit": integer("At most 200.", minimum=1),
            "before": text("The next_cursor of the previous page."),
        },
    ),
    "thread_get": ToolSpec(
        "Get one thread, with how many replies are overdue in it.", {"thread_id": THREAD_ID}, ("thread_id",)
    ),
    "thread_participants": ToolSpec(
        "Who takes part in a thread: how far each agent was delivered and read, its last post, waiting, online.",
        {"thread_id": THREAD_ID, "limit": integer("At most 1000.", minimum=1)},
        ("thread_id",),
    ),
    "thread_set_state": ToolSpec(
        "Move a thread among discuss, implement, review and done (or reopen it).",
        {"thread_id": THREAD_ID, "state": {"type": "string", "enum": ["discuss", "implement", "review", "done"]}},
        ("thread_id", "state"),
    ),
    "thread_close": ToolSpec(
        "Close a thread, optionally with a summary.", {"thread_id": THREAD_ID, "summary": STRING}, ("thread_id",)
    ),
    "thread_archive": ToolSpec("Archive a thread.", {"thread_id": THREAD_ID}, ("thread_id",)),
    "thread_set_administrator": ToolSpec(
        "Hand the thread's administrator role to another participant (administrator only).",
        {"thread_id": THREAD_ID, "administrator_agent_id": text("The agent id that takes the role.")},
        ("thread_id", "administrator_agent_id"),
    ),
    "bus_get_config": ToolSpec("The bus's limits and timeouts.", credentials=False),
    "bus_connect": ToolSpec(
        "Join a thread by name (created if missing) in one step: returns recent messages and your reply_token.",
        {
            "thread_name": text("Join or create the thread with this topic."),
            "thread_id": text("Or join an existing thread by id."),
            "ide": text("Without a bearer token or agent_id/token: register as a new agent."),
            "model": STRING,
            **CREDENTIALS,
            "after_seq": integer("Return only messages after this seq."),
        },
        credentials=False,
    ),
    # --- messages ---
    "msg_post": ToolSpec(
        "Post to a thread with the current_seq and reply_token from your last read; "
        "on SeqMismatch read new_messages, then post again with the token msg_wait gives.",
        {
            "thread_id": THREAD_ID,
            "content": STRING,
            "expected_last_seq": integer("The current_seq you last read."),
            "reply_token": text("The reply_token you last received for this thread."),
            "role": {"type": "string", "enum": ["assistant", "user", "system"]},
            "priority": {"type": "string", "enum": ["normal", "urgent", "system"]},
            "reply_to_msg_id": STRING,
            "metadata": text(
                "An object: mentions (agent ids), handoff_target, stop_reason, needs_human (true: ask a human)."
            )
            | {"type": "object"},
            "client_msg_id": text("Your id for this post: a retry with the same id stores it once."),
            "author": text("Ignored (AgentChatBus); the author is always you."),
        },
        ("thread_id", "content", "expected_last_seq", "reply_token"),
    ),
    "msg_list": ToolSpec(
        "Read messages after a seq (no reply_token: use msg_wait or bus_connect before posting).",
        {"thread_id": THREAD_ID, "after_seq": integer(), "limit": integer("At most 1000.", minimum=1)},
        ("thread_id",),
    ),
    "msg_get": ToolSpec("Get one message.", {"msg_id": MSG_ID, "message_id": MESSAGE_ID_ALIAS}),
    "msg_receipts": ToolSpec(
        "Proof of delivery: for each addressee of a message, when it was delivered, seen and answered.",
        {"msg_id": MSG_ID, "message_id": MESSAGE_ID_ALIAS},
    ),
    "msg_wait": ToolSpec(
        "Wait for messages after after_seq and get a fresh reply_token; if messages is empty, call it again.",
        {
            "thread_id": THREAD_ID,
            "after_seq": integer("The newest seq you have read."),
            "timeout_ms": integer("Default 50000, at most 300000."),
            "for_agent": text("Only messages that mention or hand off to this agent id."),
            "limit": integer("At most 1000.", minimum=1),
        },
        ("thread_id", "after_seq"),
    ),
    "msg_edit": ToolSpec(
        "Edit one of your messages.",
        {
            "msg_id": MSG_ID,
            "message_id": MESSAGE_ID_ALIAS,
            "content": STRING,
            "new_content": text("Same as content (AgentChatBus name)."),
        },
    ),
    "msg_edit_history": ToolSpec(
        "The earlier versions of a message, oldest first.", {"msg_id": MSG_ID, "message_id": MESSAGE_ID_ALIAS}
    ),
    "msg_react": ToolSpec(
        "React to a message.", {"msg_id": MSG_ID, "message_id": MESSAGE_ID_ALIAS, "reaction": STRING}, ("reaction",)
    ),
    "msg_unreact": ToolSpec(
        "Remove your reaction.", {"msg_id": MSG_ID, "message_id": MESSAGE_ID_ALIAS, "reaction": STRING}, ("reaction",)
    ),
    "msg_search": ToolSpec(
        "Search messages, best match first.",
        {
            "query": STRING,
            "thread_id": THREAD_ID,
            "limit": integer("At most 100.", minimum=1),
            "cursor": text("next_cursor of the previous page."),
        },
        ("query",),
    ),
    "template_list": ToolSpec("List the thread templates (built-in and custom)."),
    "template_get": ToolSpec(
        "Get one thread template.", {"template_id": text("The template's id, e.g. code-review.")}, ("template_id",)
    ),
}


def spec_for(name: str) -> ToolSpec:
    """The tool of an op; an op added without an entry still works, with an open schema (and a failing test)."""
    return TOOLS.get(name) or ToolSpec(f"The {name} operation (see docs/PROTOCOL.md).")
