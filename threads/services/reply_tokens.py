"""
Reply tokens: permission to post once in a thread, having read up to a seq.

The one home of the token rules. A token is signed by the server, not stored:
it carries the thread, the agent, the seq read, when it was issued (a serial,
unique and increasing in a process), its expiry and a random nonce, with an
HMAC of them keyed by SECRET_KEY (tokens signed under SECRET_KEY_FALLBACKS are
accepted too). So issuing tokens costs no database statement, however many a
wake-up issues. What the database keeps is small and per use, not per token:

- **single use**: the message a token was used for stores its nonce
  (`Message.token_nonce`, unique), so a second use is `ReplyTokenReplay`;
- **voiding**: `Participant.tokens_void_before` holds a serial per agent and
  thread; a token issued before it is void (`ReplyTokenInvalid`). msg_wait
  moves it to its own token's serial when it ends (voiding the agent's older
  tokens), a SeqMismatch past every token issued so far. It rides in the
  cursor upsert (`threads.services.cursors`), which a request writes anyway.

A token that is malformed, forged, signed under another key, or another
agent's or thread's is `ReplyTokenInvalid`; one past its lease is
`ReplyTokenExpired`.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import struct
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from agentchat.errors import ReplyTokenExpired, ReplyTokenInvalid, ReplyTokenReplay
from agents.serializers import iso

PREFIX = "rt1."
# thread, agent (16 bytes each), read seq, issued serial, expiry (microseconds), nonce
_PAYLOAD = struct.Struct(">16s16sQqqq")
_MAC_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SyncContext:
    """What an agent needs for its next post: the seq it has read and a token."""

    current_seq: int
    reply_token: str
    expires_at: datetime
    max_new_messages: int
    # The token's serial: the agent's older tokens are void once this is stored
    # as the thread's `tokens_void_before` for the agent (msg_wait does).
    serial: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "current_seq": self.current_seq,
            "reply_token": self.reply_token,
            "reply_window": {"expires_at": iso(self.expires_at), "max_new_messages": self.max_new_messages},
        }


@dataclass(frozen=True)
class Claims:
    """What a valid signature vouches for."""

    thread_id: UUID
    agent_id: UUID
    read_seq: int
    serial: int
    expires_us: int
    nonce: int


def microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class _Serials:
    """Issue serials: the issuing time in microseconds, made strictly increasing within the process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self, now: datetime, count: int = 1) -> int:
        """The first of `count` consecutive serials, none below `now`."""
        with self._lock:
            first = max(microseconds(now), self._last + 1)
            self._last = first + count - 1
        return first


serials = _Serials()


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return hashlib.sha256(b"agentchat.reply-token:" + secret.encode()).digest()


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, payload, "sha256")[:_MAC_BYTES]


def issue_reply_token(*, thread_id: Any, agent_id: Any, read_seq: int, now: datetime | None = None) -> SyncContext:
    """A fresh token for an agent that has read a thread up to `read_seq`. No database statement."""
    [context] = issue_reply_tokens([(thread_id, agent_id, read_seq)], now=now)
    return context


def issue_reply_tokens(grants: list[tuple[Any, Any, int]], *, now: datetime | None = None) -> list[SyncContext]:
    """A token per (thread_id, agent_id, read_seq) grant, in order, with increasing serials."""
    now = now or timezone.now()
    conf = settings.AGENTCHAT
    expires_at = now + timedelta(seconds=conf["REPLY_TOKEN_LEASE_SECONDS"])
    expires_us = microseconds(expires_at)
    key = _key(settings.SECRET_KEY)
    first = serials.next(now, len(grants))
    contexts = []
    for offset, (thread_id, agent_id, read_seq) in enumerate(grants):
        serial = first + offset
        payload = _PAYLOAD.pack(
            _uuid_bytes(thread_id), _uuid_bytes(agent_id), read_seq, serial, expires_us, secrets.randbits(63)
        )
        token = PREFIX + base64.urlsafe_b64encode(payload + _mac(key, payload)).decode().rstrip("=")
        contexts.append(
            SyncContext(
                current_seq=read_seq,
                reply_token=token,
                expires_at=expires_at,
                max_new_messages=conf["SEQ_TOLERANCE"],
                serial=serial,
            )
        )
    return contexts


def claims_of(token: str) -> Claims:
    """The claims of a token this server signed, whoever it was issued to; ReplyTokenInvalid otherwise."""
    invalid = ReplyTokenInvalid("This reply token is not valid for this agent and thread.")
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(token[len(PREFIX) :] + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if len(payload) != _PAYLOAD.size:
        raise invalid
    secrets_to_try = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if not any(hmac.compare_digest(_mac(_key(secret), payload), mac) for secret in secrets_to_try):
        raise invalid
    thread, agent, read_seq, serial, expires_us, nonce = _PAYLOAD.unpack(payload)
    return Claims(UUID(bytes=thread), UUID(bytes=agent), read_seq, serial, expires_us, nonce)


def read_reply_token(token: str, *, thread_id: Any, agent_id: Any) -> Claims:
    """The claims of a token signed by this server for this agent and thread; ReplyTokenInvalid otherwise.

    Neither single use, voiding nor expiry is checked here (see `check_reply_token`).
    """
    claims = claims_of(token)
    try:
        mine = claims.thread_id == _uuid(thread_id) and claims.agent_id == _uuid(agent_id)
    except ValueError:
        mine = False
    if not mine:
        raise ReplyTokenInvalid("This reply token is not valid for this agent and thread.")
    return claims


def check_reply_token(claims: Claims, *, void_before: int | None, consumed: bool, now: datetime) -> None:
    """Refuse a signed token that is void, already used, or expired (in that order of errors)."""
    if void_before is not None and claims.serial < void_before:
        raise ReplyTokenInvalid("This reply token was voided by a newer msg_wait or a SeqMismatch.")
    if consumed:
        raise ReplyTokenReplay("This reply token was already used; use the one your last post returned.")
    if claims.expires_us <= microseconds(now):
        raise ReplyTokenExpired("This reply token's lease ran out; call msg_wait for a fresh one.")


def void_all_before(now: datetime) -> int:
    """A `tokens_void_before` that voids every token issued so far (a SeqMismatch)."""
    return serials.next(now)


@functools.lru_cache(maxsize=4096)
def _uuid_bytes(value: Any) -> bytes:
    """The 16 bytes of a UUID given as one or as text (a wake-up's tokens repeat their thread)."""
    return _uuid(value).bytes


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
