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


def describe_cause(cause: BaseException) -> str:
    """How a plugin's exception reads in one line: the message of a :class:`StratumError`
    (the user can act on it), ``Type: message`` for anything else, and an explanation
    for a ``sys.exit()`` from plugin code (which may not end a run)."""
    if isinstance(cause, SystemExit):
        return f"it called sys.exit({cause.code!r}), which plugin code may not do (the run did not finish)"
    if isinstance(cause, StratumError):
        return str(cause)
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class PluginError(StratumError):
    """Plugin code failed. Names the plugin (and component), and what it was doing.

    ``plugin`` is the providing plugin's name (its entry-point name), ``label`` the full
    description used in the message (e.g. ``profiler 'boom' from plugin 'myplug'
    (dist myplug-dist 1.0)``), ``cause`` the original exception. The exit code is the
    cause's when the cause is a :class:`StratumError`, else 2.
    """

    def __init__(self, plugin: str, doing: str, cause: BaseException, label: str | None = None):
        self.plugin = plugin
        self.label = label or f"plugin {plugin!r}"
        self.doing = doing
        self.cause = cause
        if isinstance(cause, StratumError):
            self.exit_code = cause.exit_code
        what = f" failed {doing}" if doing else ""
        super().__init__(f"{self.label}{what}: {describe_cause(cause)}")


class PluginHookError(PluginError):
    """A plugin raised inside a hook. Names the plugin and the hook."""

    def __init__(self, plugin: str, hook: str, cause: BaseException, label: str | None = None):
        self.hook = hook
        super().__init__(plugin, f"in hook {hook}", cause, label)


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
