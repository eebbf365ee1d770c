"""Errors that carry a message meant for the user, not a traceback.

Entry points catch `AugtuneError`, print `str(err)` on one line and exit non-zero. Each message
says where the problem is (file, line, field) and what to do about it.
"""

from __future__ import annotations


class AugtuneError(Exception):
    """A problem the user can fix. The message is the whole report."""


class InputError(AugtuneError):
    """Bad data or config. Built with the location so every message has the same shape."""

    def __init__(self, what: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, fix: str | None = None):
        where = []
        if file:
            where.append(str(file) + (f":{line}" if line is not None else ""))
        elif line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field '{field}'")
        msg = (", ".join(where) + ": " if where else "") + what
        if fix:
            msg += f". {fix}"
        super().__init__(msg)
        self.file, self.line, self.field = file, line, field


class ConfigError(AugtuneError):
    """A config value or combination that cannot work."""


class FatalBackendError(AugtuneError):
    """A backend error that retrying cannot fix (auth, spend limit, invalid request): the
    build stops at once with this message instead of burning through every request."""


class RetryableError(Exception):
    """Transient backend trouble (429, 5xx, overloaded, timeout, dropped connection).
    `retry_after` is the server's hint in seconds, when it gave one."""

    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


class CandidateError(Exception):
    """The backend answered but the answer is unusable (malformed JSON, wrong count, only
    echoes of the source). Recorded as a failed request with this reason; a rerun retries it."""
