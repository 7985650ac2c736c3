"""What a tenant may read of a failure: the stage and the kind of failure, never where things
live. URLs, host:port addresses and absolute file paths in an error's text name internal
services and storage; they stay in the logs and the dead letters (read by operators) and are
replaced here in what reaches a tenant (a document's FAILED reason, a query's error)."""

import re

# scheme://anything up to a space or a quote; host:port (an IP or a dotted name); /abs/path.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>:.,;)]")
_ADDRESS = re.compile(r"\b(?:\d{1,3}(?:\.\d{1,3}){3}|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+):\d{2,5}\b")
_PATH = re.compile(r"(?<![\w.~])/(?:[^\s'\"/<>:]+/)+[^\s'\"/<>:,;)]*")


def public(text: str) -> str:
    """`text` with its URLs, addresses and absolute paths replaced by what they are."""
    text = _URL.sub("<url>", text)
    text = _ADDRESS.sub("<address>", text)
    return _PATH.sub("<path>", text)
