"""argparse ``type=`` checks for numeric, URL and state-file arguments: a bad value is refused at parse time.

Each raises argparse.ArgumentTypeError, which argparse turns into exit 2 and a message that
names the option ("argument --poll-min: ..."), before anything is read, sent or paid.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from urllib.parse import urlsplit


def _number(text: str, kind: type, low: float, *, above: bool, wanted: str) -> float:
    """``text`` as a finite ``kind`` that is at least ``low`` (more than it when ``above``)."""
    try:
        value = kind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") \
            from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if value < low or (above and value == low):
        raise argparse.ArgumentTypeError(f"must be {wanted} (got {text})")
    return value


def positive_seconds(text: str) -> float:
    """A wait in seconds: finite and above 0."""
    return _number(text, float, 0, above=True, wanted="more than 0 seconds")


def at_least_one(text: str) -> int:
    """A count of things at once: a whole number, 1 or more."""
    return int(_number(text, int, 1, above=False, wanted="at least 1"))


def positive_dollars(text: str) -> float:
    """A budget in dollars: finite and above 0 (a NaN cap would let everything through)."""
    return _number(text, float, 0, above=True, wanted="more than $0")


def dollars(text: str) -> float:
    """An amount in dollars: finite, 0 or more."""
    return _number(text, float, 0, above=False, wanted="$0 or more")


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


def state_file(text: str) -> Path:
    """A batch's state file, or its output folder standing for the state.jsonl in it (as 'ls' shows it)."""
    path = Path(text)
    return path / "state.jsonl" if path.is_dir() and (path / "state.jsonl").is_file() else path
