"""Errors that reach the user as one line and an exit code, never as a traceback."""

from __future__ import annotations


class MdpError(Exception):
    """A problem the user can fix; the CLI prints the message and exits with `exit_code`."""

    exit_code = 2


class InputError(MdpError):
    """Bad input: unreadable model, invalid plan, unknown option value (exit code 2)."""


class BudgetError(MdpError):
    """The latency budget is below the smallest latency the model can reach (exit code 3)."""

    exit_code = 3

    def __init__(self, message: str, min_latency_ms: float | None = None) -> None:
        super().__init__(message)
        self.min_latency_ms = min_latency_ms


class TargetNotMet(MdpError):
    """The build finished but its measured latency misses the target (exit code 3).

    Raised by the CLI after OUT/ is written, so the best plan found can still be inspected; `run_build`
    itself returns the Report, whose `met` is False, for Python callers.
    """

    exit_code = 3


class BackendUnavailable(MdpError):
    """A requested backend (TensorRT, a GPU, a solver) is not installed here; says what is missing."""


class VerificationError(MdpError):
    """A model we made does not load, run or compute what it should: a bug of ours (exit code 4).

    Raised before the model is written, so a failed check leaves nothing on disk.
    """

    exit_code = 4
