"""Which API a state file belongs to, and refusing to resume it against another one.

Every run records its provider and base URL in its ``run`` start line. A rehearsal (the local
simulator, or any loopback base URL) and a real API never share a state: a rehearsal's jobs were
never paid on the real API and its upload URLs point at a loopback server that is gone; a real
state's paid predictions are unknown to a simulator. Older states carry no such record and load
as before.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from .errors import UsageError


def is_rehearsal(base_url: str) -> bool:
    """A loopback base URL: the simulator (``--provider local`` starts one), never a paid API."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def identity(provider_name: str, base_url: str) -> dict[str, Any]:
    """The fields a run's start line records."""
    return {"provider": provider_name, "base_url": base_url, "rehearsal": is_rehearsal(base_url)}


def recorded(runs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The API of the newest run that recorded one."""
    for run in reversed(list(runs)):
        if run.get("base_url"):
            return run
    return None


def check_same_api(runs: Iterable[Mapping[str, Any]], provider_name: str, base_url: str, state_path: Any) -> None:
    """UsageError when the state belongs to another API than this run's (see the module doc)."""
    before = recorded(runs)
    if before is None:
        return
    now = identity(provider_name, base_url)
    was, url = bool(before.get("rehearsal")), str(before["base_url"])
    if was and now["rehearsal"]:
        return  # every rehearsal starts its own simulator on a new port
    if not was and not now["rehearsal"] and (before.get("provider"), url) == (provider_name, base_url):
        return
    raise UsageError(f"{state_path}: {_why(was, now['rehearsal'], url, base_url)}. Use another --out for "
                     "this run, or add --allow-other-api to resume this state anyway")


def _why(was_rehearsal: bool, is_rehearsal_now: bool, before: str, now: str) -> str:
    if was_rehearsal:
        return (f"this state was made in a rehearsal against the local simulator ({before}); its jobs were never "
                f"paid on {now} and its upload URLs point at a loopback server that is gone, so resuming it there "
                "would count simulated videos as done and send dead image URLs")
    if is_rehearsal_now:
        return (f"this state belongs to real runs against {before}; a rehearsal against the simulator ({now}) "
                "does not know its paid predictions and would mix simulated results into it")
    return (f"this state belongs to runs against {before}; its paid predictions and uploads live there, "
            f"not at {now}")
