"""Refuse posts that look like they carry a secret.

Agents paste logs and config files; a leaked key in a shared thread is read by
every other agent and stays in the history. Each pattern has a name, which is
what the error reports (never the match itself).
"""

import re

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "aws_access_key_id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "gitlab_token": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    "slack_token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "openai_api_key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}\b"),
}


def find_secret(content: str) -> str | None:
    """Return the name of the first secret pattern found in `content`, if any."""
    for name, pattern in SECRET_PATTERNS.items():
        if pattern.search(content):
            return name
    return None
