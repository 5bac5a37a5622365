"""
ASGI entry point: HTTP goes to Django (the admin) except /mcp, which goes to
the MCP bridge (agentchat/mcp_bridge.py); WebSockets go to the agent consumer.

Run with `daphne agentchat.asgi:application`.
"""

import gc
import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentchat.settings")
try:
    django_asgi_app = get_asgi_application()  # sets Django up before the imports below
except ImproperlyConfigured as error:
    # A malformed environment value (agentchat/settings.py): one line for daphne's log, not a traceback.
    sys.exit(f"Configuration error: {error}")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from agentchat import quiet_gc  # noqa: E402
from agentchat.mcp_bridge import McpBridge, WithMcp  # noqa: E402
from agentchat.origins import browser_origin_validator  # noqa: E402
from agentchat.routing import websocket_urlpatterns  # noqa: E402
from agentchat.transport import configure_daphne  # noqa: E402

# daphne's WebSocket limits come from the settings (agentchat/transport.py).
configure_daphne()

# Everything loaded so far lives as long as the process: keep it out of the
# garbage collector's full passes, which otherwise grow with every object of
# startup and stall the event loop (and every wake-up) while they run.
mcp_bridge = McpBridge()  # its session manager starts with the first /mcp request

gc.freeze()
# Fewer, larger collections for a process holding thousands of sockets
# (AGENTCHAT_GC_THRESHOLDS, agentchat/settings.py).
gc.set_threshold(*settings.AGENTCHAT["GC_THRESHOLDS"])
# ...and run them when nothing is going on, not in the middle of a wake-up.
quiet_gc.enable()

application = ProtocolTypeRouter(
    {
        "http": WithMcp(django_asgi_app, mcp_bridge),
        "websocket": browser_origin_validator(URLRouter(websocket_urlpatterns)),
    }
)
