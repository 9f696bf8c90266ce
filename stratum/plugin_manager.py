"""Loading plugins and building the registries.

Built-in plugins and third-party plugins are found the same way: entry points
in group ``stratum``. Built-ins are those whose distribution is ``stratum``.

* ``STRATUM_DISABLE_PLUGIN_AUTOLOAD=1`` skips third-party entry points
  (built-ins still load), for reproducible runs.
* ``STRATUM_BLOCK_PLUGINS=a,b`` or ``stratum --block-plugin NAME`` blocks named
  plugins, built-in or not.
* A third-party plugin that fails to import or to register gives one
  :class:`PluginWarning` naming it; the others still load.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
import warnings
from typing import Iterable

import attrs
import pluggy

from . import hookspecs
from .components import Component
from .errors import PluginHookError, StratumError
from .registry import Registries

ENTRY_POINT_GROUP = "stratum"
DISABLE_AUTOLOAD_ENV = "STRATUM_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "STRATUM_BLOCK_PLUGINS"
BUILTIN_DISTRIBUTION = "stratum"

hookimpl = pluggy.HookimplMarker("stratum")

# registration hook name -> component kind it must return
REGISTRATION_HOOKS = {
    "stratum_register_strategies": "strategy",
    "stratum_register_models": "model",
    "stratum_register_datasets": "dataset",
    "stratum_register_initializers": "initializer",
    "stratum_register_optimizers": "optimizer",
    "stratum_register_regressors": "regressor",
    "stratum_register_switching_policies": "policy",
    "stratum_register_profilers": "profiler",
    "stratum_register_feature_sets": "feature_set",
    "stratum_register_extensions": "extension",
}


class PluginWarning(UserWarning):
    """A plugin could not be loaded or could not register; the rest carry on."""


@attrs.define
class PluginRecord:
    """Where a plugin came from and what happened to it."""

    name: str
    origin: str  # "builtin", a distribution name, or "run-scoped"
    version: str
    module: str
    status: str  # loaded | blocked | failed | skipped
    detail: str = ""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def blocked_from_env() -> list[str]:
    return [n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()]


class StratumPluginManager(pluggy.PluginManager):
    """A pluggy manager that knows where each plugin came from."""

    def __init__(self):
        super().__init__("stratum")
        self.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self._registries: Registries | None = None

    # -- loading -------------------------------------------------------------
    def load_entry_points(self, block: Iterable[str] = (), autoload: bool | None = None) -> None:
        if autoload is None:
            autoload = not _env_flag(DISABLE_AUTOLOAD_ENV)
        blocked = set(block) | set(blocked_from_env())
        for name in blocked:
            self.set_blocked(name)
        seen: set[str] = set()
        def builtin_first(ep):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else ""
            return (dist != BUILTIN_DISTRIBUTION, ep.name)

        # Built-ins load first, so a third-party override always comes after what it replaces.
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=builtin_first):
            if ep.name in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(ep.name)
            dist = ep.dist.metadata["Name"] if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "?"
            builtin = dist == BUILTIN_DISTRIBUTION
            origin = "builtin" if builtin else dist
            record = PluginRecord(ep.name, origin, version, ep.value, "loaded")
            self.records[ep.name] = record
            if ep.name in blocked:
                record.status = "blocked"
                continue
            if not builtin and not autoload:
                record.status = "skipped"
                record.detail = f"{DISABLE_AUTOLOAD_ENV} is set"
                continue
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name)
            except Exception as exc:  # one bad plugin never takes the others down
                record.status = "failed"
                record.detail = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"plugin {ep.name!r} (from {dist}) failed to load and was skipped: "
                    f"{type(exc).__name__}: {exc}",
                    PluginWarning,
                    stacklevel=2,
                )

    def register_object(self, plugin: object, name: str, origin: str = "api") -> None:
        """Register a plugin object directly (tests, notebooks, run-scoped plugins)."""
        self.register(plugin, name=name)
        self.records[name] = PluginRecord(
            name, origin, getattr(plugin, "__version__", "-"), getattr(plugin, "__name__", type(plugin).__name__), "loaded"
        )
        self._registries = None

    # -- registries ----------------------------------------------------------
    @property
    def registries(self) -> Registries:
        if self._registries is None:
            self._registries = self._build_registries()
        return self._registries

    def _build_registries(self) -> Registries:
        registries = Registries()
        for hook_name, kind in REGISTRATION_HOOKS.items():
            caller = getattr(self.hook, hook_name)
            # get_hookimpls() is in registration (load) order, so a plugin loaded
            # later is the one that overrides, or collides with, an earlier one.
            for impl in caller.get_hookimpls():
                plugin_name = impl.plugin_name
                try:
                    returned = impl.function()
                    components = _as_components(returned, kind, plugin_name)
                except StratumError:
                    raise
                except Exception as exc:
                    self._registration_failed(plugin_name, hook_name, exc)
                    continue
                for component in components:
                    registries[kind].add(attrs.evolve(component, plugin=plugin_name))
        return registries

    def _registration_failed(self, plugin_name: str, hook_name: str, exc: Exception) -> None:
        record = self.records.get(plugin_name)
        if record is not None:
            record.status = "failed"
            record.detail = f"{hook_name}: {type(exc).__name__}: {exc}"
        warnings.warn(
            f"plugin {plugin_name!r} failed in {hook_name} and its registrations were skipped: "
            f"{type(exc).__name__}: {exc}",
            PluginWarning,
            stacklevel=2,
        )

    # -- calling lifecycle hooks ---------------------------------------------
    def call(self, hook_name: str, **kwargs):
        """Call a lifecycle hook; a plugin's exception becomes :class:`PluginHookError`."""
        caller = getattr(self.hook, hook_name)
        try:
            return caller(**kwargs)
        except (StratumError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise PluginHookError(self._culprit(caller, exc), hook_name, exc) from exc

    def _culprit(self, caller, exc: BaseException) -> str:
        """The plugin whose hook implementation raised, read off the traceback."""
        by_code = {}
        for impl in caller.get_hookimpls():
            code = getattr(impl.function, "__code__", None)
            if code is not None:
                by_code[code] = impl.plugin_name
        tb = exc.__traceback__
        culprit = None
        while tb is not None:
            name = by_code.get(tb.tb_frame.f_code)
            if name is not None:
                culprit = name  # the innermost implementation frame wins
            tb = tb.tb_next
        return culprit or "unknown"


def _as_components(returned, kind: str, plugin_name: str) -> list[Component]:
    if returned is None:
        return []
    items = [returned] if isinstance(returned, Component) else list(returned)
    for item in items:
        if not isinstance(item, Component):
            raise TypeError(f"expected stratum.Component, got {type(item).__name__}")
        if item.kind != kind:
            raise TypeError(f"returned a {item.kind} component {item.name!r} from the {kind} hook")
    return items


def create_plugin_manager(block: Iterable[str] = (), autoload: bool | None = None) -> StratumPluginManager:
    """A plugin manager with the built-ins and (unless disabled) third-party plugins."""
    pm = StratumPluginManager()
    from . import engine_plugin  # stratum's own fallbacks, e.g. optimizer.step()

    pm.register(engine_plugin, name="stratum.engine")
    pm.records["stratum.engine"] = PluginRecord(
        "stratum.engine", "builtin", _stratum_version(), engine_plugin.__name__, "loaded"
    )
    pm.load_entry_points(block=block, autoload=autoload)
    return pm


def _stratum_version() -> str:
    from . import __version__

    return __version__


def show_warnings_as_lines(stream=None) -> None:
    """Print plugin warnings as single lines, the way the CLI wants them."""
    stream = stream or sys.stderr

    def _show(message, category, filename, lineno, file=None, line=None):
        prefix = "warning" if not issubclass(category, PluginWarning) else "plugin warning"
        print(f"stratum: {prefix}: {message}", file=stream)

    warnings.showwarning = _show
