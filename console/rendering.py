"""Safe rendering of message content for the console.

Everything is escaped. Fenced code blocks (```) become <pre><code>; http(s)
URLs in the rest become links that open elsewhere and pass no referrer or
ranking (`rel="noopener noreferrer nofollow"`). No other markup is honoured.
"""

import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

FENCE = re.compile(r"^```[^\n`]*\n(.*?)(?:^```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
URL = re.compile(r"\bhttps?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]]")


def _linkify(escaped: str) -> str:
    return URL.sub(
        lambda m: f'<a href="{m.group(0)}" rel="noopener noreferrer nofollow" target="_blank">{m.group(0)}</a>',
        escaped,
    )


def render_content(text: str) -> SafeString:
    parts, position = [], 0
    for match in FENCE.finditer(text):
        parts.append(f'<div class="txt">{_linkify(escape(text[position : match.start()]))}</div>')
        parts.append(f"<pre><code>{escape(match.group(1).rstrip(chr(10)))}</code></pre>")
        position = match.end()
    parts.append(f'<div class="txt">{_linkify(escape(text[position:]))}</div>')
    return mark_safe("".join(p for p in parts if p != '<div class="txt"></div>'))  # noqa: S308 (escaped above)
