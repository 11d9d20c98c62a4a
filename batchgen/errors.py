"""Every exception batchgen raises, in one tree.

    BatchgenError                     the CLI catches this one root and prints it
    ├── UsageError                    bad command line or environment, a missing key (exit 2)
    ├── ManifestError                 the manifest cannot be used; carries every problem (exit 2)
    ├── ModelTableError               a model entry or model name that makes no sense (exit 2)
    ├── StateError                    the state file cannot be read or is locked by another run (exit 2)
    │   └── StateLockedError
    ├── LocalError                    something on this machine, not the API's answer
    │   ├── InputChangedError         a source image changed after the manifest was read
    │   ├── OutputPathError           an output path would leave the output folder, or a link was planted
    │   ├── VerificationError         a downloaded file is not the video that was asked for
    │   ├── DiskFullError             the output disk is full (exit 3: free space, run again)
    │   └── OverBudgetError           the planned submits pass the spending cap (exit 3: --partial or raise it)
    └── ProviderError                 something the API said or failed to say
        ├── TransientError            worth retrying: 429, 5xx, connection reset, timeout, short body
        │   ├── RateLimitedError      429; carries the server's Retry-After in seconds
        │   └── ExpiredLinkError      an output URL answered 403/404: read the result again for a fresh one
        ├── AmbiguousSubmitError      the submit may have reached the server: never retry blindly
        ├── PermanentError            this request will never work: 400/404/422, a hostile answer
        │   └── OutputExpiredError    the provider deleted a paid task's outputs (Replicate: after ~1 h)
        ├── ModelUnavailableError     the model is retired (permanent) or switched off for now (temporary)
        └── FatalError                the run cannot go on: 401 bad key, 402 no balance (exit 3)
            └── UnreachableError      the provider's host never answered (another provider may stand in)

Every error carries its context as attributes (``job``, ``model``, ``url``, ``status``) where
it has one. A failed *job* is not an exception: it is recorded in the state and the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass


class BatchgenError(Exception):
    """Root of every error batchgen raises on purpose."""

    exit_code = 1

    def __init__(self, message: str = "", *, job: str | None = None, model: str | None = None,
                 url: str | None = None):
        super().__init__(message)
        self.job = job
        self.model = model
        self.url = url


class UsageError(BatchgenError):
    """The command line or the environment is wrong; the message says how to fix it."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem in a manifest, with where it is."""

    file: str
    line: int | None
    message: str
    job: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        job = f" [job {self.job}]" if self.job else ""
        return f"{where}:{job} {self.message}"


class ManifestError(BatchgenError):
    """The manifest has problems; all of them are listed, nothing was sent."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the manifest; nothing was sent:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class ModelTableError(BatchgenError):
    """A model entry is malformed or a model name is unknown."""

    exit_code = 2


class StateError(BatchgenError):
    """The state file cannot be used as it is."""

    exit_code = 2


class StateLockedError(StateError):
    """Another batchgen run holds the state's lock."""


class LocalError(BatchgenError):
    """A condition on this machine (files, disk, verification), not something the API said."""


class InputChangedError(LocalError):
    """A source image was edited after the manifest was read: the job's key names the old bytes."""


class OutputPathError(LocalError):
    """An output path would land outside the output folder, or a planted link is in the way."""


class VerificationError(LocalError):
    """A downloaded file is not the video that was asked for (size, length, streams, damage)."""


class DiskFullError(LocalError):
    """The output disk is full; the paid videos are fetched by the next run once there is space."""

    exit_code = 3


class OverBudgetError(LocalError):
    """The run's planned submits would pass ``--max-cost``: refused before anything is paid."""

    exit_code = 3


class ProviderError(BatchgenError):
    """The API answered with an error, or did not answer."""

    def __init__(self, message: str, *, status: int | None = None, **context: str | None):
        super().__init__(message, **context)
        self.status = status


class TransientError(ProviderError):
    """Retry later: rate limits, server errors, dropped connections, short bodies."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 **context: str | None):
        super().__init__(message, status=status, **context)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """HTTP 429; ``retry_after`` is the server's advice in seconds, if any."""


class ExpiredLinkError(TransientError):
    """An output URL no longer works (signed links expire); a fresh result read renews it."""


class AmbiguousSubmitError(ProviderError):
    """A submit POST whose answer was lost or unreadable after the request was sent: the task may
    exist (and be billed). ``prediction_id`` is set when the unreadable answer still named one."""

    def __init__(self, message: str, *, prediction_id: str | None = None, status: int | None = None,
                 **context: str | None):
        super().__init__(message, status=status, **context)
        self.prediction_id = prediction_id


class PermanentError(ProviderError):
    """This request will not succeed by retrying (400, 404, 422, nonsense answers)."""


class OutputExpiredError(PermanentError):
    """The provider removed a finished task's outputs for good (Replicate's ``data_removed`` after about
    an hour): the video was paid for and can no longer be downloaded. ``prediction_id`` names the task,
    so the loss is reported per job instead of retried."""

    def __init__(self, message: str, *, prediction_id: str, **context: str | None):
        super().__init__(message, **context)
        self.prediction_id = prediction_id


class ModelUnavailableError(ProviderError):
    """The provider refused a submit because the model cannot be used: nothing was created or billed.

    ``temporary`` says whether the model may come back (a 503 "temporarily unavailable") or is
    gone (retired, "model not found"). Providers raise this typed signal; the runner moves jobs
    that name a ``fallback_model`` to it, without ever reading message text."""

    def __init__(self, message: str, *, temporary: bool, status: int | None = None,
                 retry_after: float | None = None, **context: str | None):
        super().__init__(message, status=status, **context)
        self.temporary = temporary
        self.retry_after = retry_after


class FatalError(ProviderError):
    """The whole run must stop submitting: bad key, no balance."""

    exit_code = 3


class UnreachableError(FatalError):
    """The provider's host never answered (wrong address, no network, an outage). Fatal on its own;
    with another provider in the run, its jobs move to their fallback there instead."""
