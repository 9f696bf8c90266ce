"""Loggers (``--log NAME``): run-scoped plugins whose failures never stop training.

:func:`build_loggers` calls each selected logger's factory once per run, while the run is
built (so a logger that cannot work, e.g. ``--log mlflow`` without mlflow installed, stops the
run in one line before any training), and wraps what it returns in a :class:`GuardedLogger`.
The engine registers the guarded loggers for every fit of the run, after the extensions and
before the extra plugins (:func:`stratum.engine.run_scoped_plugins`).

A guarded logger forwards every lifecycle hook its logger implements, with the same argument
names, so pluggy calls it exactly as it would call the logger. The first exception the logger
raises (in a hook, in ``state_dict`` or ``load_state_dict``) is caught: one line
``stratum: warning: logger NAME failed in HOOK (Error: message); it is off for the rest of the
run`` goes to stderr, the failure is recorded (``summary["logger_errors"]``: a list of
``{"logger", "hook", "error"}``), and the logger is called no more. Training goes on and
finishes with its normal result.
"""

from __future__ import annotations

import functools
import sys

from ..config import loggers_in_use, options_for
from ..errors import PluginError, StratumError
from ..hookspecs import hookimpl

#: ``run.state`` key of the failures of this run's loggers (a list of dicts).
ERRORS_KEY = "_logger_errors"
_MARKER = "stratum_impl"


def build_loggers(run) -> list:
    """The :class:`GuardedLogger` of each logger ``run`` uses (:func:`stratum.config.loggers_in_use`).

    Calls each factory as ``factory(run, options)``, on rank 0 only under torchrun. A :class:`~stratum.errors.StratumError` it
    raises (``ConfigError``: a missing package, no place to write) propagates: nothing has trained
    yet. Any other exception is a logger failure: reported once, the run goes on without it.
    Raises :class:`~stratum.errors.PluginError` for a logger that implements a firstresult hook
    or a wrapper (loggers observe; they do not decide or wrap).
    """
    from ..distributed import is_main_process

    if not is_main_process():  # under torchrun every rank holds the same run: rank 0 records it
        return []
    loggers = []
    for name in loggers_in_use(run.config):
        component = run.registries.get("logger", name)
        guard = GuardedLogger(name, None, run, component.plugin)
        try:
            plugin = component.factory(run, options_for(component, run.config))
        except StratumError:
            raise
        except Exception as exc:  # a logger failure never stops training
            guard.fail("its factory", exc)
            plugin = None
        if plugin is not None:
            guard.attach(plugin, run.pm)
        loggers.append(guard)
    return loggers


class GuardedLogger:
    """A logger's hooks, forwarded under a guard: its first failure is reported and disables it.

    ``name``: the logger's name (``csv``); ``plugin``: the object its factory returned (or
    ``None`` once it failed); ``provider``: the plugin that registered the logger. The hook
    forwarders are instance attributes made by :meth:`attach`, so pluggy finds exactly the
    hooks the logger implements, with their options (``tryfirst`` / ``trylast``).
    """

    def __init__(self, name: str, plugin, run, provider: str = ""):
        self.name = name
        self.plugin = plugin
        self.provider = provider
        self._run = run

    @property
    def active(self) -> bool:
        """Whether the logger is still called (it has not failed)."""
        return self.plugin is not None

    def attach(self, plugin, pm) -> None:
        """Wrap ``plugin``'s hook implementations. Raises :class:`PluginError` for a firstresult
        hook or a wrapper, which a logger may not implement."""
        self.plugin = plugin
        for attr in dir(type(plugin)):
            if not attr.startswith("stratum_"):
                continue
            method = getattr(plugin, attr, None)
            opts = getattr(method, _MARKER, None)
            if not callable(method) or opts is None:
                continue
            spec = getattr(pm.hook, attr, None)
            spec_opts = getattr(getattr(spec, "spec", None), "opts", {}) or {}
            if opts.get("wrapper") or opts.get("hookwrapper") or spec_opts.get("firstresult"):
                what = "a wrapper of" if opts.get("wrapper") or opts.get("hookwrapper") else "the firstresult hook"
                raise PluginError(self.provider or self.name, "its hooks",
                                  StratumError(f"a logger may not implement {what} {attr} (loggers observe)"),
                                  f"logger {self.name!r} from plugin {self.provider!r}")
            setattr(self, attr, self._forwarder(attr, method))
        for attr in ("state_dict", "load_state_dict"):
            if callable(getattr(plugin, attr, None)):
                setattr(self, attr, self._guarded(attr, getattr(plugin, attr)))

    def _forwarder(self, hook: str, method):
        guarded = self._guarded(hook, method)

        @functools.wraps(method)  # same argument names and hookimpl options: pluggy calls it as the logger
        def forward(*args, **kwargs):
            result = guarded(*args, **kwargs)
            if hook == "stratum_fit_end":
                record_errors(self._run, kwargs.get("summary", args[-1] if args else None))
            return result

        return forward

    def _guarded(self, what: str, method):
        def call(*args, **kwargs):
            if self.plugin is None:
                return {} if what == "state_dict" else None
            try:
                return method(*args, **kwargs)
            except (Exception, SystemExit) as exc:  # a logger's failure is the logger's alone
                self.fail(what, exc)
                return {} if what == "state_dict" else None

        return call

    def fail(self, where: str, exc: BaseException) -> None:
        """Report the logger's failure once (stderr and ``run.state``) and disable it."""
        self.plugin = None
        message = " ".join(str(exc).split())[:300]
        error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        self._run.state.setdefault(ERRORS_KEY, []).append({"logger": self.name, "hook": where, "error": error})
        print(f"stratum: warning: logger {self.name!r} failed in {where} ({error}); "
              "it is off for the rest of the run, training goes on", file=sys.stderr, flush=True)

    @hookimpl(trylast=True)
    def stratum_fit_end(self, run, summary):
        """Record this run's logger failures in the summary (also when the logger implements no
        ``stratum_fit_end``; :meth:`attach` replaces this with a forwarder that does the same)."""
        record_errors(run, summary)


def record_errors(run, summary) -> None:
    """Put the failures of ``run``'s loggers into ``summary["logger_errors"]`` (when there were any)."""
    errors = run.state.get(ERRORS_KEY)
    if errors and isinstance(summary, dict):
        summary["logger_errors"] = [dict(e) for e in errors]
