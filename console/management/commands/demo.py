"""Start a few simulated agents that talk in a thread, so the console comes alive.

    manage.py demo                        # against http://127.0.0.1:8000 (scripts/serve)
    manage.py demo --url ws://host:port/ws/agent/ --rounds 3 --pause 2

They are real WebSocket clients (agentchat_client) and follow the sync rules:
each reads before it writes, waits for the others with msg_wait, mentions a
colleague and hands the work over.
"""

import asyncio

from django.core.management.base import BaseCommand, CommandError

from agentchat_client import AgentChatClient, AgentChatError

CAST = [
    ("VS Code", "claude-sonnet", "Planner"),
    ("Cursor", "gpt-5", "Builder"),
    ("Zed", "gemini-pro", "Reviewer"),
]

SCRIPT = [
    # (speaker, text, who is mentioned or handed over to)
    (0, "Goal for today: add a retry to the upload client. Builder, can you take it?", ("mention", 1)),
    (1, "Yes. Question first: retry on 5xx only, or on timeouts too?", None),
    (0, "Both, with exponential backoff capped at 30 s.", None),
    (
        1,
        "Done in `upload.py`:\n```python\nfor attempt in range(5):\n    ...\n```\nReviewer, over to you.",
        ("handoff", 2),
    ),
    (2, "Looks right. One nit: log the attempt number. Approved after that.", None),
    (1, "Logged. Thanks!", None),
]


class Command(BaseCommand):
    help = "Run simulated agents against a running server so the console shows a live conversation."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="ws://127.0.0.1:8000/ws/agent/", help="The server's agent socket.")
        parser.add_argument("--thread", default="Demo: upload retries", help="The thread's topic.")
        parser.add_argument("--rounds", type=int, default=2, help="How many times to play the script.")
        parser.add_argument("--pause", type=float, default=3.0, help="Seconds each agent 'types' before posting.")

    def handle(self, *args, **options):
        try:
            asyncio.run(self.play(**{k: options[k] for k in ("url", "thread", "rounds", "pause")}))
        except OSError as error:
            raise CommandError(f"Could not reach {options['url']} ({error}); start the server first.") from None
        self.stdout.write(self.style.SUCCESS("Demo finished."))

    async def play(self, *, url: str, thread: str, rounds: int, pause: float) -> None:
        agents = [AgentChatClient(url, ide=ide, model=model) for ide, model, _ in CAST]
        for agent, (_, _, name) in zip(agents, CAST):
            await agent.connect()
            await agent.call("agent_update", display_name=name)
        try:
            thread_id = await agents[0].join(thread)
            for agent in agents[1:]:
                await agent.join(thread_id=thread_id)
            self.stdout.write(f"Agents joined thread {thread_id}; open it in the admin to watch.")
            for _ in range(rounds):
                for speaker, text, target in SCRIPT:
                    await self.say(agents, speaker, thread_id, text, target, pause)
        finally:
            for agent in agents:
                await agent.close()

    async def say(self, agents, speaker: int, thread_id: str, text: str, target, pause: float) -> None:
        agent = agents[speaker]
        # The others listen meanwhile: they show as "waiting now" in the console.
        listeners = [asyncio.create_task(a.wait(thread_id, timeout_ms=60_000)) for a in agents if a is not agent]
        await agent.wait(thread_id, timeout_ms=0)  # read before writing
        await agent.call("agent_set_typing", thread_id=thread_id, is_typing=True)
        await asyncio.sleep(pause)
        metadata = {}
        if target is not None:
            kind, index = target
            other = agents[index].agent_id
            metadata = {"mentions": [other]} if kind == "mention" else {"handoff_target": other}
        try:
            await agent.post(thread_id, text, metadata=metadata)
        except AgentChatError as error:
            self.stderr.write(f"{CAST[speaker][2]}: {error}")
        finally:
            await agent.call("agent_set_typing", thread_id=thread_id, is_typing=False)
        await asyncio.gather(*listeners, return_exceptions=True)
        self.stdout.write(f"{CAST[speaker][2]}: {text.splitlines()[0]}")
