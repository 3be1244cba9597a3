"""Secrets out of what is logged and shown: the credentials in URLs.

A receiver's URL may carry its credentials: user info
(``https://user:pass@host``), a token in the query (``?token=...``) or, for
a Slack webhook, the path itself; and the error of a failed delivery (an
httpx message, the receiver's own answer) often quotes the URL. Such text
goes to the server's log, to the ``ReceiverBroken`` alert (readable with a
read token, on the dashboard) and so to the other receivers: it passes
through :func:`redact` first.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK = "***"
# a URL in running text: a scheme, then everything up to a space or a quote
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>`]+")
# a query parameter outside a whole URL ("Cannot POST /hook?token=abc"): its value
_PARAM = re.compile(r"([?&][^\s=&#?'\"]+=)([^\s&#'\"]+?)(?=[.,:;!?)\]]*(?:[\s&#'\"]|$))")


def redact_url(url: str, *, secret_path: bool = False) -> str:
    """``url`` with its user info, every query value and its fragment as
    ``***`` (the parameter names stay: a reader still sees which were given);
    with ``secret_path``, all of its path but the first segment too (a Slack
    webhook's path is its credential)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL ('http://[x'): nothing of it is shown
        return MASK
    netloc = f"{MASK}@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc else parts.netloc
    return urlunsplit(
        SplitResult(
            parts.scheme,
            netloc,
            _path(parts.path) if secret_path else parts.path,
            _query(parts.query),
            MASK if parts.fragment else "",
        )
    )


def _path(path: str) -> str:
    first, sep, rest = path.lstrip("/").partition("/")
    if not first:
        return path
    return f"/{first}/{MASK}" if sep and rest else f"/{MASK}"


def _query(query: str) -> str:
    # a parameter without '=' may be the secret itself
    return "&".join(f"{p.partition('=')[0]}={MASK}" if "=" in p else MASK for p in query.split("&")) if query else ""


def redact(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`, and
    the value of every query parameter outside one (``/hook?token=...``) as ``***``."""
    return _PARAM.sub(lambda m: m.group(1) + MASK, _URL.sub(_redact_match, text))


def _redact_match(m: re.Match[str]) -> str:
    url = m.group(0)
    end = len(url.rstrip(".,:;!?)]"))  # the sentence's punctuation after a URL is not part of it
    return redact_url(url[:end]) + url[end:]
