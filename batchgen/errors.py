"""Every exception batchgen raises, in one tree.

    BatchgenError                 the CLI catches this one root and prints it
    ├── UsageError                bad command line or environment (exit 2)
    ├── ManifestError             the manifest cannot be used; carries every problem (exit 2)
    ├── ModelTableError           a model entry or model name that makes no sense (exit 2)
    ├── StateError                the state file cannot be read or is locked by another run
    │   └── StateLockedError
    └── ProviderError             something the API said or failed to say
        ├── TransientError        worth retrying: 429, 5xx, connection reset, timeout, short body
        │   ├── RateLimitedError  429; carries the server's Retry-After in seconds
        │   └── ExpiredLinkError  an output URL answered 403/404: read the result again for a fresh one
        ├── AmbiguousSubmitError  the submit may have reached the server: never retry blindly
        ├── PermanentError        this request will never work: 400/404/422, a hostile answer
        └── FatalError            the run cannot go on: 401 bad key, 402 no balance

A failed *job* is not an exception: it is recorded in the state and the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass


class BatchgenError(Exception):
    """Root of every error batchgen raises on purpose."""

    exit_code = 1


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


class ProviderError(BatchgenError):
    """The API answered with an error, or did not answer."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class TransientError(ProviderError):
    """Retry later: rate limits, server errors, dropped connections, short bodies."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """HTTP 429; ``retry_after`` is the server's advice in seconds, if any."""


class ExpiredLinkError(TransientError):
    """An output URL no longer works (signed links expire); a fresh result read renews it."""


class AmbiguousSubmitError(ProviderError):
    """A submit POST whose answer was lost after the request was sent: the task may exist."""


class PermanentError(ProviderError):
    """This request will not succeed by retrying (400, 404, 422, nonsense answers)."""


class FatalError(ProviderError):
    """The whole run must stop submitting: bad key, no balance."""

    exit_code = 3
