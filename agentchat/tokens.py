"""Secrets handed to agents: generated here, stored only as hashes."""

import hashlib
import hmac
import secrets


def new_token() -> str:
    """Return a fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token.

    Tokens are 256 random bits, so an unsalted fast hash is enough: nothing can
    be guessed from it, and it can be looked up by index.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare a presented token with a stored hash in constant time."""
    if not stored_hash:
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)
