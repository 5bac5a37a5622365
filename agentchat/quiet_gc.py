"""
Garbage collection at quiet moments.

A server process that holds thousands of sockets holds hundreds of thousands
of long-lived objects, and a full collection scans them all (50-90 ms with
1,000 sockets open). The thresholds (AGENTCHAT_GC_THRESHOLDS) decide how
often collections run, not when: mostly in the middle of a wake-up, the
moment that allocates the most, where a pause shows in every woken agent's
latency. So once nothing has arrived for QUIET_SECONDS (no frame, no wake-up),
the process runs the collection that is coming due (the one whose count has
passed half its threshold), and the automatic collections, still on for a
process that is never quiet, seldom have to run during a burst.

agentchat/asgi.py enables it in server processes; `activity()` is called for
every frame an agent sends and every wake-up event.
"""

import asyncio
import gc
import time
import weakref

QUIET_SECONDS = 0.2

_enabled = False
_collectors: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, QuietCollector]" = weakref.WeakKeyDictionary()


def enable() -> None:
    global _enabled
    _enabled = True


def activity() -> None:
    """Something arrived: postpone the quiet collection until QUIET_SECONDS after the last such call."""
    if not _enabled:
        return
    loop = asyncio.get_running_loop()
    collector = _collectors.get(loop)
    if collector is None:
        collector = _collectors[loop] = QuietCollector()
    collector.activity()


class QuietCollector:
    def __init__(self) -> None:
        self.last_activity = 0.0
        self._task: asyncio.Task | None = None

    def activity(self) -> None:
        self.last_activity = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._collect_when_quiet(), name="agentchat-quiet-gc")

    async def _collect_when_quiet(self) -> None:
        while True:
            await asyncio.sleep(QUIET_SECONDS)
            if time.monotonic() - self.last_activity >= QUIET_SECONDS:
                collect_due()
                return


def collect_due() -> int | None:
    """Run the oldest collection whose count has passed half its threshold; return its generation (None: none)."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    for generation in (2, 1, 0):
        if counts[generation] >= max(1, thresholds[generation] // 2):
            gc.collect(generation)
            return generation
    return None
