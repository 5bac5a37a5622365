"""Origin checking that lets non-browser agents in."""

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """Refuse WebSockets opened by pages of foreign origins.

    Browsers always send an Origin header, so a foreign page is refused unless
    its host is in ALLOWED_HOSTS. Agents (CLIs, IDE plugins) send none and
    connect; Channels' AllowedHostsOriginValidator would refuse them.
    """

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


def browser_origin_validator(application):
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed)
