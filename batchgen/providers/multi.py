"""One Provider over several: a manifest's rows may use any registered provider, and fall back across them.

The runner keeps its one provider; this router is it when a run uses more than one. It picks the
member by the model id's ``provider:`` prefix (routing.py: none is WaveSpeed) and tags the
prediction ids it hands out the same way (``replicate:<id>``), so a resumed run reads results from
the right API with no extra state, and an untagged id in an older state is WaveSpeed's as before.

Why a router rather than a provider per job in the runner: every promise (intent before POST,
reconciliation, verified downloads, budget) already lives once in the runner against one
Provider; routing below that seam keeps them one code path for every provider. What does differ
per provider is its policy: ``member(provider, model)`` is the one seam the runner asks it through.

A host that never answers is fatal for a single-provider run; here it is the typed
"unavailable" signal on submit (jobs with a fallback on another provider move to it, the rest wait)
and a transient error on reads, so one provider's outage costs its jobs a delay, not the night.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

from ..errors import (AmbiguousSubmitError, ModelUnavailableError, OutputExpiredError, TransientError,
                      UnreachableError, UsageError)
from ..models import ModelSpec
from ..routing import DEFAULT_PROVIDER, split, tag
from .base import Download, Listing, Prediction, Provider, ProviderPolicy

T = TypeVar("T")


def _combined(policies: list[ProviderPolicy]) -> ProviderPolicy:
    """The whole run's policy, on the safe side of every member (per-job answers: ``member``)."""
    lifetimes = [p.upload_lifetime for p in policies if p.upload_lifetime is not None]
    outputs = [p.output_lifetime for p in policies if p.output_lifetime is not None]
    return ProviderPolicy(
        name="+".join(p.name for p in policies), key_variable=", ".join(p.key_variable for p in policies),
        default_base_url=policies[0].default_base_url,
        upload_lifetime=min(lifetimes) if lifetimes else None, output_lifetime=min(outputs) if outputs else None,
        failed_tasks_billed=any(p.failed_tasks_billed for p in policies),
        queues_over_limit=all(p.queues_over_limit for p in policies),
        # One listener checks one signing scheme: a run over two providers polls instead.
        webhook_scheme=policies[0].webhook_scheme if len(policies) == 1 else None)


