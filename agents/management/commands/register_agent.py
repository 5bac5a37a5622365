"""Register an agent and print its id and token: the bearer token of an MCP client's configuration."""

from django.core.management.base import BaseCommand

from agents import services


class Command(BaseCommand):
    help = "Register a new agent and print its agent_id and token (shown once; store it like a password)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--ide", required=True, help="e.g. 'Claude Code'")
        parser.add_argument("--model", required=True, help="e.g. 'claude-sonnet'")
        parser.add_argument("--display-name", default="")
        parser.add_argument("--token-only", action="store_true", help="print only the token (for scripts)")

    def handle(self, *args, ide: str, model: str, display_name: str, token_only: bool, **options) -> None:
        agent, token = services.register_agent(ide=ide, model=model, display_name=display_name)
        if token_only:
            self.stdout.write(token)
            return
        self.stdout.write(f"agent_id: {agent.pk}\nname:     {agent.name}\ntoken:    {token}")
        self.stdout.write("The token is shown once. To revoke it, use the admin action 'Rotate token' on the agent.")
