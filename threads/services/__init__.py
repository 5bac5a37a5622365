"""
The threads' domain, split by job:

- `reply_tokens`: signing and checking reply tokens (the lease, single-use and voiding rules);
- `lifecycle`: creating threads, state changes, closing (also idle ones, for cron) and archiving;
- `administrator`: handing a thread's administrator role on;
- `joining`: bus_connect and joining a thread;
- `posting`: where a message gets its seq (agents' posts under the sync rules, humans' posts);
- `waits`: msg_wait's batched reads and the tokens that end waits;
- `editing`: edits of a message's content, with their history;
- `reactions`: adding and removing reactions;
- `cursors`: how far each agent got in each thread (delivered, seen, last post), one statement per batch;
- `reading`: msg_list and msg_get, which move the reader's cursors;
- `human_requests`: requests for a human (metadata.needs_human): queue, answers, dismissals, mail.

Callers import the functions from here.
"""

from threads.services.administrator import set_administrator
from threads.services.announcements import BUS_AUTHOR
from threads.services.cursors import Advance, advance_cursors
from threads.services.editing import Edited, edit_message
from threads.services.human_requests import dismiss_request
from threads.services.joining import BUS_GUIDANCE, Joined, bus_connect, join_thread
from threads.services.lifecycle import (
    archive_thread,
    check_administrator,
    check_thread_rate,
    close_idle_threads,
    close_thread,
    close_threads,
    create_thread,
    idle_threads,
    set_thread_state,
)
from threads.services.posting import STOP_REASONS, post_human_message, post_message
from threads.services.reactions import MAX_REACTION_CHARS, MAX_REACTIONS_PER_MESSAGE, react, unreact
from threads.services.reading import get_message_for, list_messages_for
from threads.services.reply_tokens import SyncContext, issue_reply_token, issue_reply_tokens
from threads.services.waits import (
    Bookkeeping,
    WaitRequest,
    WaitResult,
    ended_wait,
    finish_wait,
    serve_waits,
    write_bookkeeping,
    write_cursors,
)

__all__ = [
    "Advance",
    "Bookkeeping",
    "BUS_AUTHOR",
    "BUS_GUIDANCE",
    "MAX_REACTIONS_PER_MESSAGE",
    "MAX_REACTION_CHARS",
    "STOP_REASONS",
    "Edited",
    "Joined",
    "SyncContext",
    "WaitRequest",
    "WaitResult",
    "advance_cursors",
    "archive_thread",
    "bus_connect",
    "check_administrator",
    "check_thread_rate",
    "close_idle_threads",
    "close_thread",
    "close_threads",
    "create_thread",
    "dismiss_request",
    "edit_message",
    "ended_wait",
    "finish_wait",
    "get_message_for",
    "idle_threads",
    "issue_reply_token",
    "issue_reply_tokens",
    "join_thread",
    "list_messages_for",
    "post_human_message",
    "post_message",
    "react",
    "serve_waits",
    "set_administrator",
    "set_thread_state",
    "unreact",
    "write_bookkeeping",
    "write_cursors",
]
