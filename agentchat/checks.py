"""System checks that keep the size limits consistent (agentchat/transport.py).

A reply may not exceed MAX_REPLY_BYTES, which is also daphne's WebSocket
message limit; every list and wait stops short of it. That only works if the
largest message the bus accepts fits in one reply: otherwise no msg_list or
msg_wait could ever return it.
"""

from django.conf import settings
from django.core.checks import Error, register

from agentchat.transport import REPLY_OVERHEAD_BYTES


@register("agentchat")
def check_size_limits(app_configs, **kwargs) -> list:
    from threads.services.posting import largest_message_bytes

    conf = settings.AGENTCHAT
    reply, chars, frame = conf["MAX_REPLY_BYTES"], conf["MAX_MESSAGE_CHARS"], conf["MAX_FRAME_BYTES"]
    errors = []
    if frame <= 0 or chars <= 0:
        errors.append(
            Error(
                f"MAX_FRAME_BYTES ({frame}) and MAX_MESSAGE_CHARS ({chars}) must be positive.",
                hint="Unset AGENTCHAT_MAX_FRAME_BYTES and AGENTCHAT_MAX_MESSAGE_CHARS for the defaults.",
                id="agentchat.E051",
            )
        )
        return errors
    needed = REPLY_OVERHEAD_BYTES + largest_message_bytes(chars)
    if reply < needed:
        errors.append(
            Error(
                f"MAX_REPLY_BYTES ({reply}) cannot carry one message of MAX_MESSAGE_CHARS ({chars}) characters, "
                f"which takes up to {needed} bytes in a reply (6 bytes a character when escaped).",
                hint=f"Raise AGENTCHAT_MAX_REPLY_BYTES to at least {needed}, or lower AGENTCHAT_MAX_MESSAGE_CHARS "
                f"to at most {max(0, (reply - needed) // 6 + chars)}.",
                id="agentchat.E050",
            )
        )
    return errors
