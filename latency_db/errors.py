"""Errors of the latency store; all derive from `DatabaseError` so callers can catch one type."""

from __future__ import annotations


class DatabaseError(Exception):
    """The latency database cannot be used as asked; the message says why and what to do."""


class CorruptDatabase(DatabaseError):
    """The file exists but is not a readable SQLite database (never replaced automatically)."""


class ForeignDatabase(DatabaseError):
    """A valid SQLite file that does not carry the latency_db marker: some other program's data."""


class NewerSchema(DatabaseError):
    """The file was written by a newer latency_db; opening it here could lose data."""


class FormatError(DatabaseError):
    """A JSONL export that this version cannot read."""
