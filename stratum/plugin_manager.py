"""Loading plugins and building the registries.

Built-in plugins and third-party plugins are found the same way: entry points
in group ``stratum``. Built-ins are those whose distribution is ``stratum``.

* ``STRATUM_DISABLE_PLUGIN_AUTOLOAD=1`` skips third-party entry points
  (built-ins still load), for reproducible runs.
* ``STRATUM_BLOCK_PLUGINS=a,b`` or ``stratum --block-plugin NAME`` blocks named
  plugins, built-in or not.
* ``stratum --plugin SPEC`` (also on ``stratum run``) and ``STRATUM_PLUGINS=a,b`` load
  a local plugin module without packaging it: SPEC is a dotted module name
  (importable from ``sys.path``) or the path of a ``.py`` file. Such a plugin has
  origin ``local``; one that cannot be found or imported is a :class:`ConfigError`
  (the user asked for it by name), and it loads even with autoload disabled.
* A third-party plugin that fails to import or to register gives one
  :class:`PluginWarning` naming it; the others still load.
* A plugin whose component name or option declaration collides with an earlier
  plugin's is disabled as a whole (all of its registrations, hooks and commands),
  with one warning naming both plugins. Built-ins load first, so they stay intact.
* Plugin code that fails later (a hook, a factory, a strategy method, a command)
  is reported as :class:`~stratum.errors.PluginError` naming the plugin.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata as md
import os
import re
import sys
import traceback
import types
import warnings
from typing import Iterable

import attrs
import pluggy

from . import hookspecs
from .components import REGISTRATION_HOOKS, Component, LazyFactory, signature_problem
from .errors import ConfigError, DuplicateNameError, PluginError, PluginHookError, RunInterrupted, StratumError
from .registry import Registries, unknown_name_message

ENTRY_POINT_GROUP = "stratum"
DISABLE_AUTOLOAD_ENV = "STRATUM_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "STRATUM_BLOCK_PLUGINS"
PLUGINS_ENV = "STRATUM_PLUGINS"
LOCAL_ORIGIN = "local"
BUILTIN_DISTRIBUTION = "stratum"
# Libraries a plugin should not import when it loads (each costs 0.1-2 s on every command).
HEAVY_MODULES = ("torch", "torchvision", "numpy", "scipy", "sklearn", "xgboost", "matplotlib", "pandas")

hookimpl = hookspecs.hookimpl  # re-exported: defined beside the hookspecs

class PluginWarning(UserWarning):
    """A plugin could not be loaded or could not register; the rest carry on."""


@attrs.define
class PluginRecord:
    """Where a plugin came from and what happened to it."""

    name: str
    origin: str  # "builtin", a distribution name, "local" (--plugin), "api" or "run-scoped"
    version: str
    module: str
    status: str  # loaded | blocked | failed | disabled | skipped
    detail: str = ""
    # Heavy libraries (torch, numpy, ...) first imported while this plugin loaded: registration
    # should be light (``stratum plugins`` names them; see docs/plugin-guide.md).
    heavy_imports: list = attrs.field(factory=list)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def blocked_from_env() -> list[str]:
    """The plugin names listed in ``STRATUM_BLOCK_PLUGINS`` (comma-separated)."""
    return [n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()]


def _check_block_names(names: Iterable[str], available: set[str], source: str) -> None:
    """Refuse a name that no plugin has: a typo would otherwise block nothing, silently.

    Raises :class:`ConfigError` naming ``source`` and the closest existing name.
    """
    for name in names:
        if name not in available:
            raise ConfigError(f"{source}: " + unknown_name_message("plugin", name, available))


def _is_core_module(module: str) -> bool:
    return module == "stratum" or module.startswith("stratum.")


class StratumPluginManager(pluggy.PluginManager):
    """A pluggy manager that knows where each plugin came from."""

    def __init__(self):
        super().__init__("stratum")
        self.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self._registries: Registries | None = None
        self._order: list[str] = []  # plugin names in registration order
        # run-scoped plugin name -> (kind or None, component or plugin name, providing plugin or None)
        self.scoped: dict[str, tuple[str | None, str, str | None]] = {}
        # local plugins (--plugin, STRATUM_PLUGINS): spec as loaded (absolute path or module) -> plugin name
        self.local_plugins: dict[str, str] = {}
        self._register_core()

    def _register_core(self) -> None:
        """Register stratum's core hook implementations (:mod:`stratum.engine_plugin`: the
        ``optimizer.step()`` fallback of ``stratum_apply_update``). Its name is no entry point,
        so no ``--block-plugin`` can remove it. Imports no torch, engine or report code."""
        from . import engine_plugin

        self.register(engine_plugin, name=engine_plugin.PLUGIN_NAME)
        self.records[engine_plugin.PLUGIN_NAME] = PluginRecord(
            engine_plugin.PLUGIN_NAME, "builtin", _stratum_version(), engine_plugin.__name__, "loaded"
        )

    def register(self, plugin, name=None):
        """pluggy's ``register``, remembering the order plugins were registered in."""
        registered = super().register(plugin, name=name)
        if registered is not None:
            self._order.append(registered)
        return registered

    def unregister(self, plugin=None, name=None):
        """pluggy's ``unregister``, forgetting the plugin's place and run-scoped label."""
        if name is None and plugin is not None:
            name = self.get_name(plugin)
        removed = super().unregister(plugin=plugin, name=name)
        if name in self._order:
            self._order.remove(name)
        self.scoped.pop(name, None)
        return removed

    # -- loading -------------------------------------------------------------
    def load_entry_points(self, block: Iterable[str] = (), autoload: bool | None = None) -> None:
        """Load the ``stratum`` entry points, built-ins first, skipping ``block`` and
        ``STRATUM_BLOCK_PLUGINS``. Raises :class:`ConfigError` for a blocked name that
        no entry point has; a plugin that fails to import only gives a warning."""
        if autoload is None:
            autoload = not _env_flag(DISABLE_AUTOLOAD_ENV)
        entry_points = list(md.entry_points(group=ENTRY_POINT_GROUP))
        available = {ep.name for ep in entry_points}
        _check_block_names(block, available, "--block-plugin")
        _check_block_names(blocked_from_env(), available, BLOCK_ENV)
        blocked = set(block) | set(blocked_from_env())
        for name in blocked:
            self.set_blocked(name)
        seen: set[str] = set()
        def builtin_first(ep):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else ""
            return (dist != BUILTIN_DISTRIBUTION, ep.name)

        # Built-ins load first, so a third-party override always comes after what it replaces.
        for ep in sorted(entry_points, key=builtin_first):
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
                before = set(sys.modules)
                plugin = ep.load()
                record.heavy_imports = [m for m in HEAVY_MODULES if m in sys.modules and m not in before]
                self.register(plugin, name=ep.name)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # one bad plugin (even one calling sys.exit) never takes the others down
                record.status = "failed"
                record.detail = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"plugin {ep.name!r} (from {dist}) failed to load and was skipped: "
                    f"{type(exc).__name__}: {exc}",
                    PluginWarning,
                    stacklevel=2,
                )

    def load_local_plugins(self, specs: Iterable[str], source: str = "--plugin") -> list[str]:
        """Load and register local plugin modules (``--plugin``, ``STRATUM_PLUGINS``).

        Each spec is a dotted module name or the path of a ``.py`` file (``~`` expanded,
        relative to the working directory). A file's plugin is named after its stem, a
        module's after its dotted name; a spec loaded already (the same file or module)
        is skipped. Returns the plugin names registered. Raises :class:`ConfigError`
        (one line naming ``source`` and the spec) for a missing file, a module that
        cannot be imported, code that fails while importing, or a name another plugin
        already has. Local plugins load even when autoload is disabled: they were asked
        for explicitly.
        """
        names = []
        for spec in specs:
            spec = str(spec).strip()
            if not spec:
                continue
            key, plugin_name, loader = _local_plugin_loader(spec, source)
            if key in self.local_plugins:
                continue
            if self.has_plugin(plugin_name) or plugin_name in self.records:
                where = self.describe(plugin_name)
                raise ConfigError(f"{source} {spec}: a plugin named {plugin_name!r} is loaded already ({where}); "
                                  "rename the module or file")
            before = set(sys.modules)
            module = loader()
            heavy = [m for m in HEAVY_MODULES if m in sys.modules and m not in before]
            if self.is_registered(module):
                raise ConfigError(f"{source} {spec}: this module is loaded already, as plugin "
                                  f"{self.get_name(module)!r}")
            try:
                self.register(module, name=plugin_name)
            except pluggy.PluginValidationError as exc:
                raise ConfigError(f"{source} {spec}: {' '.join(str(exc).split())}") from None
            unknown = self.unknown_hooks(module)
            if unknown:
                self.unregister(name=plugin_name)
                raise ConfigError(f"{source} {spec}: {unknown}")
            if not self.get_hookcallers(module):
                warnings.warn(f"{source} {spec}: the module implements no stratum hook "
                              "(decorate functions with @stratum.hookimpl)", PluginWarning, stacklevel=2)
            path = getattr(module, "__file__", None) or spec
            self.records[plugin_name] = PluginRecord(
                plugin_name, LOCAL_ORIGIN, str(getattr(module, "__version__", "-")), str(path), "loaded",
                heavy_imports=heavy,
            )
            self.local_plugins[key] = plugin_name
            self._registries = None
            names.append(plugin_name)
        return names

    def unknown_hooks(self, plugin: object) -> str | None:
        """Why ``plugin`` (registered) implements a hook stratum does not have, or ``None``.

        pluggy accepts an implementation of a hook nobody specified and never calls it;
        a typo in a hook name would fail silently. The message names the closest hook.
        """
        from .registry import closest

        known = [name for name in dir(self.hook) if name.startswith("stratum_")
                 and getattr(self.hook, name).spec is not None]
        for caller in self.get_hookcallers(plugin) or []:
            if caller.spec is None:
                hint = closest(caller.name, known)
                return (f"{caller.name!r} is not a stratum hook" + (f"; did you mean {hint!r}?" if hint else "")
                        + " (see docs/hooks.md)")
        return None

    def register_object(self, plugin: object, name: str, origin: str = "api") -> None:
        """Register a plugin object directly (tests, notebooks).

        Unlike a discovered plugin, an object registered this way whose component or
        option names collide makes :attr:`registries` raise :class:`DuplicateNameError`:
        the caller registered it and can act on the error.
        """
        self.register(plugin, name=name)
        self.records[name] = PluginRecord(
            name, origin, getattr(plugin, "__version__", "-"), getattr(plugin, "__name__", type(plugin).__name__), "loaded"
        )
        self._registries = None

    # -- registries ----------------------------------------------------------
    @property
    def registries(self) -> Registries:
        """The components of every loaded plugin, built on first use.

        A discovered plugin whose registration hook raises, or whose names or options
        collide with an earlier plugin's, is disabled (one :class:`PluginWarning`).
        Raises :class:`DuplicateNameError` for a collision of an object registered
        with :meth:`register_object`.
        """
        if self._registries is None:
            self._registries = self._build_registries()
        return self._registries

    def _build_registries(self) -> Registries:
        from .config import option_collision

        registries = Registries()
        # Plugin by plugin in load order, so a plugin loaded later is the one that
        # overrides, or collides with, an earlier one; and a plugin is all or nothing.
        for plugin_name in list(self._order):
            if plugin_name in self.scoped or not self.has_plugin(plugin_name):
                continue
            try:
                components = self._components_of(plugin_name)
            except KeyboardInterrupt:
                raise
            except _RegistrationFailed as failed:
                self._registration_failed(plugin_name, failed.hook_name, failed.cause)
                continue
            problem = (registries.collision(components, self.describe)
                       or option_collision(components, registries, self.describe))
            if problem:
                record = self.records.get(plugin_name)
                if record is not None and record.origin in ("api", LOCAL_ORIGIN):
                    raise DuplicateNameError(problem)
                self._disable(plugin_name, f"{problem}; {plugin_name!r} was disabled "
                                           f"(use -p {plugin_name} to silence this)")
                continue
            for component in components:
                if component.override and component.name in registries[component.kind]:
                    previous = registries[component.kind].get(component.name)
                    warnings.warn(
                        f"{self.describe(plugin_name)} overrides {component.kind} {component.name!r} of "
                        f"{self.describe(previous.plugin)} (override=True)",
                        PluginWarning, stacklevel=2,
                    )
                registries[component.kind].add(component)
        return registries

    def _components_of(self, plugin_name: str) -> list[Component]:
        """Every component ``plugin_name`` registers, across all registration hooks."""
        components: list[Component] = []
        for hook_name, kind in REGISTRATION_HOOKS.items():
            caller = getattr(self.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue
                try:
                    returned = impl.function()
                    items = _as_components(returned, kind, plugin_name)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    raise _RegistrationFailed(hook_name, exc) from exc
                components += [attrs.evolve(c, plugin=plugin_name) for c in items]
        return components

    def _registration_failed(self, plugin_name: str, hook_name: str, exc: BaseException) -> None:
        from .errors import describe_cause

        self._disable(plugin_name, f"{self.describe(plugin_name)} failed in {hook_name} and was disabled: "
                                   f"{describe_cause(exc)}", status="failed",
                      detail=f"{hook_name}: {describe_cause(exc)}")

    def _disable(self, plugin_name: str, message: str, *, status: str = "disabled", detail: str | None = None) -> None:
        """Take a plugin out entirely (components, hooks, commands), with one warning."""
        record = self.records.get(plugin_name)
        if record is not None:
            record.status = status
            record.detail = detail or message
        if self.has_plugin(plugin_name):
            self.unregister(name=plugin_name)
        warnings.warn(message, PluginWarning, stacklevel=3)

    # -- naming plugins ------------------------------------------------------
    def describe(self, name: str) -> str:
        """How errors and warnings name a plugin: ``plugin 'x'``, with the distribution and
        version for an installed third-party plugin, and the component for a run-scoped
        plugin (``profiler 'boom' from plugin 'myplug' (dist myplug-dist 1.0)``)."""
        if name in self.scoped:
            kind, component, provider = self.scoped[name]
            if kind is None:
                return f"run plugin {component!r}"
            return f"{kind} {component!r} from {self.describe(provider)}" if provider else f"{kind} {component!r}"
        record = self.records.get(name)
        if record is None or record.origin in ("api", "run-scoped"):
            return f"plugin {name!r}"
        if record.origin == LOCAL_ORIGIN:
            return f"plugin {name!r} (local {record.module})"
        if record.origin == "builtin":
            return f"plugin {name!r} (built-in)"
        return f"plugin {name!r} (dist {record.origin} {record.version})"

    def provider(self, name: str) -> str:
        """The loaded plugin behind ``name`` (a run-scoped plugin maps to its component's plugin)."""
        if name in self.scoped:
            return self.scoped[name][2] or name
        return name

    def is_builtin(self, name: str) -> bool:
        """True for stratum's own plugins (and its own run-scoped helpers such as the display)."""
        if name in self.scoped and self.scoped[name][2] is None:
            return True
        record = self.records.get(self.provider(name))
        return record is not None and record.origin == "builtin"

    def provenance(self, component: Component) -> dict:
        """``{"name", "plugin", "version", "dist"}`` of a registered component, for summaries."""
        record = self.records.get(component.plugin)
        return {
            "name": component.name,
            "plugin": component.plugin,
            "version": record.version if record else "-",
            "dist": (BUILTIN_DISTRIBUTION if record.origin == "builtin" else record.origin) if record else "-",
        }

    def register_scoped(self, plugin: object, name: str, kind: str | None = None,
                        component: str | None = None, provider: str | None = None) -> None:
        """Register a run-scoped plugin (a strategy, profiler, extension, the display).

        ``kind``/``component``/``provider`` say which registered component it is, so that
        errors name the plugin that provides it. Raises :class:`PluginError` when the
        object's hook implementations do not match the hook specifications.
        """
        self.scoped[name] = (kind, component or name.rsplit(":", 1)[-1], provider)
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            label = self.describe(name)
            if kind is None:  # a callback (stratum.fit(callbacks=...)): its internal run-scoped name means nothing
                label = f"callback {type(plugin).__name__!r}"
            self.scoped.pop(name, None)
            raise PluginError(self.provider(name), "to register its hooks", ConfigError(_hook_mismatch(plugin, exc)),
                              label) from None

    # -- attributing failures ------------------------------------------------
    def _module_owners(self) -> list[tuple[str, str]]:
        """(module prefix, plugin name), longest prefix first, for reading tracebacks."""
        owners = []
        for name in self._order:
            plugin = self.get_plugin(name)
            if plugin is None:
                continue
            module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
            record = self.records.get(name)
            if record is not None and record.origin not in ("builtin", "api", "run-scoped", LOCAL_ORIGIN):
                # an installed distribution: its whole top-level package is its code
                module = record.module.split(":")[0].split(".")[0]
            if module and not _is_core_module(module):
                owners.append((module, self.provider(name)))
        if self._registries is not None:
            # A factory named "module:attr" may live outside the plugin's own package: that
            # module is the plugin's code too.
            for component in self._registries.all():
                if isinstance(component.factory, LazyFactory):
                    module = component.factory.target.split(":")[0]
                    if not _is_core_module(module):
                        owners.append((module, self.provider(component.plugin)))
        return sorted(owners, key=lambda o: -len(o[0]))

    def culprit_of(self, exc: BaseException):
        """The plugin whose code raised ``exc``: ``(name, frame summary)`` or ``None``.

        Read off the traceback: the innermost frame that is either a plugin's code or
        stratum's core decides. ``None`` when it is stratum's core (or nobody's).
        """
        owners = self._module_owners()

        def owner(frame):
            module = frame.f_globals.get("__name__", "") or ""
            if _is_core_module(module):
                return "stratum"
            return next((name for prefix, name in owners if module == prefix or module.startswith(prefix + ".")), None)

        frames = list(traceback.walk_tb(exc.__traceback__))
        for index in range(len(frames) - 1, -1, -1):
            frame, lineno = frames[index]
            name = owner(frame)
            if name is None:
                continue
            if name == "stratum":
                return None
            where = f"{frame.f_code.co_qualname} ({os.path.basename(frame.f_code.co_filename)}:{lineno})"
            entry = frame
            for outer, _ in reversed(frames[:index]):  # where stratum called into this plugin
                who = owner(outer)
                if who == name:
                    entry = outer
                elif who is not None:
                    break
            if entry is not frame:
                where = f"{entry.f_code.co_qualname}, raised at {where}"
            return name, where, self._component_label(name, frames, owners)
        return None

    def _component_label(self, plugin_name: str, frames, owners) -> str:
        """``model 'tiny-cnn' from plugin ...`` when a frame is one of the plugin's factories."""
        registries = self._registries
        if registries is not None:
            codes = {}
            for component in registries.all():
                if component.plugin != plugin_name:
                    continue
                factory = component.factory
                if isinstance(factory, LazyFactory):  # never imported here: only a loaded one can be on the stack
                    factory = factory.loaded
                if isinstance(factory, functools.partial):
                    factory = factory.func
                code = getattr(factory, "__code__", None)
                if code is None and isinstance(factory, type):
                    code = getattr(factory.__dict__.get("__init__"), "__code__", None)
                if code is not None:
                    codes[code] = component
            for frame, _ in frames:
                component = codes.get(frame.f_code)
                if component is not None:
                    return f"{component.kind} {component.name!r} from {self.describe(plugin_name)}"
        return self.describe(plugin_name)

    def attributed(self, exc: BaseException, doing: str = "", fallback: str | None = None) -> PluginError | None:
        """``exc`` as a :class:`PluginError` naming the plugin whose code raised it, or
        ``None`` when it is stratum's own (a bug, or a core :class:`StratumError`).

        ``fallback`` is the plugin to blame when the traceback names none (a plugin
        command driving core code). ``SystemExit`` and other ``BaseException``s are
        always attributed, to ``plugin code`` when nobody can be named.
        """
        found = self.culprit_of(exc)
        if found is None and fallback is not None:
            found = (fallback, "", self.describe(fallback))
        is_exception = isinstance(exc, Exception)
        if found is None:
            if is_exception:
                return None
            found = ("unknown", "", "plugin code")
        name, where, label = found
        if is_exception and self.is_builtin(name):
            return None
        return PluginError(name, " ".join(p for p in (doing, f"in {where}" if where else "") if p), exc, label)

    @contextlib.contextmanager
    def guard(self, doing: str = ""):
        """Run code that calls into plugins; name the plugin when it fails.

        Inside the block, an exception raised by a third-party plugin's code (read off
        the traceback) becomes :class:`PluginError`; a :class:`StratumError` keeps its
        message and exit code and gains the plugin's name; ``SystemExit`` (and any other
        ``BaseException``) from any code becomes a :class:`PluginError`, so no plugin can
        end a run as if it had finished. ``KeyboardInterrupt`` passes through, as do
        errors already attributed and exceptions of stratum's own code (bugs).
        """
        try:
            yield
        except (KeyboardInterrupt, PluginError, RunInterrupted):
            raise
        except BaseException as exc:
            error = self.attributed(exc, doing)
            if error is None:
                raise
            raise error from exc

    # -- calling lifecycle hooks ---------------------------------------------
    def call(self, hook_name: str, **kwargs):
        """Call a lifecycle hook; a plugin's failure becomes :class:`PluginHookError`.

        A third-party plugin's :class:`StratumError` keeps its exit code and gains the
        plugin's name; ``SystemExit`` and other ``BaseException``s become errors too. A
        ``KeyboardInterrupt`` raised by a hook asks the run to stop at the next step
        boundary, exactly like Ctrl-C: a checkpoint is flushed and the run exits 130.
        """
        caller = getattr(self.hook, hook_name)
        try:
            return caller(**kwargs)
        except (PluginError, RunInterrupted):
            raise
        except KeyboardInterrupt as exc:
            run = kwargs.get("run")
            if run is None or not hasattr(run, "stop_requested"):
                raise
            culprit = self._culprit(caller, exc)
            warnings.warn(f"{self.describe(culprit)} raised KeyboardInterrupt in hook {hook_name}; "
                          "stopping at the next step boundary", PluginWarning, stacklevel=2)
            run.stop_requested = run.stop_requested or "SIGINT"
            return None
        except StratumError as exc:
            culprit = self._culprit(caller, exc)
            if culprit == "unknown" or self.is_builtin(culprit):
                raise
            raise PluginHookError(self.provider(culprit), hook_name, exc, self.describe(culprit)) from exc
        except BaseException as exc:
            culprit = self._culprit(caller, exc)
            raise PluginHookError(self.provider(culprit), hook_name, exc, self.describe(culprit)) from exc

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

    # -- commands --------------------------------------------------------------
    def commands(self, reserved: Iterable[str] = ()) -> dict:
        """Click commands from ``stratum_register_commands``, by name.

        A plugin whose hook raises, returns something that is not a click command, or
        adds a name that exists (a core command in ``reserved`` or an earlier plugin's
        command) is disabled with one warning. Each command is wrapped so that its
        failures name the plugin.
        """
        import click

        self.registries  # a plugin disabled for its components contributes no commands either
        commands: dict = {}
        owner: dict[str, str] = {}
        reserved = set(reserved)
        for impl in list(self.hook.stratum_register_commands.get_hookimpls()):
            name = impl.plugin_name
            try:
                returned = impl.function()
                items = returned if isinstance(returned, (list, tuple)) else [returned] if returned is not None else []
                for command in items:
                    if not isinstance(command, click.Command):
                        raise TypeError(f"expected a click command, got {type(command).__name__}")
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                self._registration_failed(name, "stratum_register_commands", exc)
                continue
            clash = next((c.name for c in items if c.name in reserved or c.name in commands), None)
            if clash is not None:
                first = "stratum itself" if clash in reserved else self.describe(owner[clash])
                message = (f"{self.describe(name)} adds command {clash!r}, which {first} already has; "
                           f"{name!r} was disabled (use -p {name} to silence this)")
                record = self.records.get(name)
                if record is not None and record.origin in ("api", LOCAL_ORIGIN):
                    raise DuplicateNameError(message)
                self._disable(name, message)
                continue
            for command in items:
                commands[command.name] = _guarded_command(self, command, name)
                owner[command.name] = name
        return commands


def _hook_mismatch(plugin: object, exc: BaseException) -> str:
    """One line saying which hook implementation of ``plugin`` asks for an argument its hook does
    not pass (pluggy's own message spans several lines and names internal plugin ids)."""
    from pluggy._hooks import varnames

    from . import hookspecs as specs

    for attr in dir(plugin):
        spec = getattr(specs, attr, None) if attr.startswith("stratum_") else None
        if spec is None:
            continue
        wanted = [a for a in varnames(getattr(plugin, attr))[0] if a != "self"]
        allowed = varnames(spec)[0]
        extra = [a for a in wanted if a not in allowed]
        if extra:
            return (f"{attr}({', '.join(wanted)}) asks for {', '.join(repr(a) for a in extra)}, which the hook does not "
                    f"pass; it passes ({', '.join(allowed)}), and an implementation may take any of them")
    return " ".join(str(exc).split())


class _RegistrationFailed(Exception):
    def __init__(self, hook_name: str, cause: BaseException):
        super().__init__(hook_name)
        self.hook_name = hook_name
        self.cause = cause


def _guarded_command(pm: "StratumPluginManager", command, plugin_name: str):
    """Make ``command`` report its failures as :class:`PluginError` naming ``plugin_name``.

    click's own exceptions (usage errors, ``ctx.exit()``) and a ``sys.exit()`` the
    command chose pass through; a command is allowed to pick its exit code.
    """
    import click

    invoke = command.invoke

    def guarded_invoke(ctx):
        try:
            return invoke(ctx)
        except (KeyboardInterrupt, SystemExit, click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort, PluginError, RunInterrupted):
            raise
        except BaseException as exc:
            error = pm.attributed(exc, f"in command {command.name!r}",
                                  fallback=None if pm.is_builtin(plugin_name) else plugin_name)
            if error is None:
                raise  # stratum's own code: a core error, or a bug reported as an internal error
            raise error from exc

    command.invoke = guarded_invoke
    return command


def _as_components(returned, kind: str, plugin_name: str) -> list[Component]:
    if returned is None:
        return []
    items = [returned] if isinstance(returned, Component) else list(returned)
    for item in items:
        if not isinstance(item, Component):
            raise TypeError(f"expected stratum.Component, got {type(item).__name__}")
        if item.kind != kind:
            raise TypeError(f"returned a {item.kind} component {item.name!r} from the {kind} hook")
        problem = None if isinstance(item.factory, LazyFactory) else signature_problem(item.factory, kind)
        if problem:  # a LazyFactory checks itself when it is imported
            raise TypeError(f"factory of {kind} {item.name!r} {problem}")
    return items


def plugins_from_env() -> list[str]:
    """The local plugin specs listed in ``STRATUM_PLUGINS`` (comma-separated)."""
    return [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _local_plugin_loader(spec: str, source: str):
    """``(key, plugin name, load())`` for a local plugin spec; raises ConfigError for a bad spec.

    A spec ending in ``.py`` or holding a path separator is a file; anything else must be a
    dotted module name. ``load()`` imports the module, turning any failure into ConfigError.
    """
    from .paths import expand

    is_file = spec.endswith(".py") or "/" in spec or os.sep in spec or spec.startswith("~")
    if is_file:
        path = expand(spec)
        if not path.exists():
            raise ConfigError(f"{source} {spec}: no such file")
        if path.is_dir():
            raise ConfigError(f"{source} {spec}: is a directory, not a .py file (give a module name to load a package)")
        if path.suffix != ".py":
            raise ConfigError(f"{source} {spec}: not a .py file")
        path = path.resolve()
        name = path.stem
        if not name.isidentifier():
            raise ConfigError(f"{source} {spec}: {name!r} is not a valid module name")

        def load():
            import importlib.util

            module_name = f"_stratum_local_{name}_{abs(hash(str(path))):x}"
            try:
                module_spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[module_name] = module
                module_spec.loader.exec_module(module)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                sys.modules.pop(module_name, None)
                raise ConfigError(f"{source} {spec}: failed to import: {_describe_import_error(exc)}") from None
            return module

        return str(path), name, load
    if not _MODULE_NAME.fullmatch(spec):
        raise ConfigError(f"{source} {spec!r}: not a module name (a.b.c) nor a path to a .py file")

    def load():
        import importlib

        try:
            return importlib.import_module(spec)
        except KeyboardInterrupt:
            raise
        except ModuleNotFoundError as exc:
            if exc.name and spec.split(".")[: len(exc.name.split("."))] == exc.name.split("."):
                raise ConfigError(f"{source} {spec}: no module named {exc.name!r} on sys.path") from None
            raise ConfigError(f"{source} {spec}: failed to import: {_describe_import_error(exc)}") from None
        except BaseException as exc:
            raise ConfigError(f"{source} {spec}: failed to import: {_describe_import_error(exc)}") from None

    return spec, spec, load


def _describe_import_error(exc: BaseException) -> str:
    from .errors import describe_cause

    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return describe_cause(exc)


def create_plugin_manager(block: Iterable[str] = (), autoload: bool | None = None,
                          plugins: Iterable[str] = ()) -> StratumPluginManager:
    """A plugin manager with the built-ins, (unless disabled) third-party plugins, and the
    local plugin modules ``plugins`` plus those in ``STRATUM_PLUGINS``.

    Raises :class:`ConfigError` for a blocked name no plugin has and for a local plugin
    spec that cannot be loaded (see :meth:`StratumPluginManager.load_local_plugins`).
    """
    pm = StratumPluginManager()  # with stratum's core fallbacks (stratum.engine_plugin)
    pm.load_entry_points(block=block, autoload=autoload)
    pm.load_local_plugins(plugins, "--plugin")
    pm.load_local_plugins(plugins_from_env(), PLUGINS_ENV)
    return pm


def _stratum_version() -> str:
    from .version import __version__

    return __version__


def show_warnings_as_lines(stream=None) -> None:
    """Print plugin warnings as single lines, the way the CLI wants them."""
    stream = stream or sys.stderr

    def _show(message, category, filename, lineno, file=None, line=None):
        prefix = "warning" if not issubclass(category, PluginWarning) else "plugin warning"
        print(f"stratum: {prefix}: {message}", file=stream)

    warnings.showwarning = _show
    # Each invocation states its plugin problems (in-process callers invoke more than once).
    warnings.filterwarnings("always", category=PluginWarning)
