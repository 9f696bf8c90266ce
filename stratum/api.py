"""The Python API: train from a notebook or a script.

``stratum.fit(...)`` does what ``stratum run`` does and returns a :class:`Result`
holding the trained model, instead of printing a table::

    import stratum

    result = stratum.fit(model="mlp", hidden=[32], epochs=2, quiet=True)
    result.model      # the trained torch.nn.Module
    result.summary    # the summary `stratum run --json` writes

Options are the flags and TOML keys of ``stratum run`` (``batch_size`` or
``batch-size``), validated the same way. See docs/api.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs

from .errors import ConfigError, OutputError

@attrs.define(eq=False)
class Result:
    """What :func:`fit` returns.

    * ``model``: the trained ``torch.nn.Module`` (on the run's device, in eval mode).
      For ``lottery`` it is the sparsest trained ticket, the model the search leaves.
    * ``summary``: the run summary (the JSON ``stratum run --json`` writes).
    * ``history``: ``summary["history"]``, one dict per epoch.
    * ``run_dir``: the run directory (``out``/``name``) or ``None`` when nothing was written.
    * ``config``: the resolved :class:`~stratum.config.RunConfig` the run used.
    * ``averaged_model``: the weight average the run evaluated and reported (``--average ema``
      or ``swa``: the ``averaging`` extension's ``nn.Module``, same class and state_dict keys as
      ``model``, in eval mode), or that of a strategy that makes one; ``None`` otherwise.
      For ``lottery`` it is the average of the last fit (the sparsest ticket's).
    * ``pruned_model``: the pruned model of a pruning strategy; for ``lottery``, the trained
      ticket of the last level (the same module as ``model``); ``None`` otherwise.
    """

    model: Any
    summary: dict
    run_dir: Path | None
    config: Any = attrs.field(repr=False)
    averaged_model: Any = attrs.field(default=None, repr=False)
    pruned_model: Any = attrs.field(default=None, repr=False)

    @property
    def history(self) -> list[dict]:
        """Per-epoch records: loss, accuracy, timing (``summary["history"]``)."""
        return self.summary.get("history", [])

    def __repr__(self) -> str:
        s = self.summary
        return (f"Result(strategy={s.get('strategy')!r}, model={s.get('model')!r}, dataset={s.get('dataset')!r}, "
                f"epochs_run={s.get('epochs_run')}, best_val_acc={s.get('best_val_acc')}, "
                f"test_acc_at_best_val={s.get('test_acc_at_best_val')}, run_dir={self.run_dir})")


def _callback_hooks(callback: object) -> list[str]:
    """The names of the hooks ``callback`` implements (methods marked with ``@stratum.hookimpl``)."""
    names = []
    for attr in dir(callback):
        if attr.startswith("__"):
            continue
        try:
            value = getattr(callback, attr)
        except Exception:  # a property that fails is not a hook
            continue
        if callable(value) and getattr(value, "stratum_impl", None) is not None:
            names.append(attr)
    return names


def check_callbacks(callbacks) -> list[object]:
    """The callbacks as a list, each checked to implement only hooks stratum has.

    Takes a list or tuple of objects whose methods are marked ``@stratum.hookimpl``.
    Raises :class:`ConfigError` for something that is not a list of such objects (a class
    instead of an instance included), for a callback implementing no hook, and for a hook name stratum does not have (with the
    closest name: a typo would otherwise never be called).
    """
    from . import hookspecs
    from .registry import closest

    if callbacks is None:
        return []
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"callbacks must be a list of objects with @stratum.hookimpl methods, "
                          f"got {type(callbacks).__name__}")
    known = [name for name in dir(hookspecs) if name.startswith("stratum_")]
    for callback in callbacks:
        if isinstance(callback, type):
            raise ConfigError(f"callback {callback.__name__} is a class; pass an instance: {callback.__name__}()")
        hooks = _callback_hooks(callback)
        label = type(callback).__name__
        if not hooks:
            raise ConfigError(f"callback {label} implements no stratum hook "
                              "(mark its methods with @stratum.hookimpl; see docs/hooks.md)")
        for hook in hooks:
            if hook not in known:
                hint = closest(hook, known)
                raise ConfigError(f"callback {label}: {hook!r} is not a stratum hook"
                                  + (f"; did you mean {hint!r}?" if hint else "") + " (see docs/hooks.md)")
    return list(callbacks)


def make_run_config(config=None, options: Mapping[str, Any] | None = None, *, pm=None):
    """A validated :class:`~stratum.config.RunConfig` from what :func:`fit` takes.

    ``config``: ``None``, a ``RunConfig``, a mapping of options, or the path of a TOML file
    (``str`` or ``os.PathLike``); ``options``: keyword options, which win over ``config``.
    Validation is the same as for flags and TOML (plugin options included). Raises
    :class:`ConfigError` for an unknown option (naming the closest one), a bad value, or
    a TOML file that is missing or malformed.
    """
    from .config import RunConfig, load_toml, make_config, plugin_option_fields
    from .plugin_manager import create_plugin_manager

    pm = pm if pm is not None else create_plugin_manager()
    plugin_fields = plugin_option_fields(pm.registries.all())
    options = dict(options or {})
    toml_values, toml_source = None, "config file"
    if config is None:
        pass
    elif isinstance(config, RunConfig):
        data = config.to_dict()
        toml_values = {k: v for k, v in data.items() if config.is_set(k) and v is not None}
        toml_source = "the RunConfig given"
    elif isinstance(config, (str, os.PathLike)):
        toml_values = load_toml(Path(config))
        toml_source = str(config)
    elif isinstance(config, Mapping):
        toml_values, toml_source = dict(config), "the config mapping"
    else:
        raise ConfigError(f"config must be a RunConfig, a mapping of options or the path of a TOML file, "
                          f"got {type(config).__name__}")
    return make_config(options, toml_values=toml_values, toml_source=toml_source, plugin_fields=plugin_fields,
                       values_source="stratum.fit() keyword arguments")


def fit(config=None, *, callbacks: Iterable[object] | None = None, plugins: Iterable[str] = (),
        **options) -> Result:
    """Train one model, like ``stratum run``, and return a :class:`Result`.

    Takes ``config`` (optional: a :class:`~stratum.config.RunConfig`, a mapping, or the path
    of a TOML file) and keyword ``options`` (any ``stratum run`` option, ``_`` or ``-``
    spelling; they win over ``config``). ``callbacks``: a list of objects with
    ``@stratum.hookimpl`` methods, registered as run-scoped plugins for this run only and
    unregistered afterwards, also when the run fails. ``plugins``: local plugin modules to
    load (dotted names or ``.py`` paths, like ``stratum --plugin``); ``STRATUM_PLUGINS`` and
    the installed plugins load as for the CLI.

    When ``out`` or ``json`` is given the summary is written like ``stratum run`` writes it.
    Progress is printed unless ``quiet=True``; errors are raised, never printed.

    Raises :class:`~stratum.errors.ConfigError` (unknown option, bad value, bad TOML, bad
    callback or plugin), :class:`~stratum.errors.UnknownNameError` (a component nobody
    registered), :class:`~stratum.errors.DataError`, :class:`~stratum.errors.OutputError`
    (a destination that cannot be written; ``finished_result`` holds the summary when the
    run had finished), :class:`~stratum.errors.CheckpointError`,
    :class:`~stratum.errors.PluginError` (plugin code failed, naming the plugin): all
    subclasses of :class:`~stratum.errors.StratumError`.
    """
    from .config import check_outputs, plugin_option_fields
    from .display import ConsoleDisplay
    from .engine import Trainer
    from .plugin_manager import create_plugin_manager
    from .results import write_summary

    if isinstance(plugins, (str, os.PathLike)):
        plugins = [plugins]
    pm = create_plugin_manager(plugins=[str(p) for p in plugins])
    run_config = make_run_config(config, options, pm=pm)
    callbacks = check_callbacks(callbacks)
    check_outputs(run_config, plugin_option_fields(pm.registries.all()))  # before any work
    extra = [("display", ConsoleDisplay(quiet=run_config.quiet))]
    extra += [(f"callback{index}:{type(cb).__name__}", cb) for index, cb in enumerate(callbacks)]
    trainer = Trainer(pm, extra_plugins=extra, handle_signals=False)
    try:
        run, summary = trainer.execute(run_config)
    finally:
        for name in list(pm.scoped):  # run-scoped plugins never outlive the run, even on error
            if pm.has_plugin(name):
                pm.unregister(name=name)
    try:
        write_summary(summary, json_path=run.config.json, run_dir=run.config.run_dir())
    except OutputError as exc:  # the run finished: its summary travels with the error
        exc.finished_result = summary
        raise
    with pm.guard("in final_models"):
        finals = trainer.final_models(run)
    run.model.eval()
    return Result(model=run.model, summary=summary, run_dir=run.config.run_dir(), config=run.config,
                  averaged_model=finals.get("averaged"), pruned_model=finals.get("pruned"))