class MultiProvider:
    """Routes each call to the member provider its model or prediction id names."""

    def __init__(self, members: Mapping[str, Provider]):
        if not members:
            raise UsageError("a multi-provider run needs at least one provider")
        self.members = dict(members)
        self.policy = _combined([p.policy for p in self.members.values()])
        self.base_url = " ".join(p.base_url for p in self.members.values())
        #: Output URL -> member that reported it (downloads need no key, but each member's own limits).
        self._owners: dict[str, str] = {}

    def _member(self, name: str, what: str) -> Provider:
        try:
            return self.members[name]
        except KeyError as exc:
            raise UsageError(f"{what} is served by {name!r}, which this run has no client for; "
                             f"run with the providers the manifest names ({', '.join(self.members)})") from exc

    def route(self, model: str) -> tuple[str, Provider, str]:
        """(provider name, its client, the model id it knows) for a table id."""
        name, bare = split(model)
        return name, self._member(name, f"model {model}"), bare

    def _tagged(self, name: str, pred: Prediction) -> Prediction:
        for url in pred.outputs:
            self._owners[url] = name
        return replace(pred, id=tag(name, pred.id), model=tag(name, pred.model) if pred.model else "")

    async def _guard(self, name: str, call: Callable[[], Awaitable[T]], *, submit: str = "") -> T:
        """One member call; an unreachable host stops only its own jobs when another provider is here.
        ``submit`` names the model a submit (or its image's upload) is for."""
        try:
            return await call()
        except UnreachableError as exc:
            if len(self.members) < 2:
                raise
            if submit:
                raise ModelUnavailableError(f"{name} is unreachable ({exc}); jobs with a fallback on another "
                                            "provider move to it", temporary=True, model=submit) from exc
            raise TransientError(f"{name} is unreachable ({exc}); its jobs are read again later") from exc
        except ModelUnavailableError as exc:
            exc.model = submit or exc.model  # the table's id: the member knows only its own
            raise
        except AmbiguousSubmitError as exc:
            if exc.prediction_id:
                exc.prediction_id = tag(name, exc.prediction_id)
            raise
        except OutputExpiredError as exc:
            exc.prediction_id = tag(name, exc.prediction_id)
            raise

    def build_body(self, spec: ModelSpec, image_url: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return self.route(spec.id)[1].build_body(spec, image_url, prompt, params)

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Only a one-provider router can know where an image goes; with several, uploads.py asks
        ``member(router, model)`` for the client that serves the job's model."""
        if len(self.members) != 1:
            raise UsageError("an upload needs its model's provider: use providers.multi.member(provider, model)")
        return await next(iter(self.members.values())).upload(data, filename, content_type)

    async def upload_for(self, model: str, data: bytes, filename: str, content_type: str) -> str:
        """Store an image with the provider that serves ``model`` (its URL is only good there)."""
        name, client, _ = self.route(model)
        return await self._guard(name, lambda: client.upload(data, filename, content_type), submit=model)

    async def submit(self, model: str, body: dict[str, Any], webhook: str | None = None) -> Prediction:
        name, client, bare = self.route(model)
        return self._tagged(name, await self._guard(name, lambda: client.submit(bare, body, webhook=webhook),
                                                    submit=model))

    def _sole(self) -> tuple[str, Provider] | None:
        """The one member of a one-provider run (what the account-wide calls below are asked of)."""
        return next(iter(self.members.items())) if len(self.members) == 1 else None

    async def balance(self) -> float | None:
        """The account's balance on a one-provider run; with several it is unknown (never a stop)."""
        sole = self._sole()
        return await sole[1].balance() if sole else None

    async def webhook_secret(self) -> str:
        sole = self._sole()
        if sole is None:
            raise UsageError("webhooks need a run on one provider; this one uses " + ", ".join(self.members))
        return await sole[1].webhook_secret()

    def parse_webhook(self, body: bytes) -> Prediction:
        sole = self._sole()
        if sole is None:
            raise UsageError("webhooks need a run on one provider; this one uses " + ", ".join(self.members))
        return self._tagged(sole[0], sole[1].parse_webhook(body))

    async def result(self, prediction_id: str) -> Prediction:
        name, bare = split(prediction_id)
        client = self._member(name, f"prediction {prediction_id}")
        return self._tagged(name, await self._guard(name, lambda: client.result(bare)))

    async def list_predictions(self, *, model: str, created_after: float, created_before: float) -> Listing | None:
        name, client, bare = self.route(model)
        listing = await self._guard(name, lambda: client.list_predictions(
            model=bare, created_after=created_after, created_before=created_before))
        if listing is None:
            return None
        items = tuple(replace(i, id=tag(name, i.id), model=tag(name, i.model) if i.model else "")
                      for i in listing.items)
        return replace(listing, items=items)

    def _download_owner(self, url: str) -> str:
        """The member that reported ``url``; after a restart, the one whose API origin serves it."""
        if url in self._owners:
            return self._owners[url]
        origin = urlsplit(url)[:2]
        for name, client in self.members.items():
            if urlsplit(client.base_url)[:2] == origin:
                return name
        return DEFAULT_PROVIDER if DEFAULT_PROVIDER in self.members else next(iter(self.members))

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> Download:
        name = self._download_owner(url)
        client = self.members[name]
        return await self._guard(name, lambda: client.download(url, dest, max_bytes=max_bytes))

    async def close(self) -> None:
        for client in self.members.values():
            await client.close()


@dataclass(frozen=True)
class Member:
    """What is per provider, for the job's model: the runner's one seam into the router."""

    policy: ProviderPolicy
    upload: Callable[[bytes, str, str], Awaitable[str]]


def member(provider: Provider, model: str) -> Member:
    """The policy of the provider serving ``model``, and its image upload; any other provider is its own."""
    if isinstance(provider, MultiProvider):
        return Member(provider.route(model)[1].policy, partial(provider.upload_for, model))
    return Member(provider.policy, provider.upload)


__all__ = ["Member", "MultiProvider", "member"]
