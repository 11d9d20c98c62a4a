"""argparse ``type=`` checks for numeric and URL options: a bad value is refused at parse time.

Each raises argparse.ArgumentTypeError, which argparse turns into exit 2 and a message that
names the option ("argument --poll-min: ..."), before anything is read, sent or paid.
"""

from __future__ import annotations

import argparse
import math
from urllib.parse import urlsplit


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") \
            from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_seconds(text: str) -> float:
    """A wait in seconds: finite and above 0."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds (got {text})")
    return value


def at_least_one(text: str) -> int:
    """A count of things at once: a whole number, 1 or more."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {text})")
    return value


def positive_dollars(text: str) -> float:
    """A budget in dollars: finite and above 0 (a NaN cap would let everything through)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than $0 (got {text})")
    return value


def dollars(text: str) -> float:
    """An amount in dollars: finite, 0 or more."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be $0 or more (got {text})")
    return value


def http_url(text: str) -> str:
    """An http(s) URL with a host, such as https://api.wavespeed.ai."""
    try:
        parts = urlsplit(text)
        host, _port = parts.hostname, parts.port  # reading the port is what refuses "http://host:x"
    except ValueError as exc:  # a malformed port or IPv6 literal
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL with a host, such as https://api.example.com")
    return text
