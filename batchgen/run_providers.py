"""The providers a run talks to: one client per provider the manifest's models (and their fallbacks)
name, each with the key from its own environment variable, behind one router (providers/multi.py).

``--provider local`` starts, in this process, a simulator for each provider the manifest uses.
Base URLs: ``--base-url`` when the run uses one provider, else ``<NAME>_BASE_URL`` per provider
(``WAVESPEED_BASE_URL``, ``REPLICATE_BASE_URL``), else the provider's own.
"""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .errors import UsageError
from .jobs import JobSpec
from .models import ModelTable
from .providers import provider_info
from .providers.base import Provider
from .providers.multi import MultiProvider
from .routing import provider_of, split
from .poll_policy import PollPolicy

#: Job ids named per missing key, at most.
_SHOWN = 5
#: Most HTTP connections one provider's client keeps open at once.
MAX_CONNECTIONS = 256


def connection_limit(concurrency: int) -> int:
    """HTTP connections for a run at ``concurrency``: a submit and a read per slot, up to MAX_CONNECTIONS.
    Past that, opening more costs more than waiting for one: each is a TCP (and TLS) handshake, and a
    burst of reads is served as fast by reusing a few hundred. In a Gold batch (2,000 slots, 4,000
    connections before) it cut the runner's peak memory by 25 MB and the simulator's CPU by 15 %."""
    return min(MAX_CONNECTIONS, max(16, 2 * concurrency))


@dataclass
class Clients:
    """What the run wiring needs: the router, the poll policy, the keys to mask and what to say."""

    provider: Provider
    poll: PollPolicy
    secrets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def providers_used(jobs: list[JobSpec]) -> dict[str, list[JobSpec]]:
    """Provider name -> the jobs that may submit to it (their model or their fallback)."""
    used: dict[str, list[JobSpec]] = {}
    for job in jobs:
        for model in dict.fromkeys(m for m in (job.model, job.fallback_model) if m):
            used.setdefault(provider_of(model), []).append(job)
    return used


def _keys(used: dict[str, list[JobSpec]]) -> dict[str, str]:
    """Each provider's key from its own variable; one UsageError naming every missing one and its jobs."""
    keys, missing = {}, []
    for name, jobs in used.items():
        variable = provider_info(name).policy.key_variable
        key = os.environ.get(variable, "").strip()
        if key:
            keys[name] = key
            continue
        ids = ", ".join(j.id for j in jobs[:_SHOWN]) + (f" and {len(jobs) - _SHOWN} more" if len(jobs) > _SHOWN else "")
        missing.append(f"set the {variable} environment variable for the {len(jobs)} job(s) on {name} ({ids})")
    if missing:
        raise UsageError("no API key: " + "; ".join(missing) + " (or rehearse for free with --provider local)")
    return keys


def _base_url(name: str, used: dict[str, list[JobSpec]], given: str | None) -> str:
    if given and len(used) > 1:
        raise UsageError(f"--base-url is ambiguous: the manifest uses {', '.join(used)}; set "
                         + " / ".join(f"{n.upper()}_BASE_URL" for n in used) + " instead")
    return given or os.environ.get(f"{name.upper()}_BASE_URL") or provider_info(name).policy.default_base_url


async def real_clients(jobs: list[JobSpec], named: str | None, base_url: str | None, poll: PollPolicy,
                       concurrency: int) -> Clients:
    """Clients of the real APIs; ``named`` (``--provider``) must be one the manifest's models are on."""
    used = providers_used(jobs) or {"wavespeed": []}
    if named and named not in used:
        raise UsageError(f"--provider {named}: none of the manifest's models is on {named} (they are on "
                         f"{', '.join(used)}); name a model as {named}:<id> to run it there")
    keys = _keys(used)
    members = {name: provider_info(name).factory(keys[name], _base_url(name, used, base_url),
                                                 max_connections=connection_limit(concurrency)) for name in used}
    return Clients(MultiProvider(members), poll, secrets=list(keys.values()))


def _member_table(models: ModelTable, name: str) -> ModelTable:
    """The manifest's rows for provider ``name``, by the ids that provider knows."""
    rows = []
    for spec in models:
        owner, bare = split(spec.id)
        if owner == name:
            rows.append(replace(spec, id=bare))
    return ModelTable(rows)


async def _start_local(name: str, seed: int, models: ModelTable, out_dir: Path) -> Any:
    if name == "replicate":
        from .simulator.replicate import ReplicateConfig, start as start_replicate
        return await start_replicate(ReplicateConfig(seed=seed, models=_member_table(models, name)))
    if name == "wavespeed":
        from .simulator import SimConfig, start
        from .simulator.persist import FOLDER, Keeper
        config = SimConfig(seed=seed, models=_member_table(models, name))
        # Its uploads and tasks live under the output folder, so a resumed or repaired run finds them.
        keeper = Keeper(out_dir / FOLDER)
        try:
            return await start(config, port=keeper.port(), keep=keeper)
        except OSError:  # the earlier port is taken: old output links fail, the results are read again
            return await start(config, keep=keeper)
    raise UsageError(f"there is no local simulator for {name}; run against the provider itself")


async def local_clients(jobs: list[JobSpec], models: ModelTable, seed: int, poll: Callable[..., PollPolicy],
                        stack: AsyncExitStack, out_dir: Path) -> Clients:
    """A simulator per provider the manifest uses, in this event loop (no key, no network, no bill)."""
    members, notes = {}, []
    for name in providers_used(jobs) or {"wavespeed": []}:
        running = await _start_local(name, seed, models, out_dir)
        stack.push_async_callback(running.close)
        members[name] = provider_info(name).factory("local-simulator", running.base_url)
        notes.append(f"using the local simulator at {running.base_url} ({name}: no key, no network, "
                     "nothing is billed)")
    config = running.simulator.config
    return Clients(MultiProvider(members), poll(prior=config.gen_base + 4 * config.gen_per_second, max_interval=5.0),
                   notes=notes)


__all__ = ["Clients", "local_clients", "providers_used", "real_clients"]
