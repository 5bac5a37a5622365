"""System checks that keep the heartbeat settings consistent.

Raising the heartbeat interval without the timeout marks live agents offline
between two heartbeats; these checks stop `check`, `runserver`, `migrate` and
the test run before that can happen.
"""

from django.conf import settings
from django.core.checks import Error, Warning, register

# The timeout should leave room for one late heartbeat plus a once-a-minute cron.
SAFE_MARGIN = 1.5


@register("agentchat")
def check_heartbeat_settings(app_configs, **kwargs) -> list:
    conf = settings.AGENTCHAT
    interval, timeout = conf["HEARTBEAT_INTERVAL"], conf["AGENT_HEARTBEAT_TIMEOUT"]
    if interval <= 0:
        return [
            Error(
                f"HEARTBEAT_INTERVAL must be positive (it is {interval}).",
                hint="Set AGENTCHAT_HEARTBEAT_INTERVAL to a number of seconds, e.g. 40.",
                id="agents.E002",
            )
        ]
    if interval >= timeout:
        return [
            Error(
                f"The heartbeat interval ({interval} s) must be below the heartbeat timeout ({timeout} s), "
                "or live agents are marked offline between two heartbeats.",
                hint="Raise AGENTCHAT_HEARTBEAT_TIMEOUT together with AGENTCHAT_HEARTBEAT_INTERVAL "
                "(the defaults are 40 and 60).",
                id="agents.E001",
            )
        ]
    if timeout < SAFE_MARGIN * interval:
        return [
            Warning(
                f"The heartbeat timeout ({timeout} s) is less than {SAFE_MARGIN} x the interval ({interval} s): "
                "one late heartbeat can mark a live agent offline.",
                hint=f"Set AGENTCHAT_HEARTBEAT_TIMEOUT to at least {int(SAFE_MARGIN * interval)}.",
                id="agents.W001",
            )
        ]
    return []
