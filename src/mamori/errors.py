"""Exception tree: every error a user can cause has a clear one-line message."""

from __future__ import annotations


class MamoriError(Exception):
    """Base of all mamori errors."""


class ConfigError(MamoriError):
    """A configuration file is invalid; the message names file, line and key."""

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class StartupError(MamoriError):
    """The service cannot start (port taken, store not writable...)."""


class StoreError(MamoriError):
    """The store cannot be opened or written."""
