"""Exceptions that the CLI turns into one line on stderr.

Every error a user can cause derives from :class:`StratumError`; the CLI prints
``stratum: error: <message>`` and exits with :attr:`StratumError.exit_code`.
Anything else is a bug and is reported as an internal error.
"""

from __future__ import annotations


class StratumError(Exception):
    """A problem the user can fix (bad name, bad value, bad file). Exit code 2."""

    exit_code = 2


class ConfigError(StratumError):
    """An invalid option value, TOML file or combination of options."""


class UnknownNameError(StratumError, KeyError):
    """A registry lookup for a name nobody registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(StratumError):
    """Two plugins registered the same name in one registry without ``override``."""


class DataError(StratumError):
    """A data set that is missing, corrupt or unreadable."""


class CheckpointError(StratumError):
    """A checkpoint that is missing, corrupt, unsafe or from another configuration."""


class PriorError(StratumError):
    """A prior that is missing, corrupt, unsafe or recorded for another architecture."""


class UnsafePathError(StratumError):
    """A user-given path that would write outside the chosen output directory."""


class PluginHookError(StratumError):
    """A plugin raised inside a hook. Names the plugin and the hook."""

    def __init__(self, plugin: str, hook: str, cause: BaseException):
        self.plugin = plugin
        self.hook = hook
        self.cause = cause
        super().__init__(f"plugin {plugin!r} failed in hook {hook}: {type(cause).__name__}: {cause}")


class RunInterrupted(StratumError):
    """SIGINT or SIGTERM arrived; a checkpoint was flushed before stopping."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


class OutputError(StratumError):
    """A destination (file or directory) that cannot be written: permission, read-only file
    system, full disk, a path component that is a file, a name too long.

    ``finished_result``: the summary of a fit that had finished when the write failed (set
    by the engine for writes at fit end), so the CLI can still print it.
    """

    finished_result: dict | None = None
