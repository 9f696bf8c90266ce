"""Every hook stratum calls, in one place.

Plugins implement these with ``@stratum.hookimpl``. Argument names matter
(pluggy passes by name) but an implementation may accept any subset of them.

Two families:

* **Registration hooks** (``stratum_register_*``) run once, when the plugin
  manager builds its registries. Each returns a :class:`stratum.Component`, an
  iterable of them, or ``None``. stratum calls every implementation separately,
  so it knows which plugin registered what; a registration hook that raises
  drops only that plugin's registrations for that kind (one warning names it).
  They run for every command (``stratum --help`` and ``list`` too), so they
  should import nothing heavy: a factory may be given as a string
  ``"package.module:attr"``, imported when the component is first used. The
  kinds, with their hooks and factory contracts, are the rows of
  ``stratum.components.KIND_TABLE``.
* **Lifecycle hooks** (``stratum_fit_start`` ... ``stratum_decide_switch``) are
  called by the training engine, in this order::

      fit_start
        epoch_start
          before_train_step
            [forward, loss, backward: only in modes that use data]
            capture_parameters
            apply_update            (firstresult)
          after_train_step
          ... more steps ...
        evaluation_end              (validation and test of this epoch)
        epoch_end
        decide_switch               (firstresult)
        ... more epochs ...
      fit_end

  The active strategy, the active profilers, the extensions that take part
  (``--capture-out``, ``--tensorboard`` ...) and the extra plugins (the display,
  ``stratum.fit`` callbacks) are registered as *run-scoped* plugins: they
  receive lifecycle hooks for that fit only, called in this order: strategy,
  profilers (``--profile`` order), extensions, extra plugins (the order given);
  then the plugins loaded for the whole process; stratum's ``trylast``
  ``optimizer.step()`` fallback last. ``tryfirst=True``/``trylast=True`` move an
  implementation before/after all of them (docs/architecture.md, "Who is called
  first around a hook"). A lifecycle hook that raises ends the run with an error
  that names the plugin and the hook.

``run`` is always the :class:`stratum.engine.Run` being trained (``stratum/engine/run.py``): it exposes
``config``, ``model``, ``optimizer``, ``device``, ``data``, ``task``, ``strategy``,
``epoch``, ``global_step``, ``mode``, ``history``, ``summary`` (a dict plugins
may add JSON-safe entries to), ``timer`` (phase marks), ``hooks`` and ``fit_tag``
(which fit of the run this is, for strategies that fit several times: the lottery
sets ``L01-ticket`` ...; loggers and profilers give each fit its own place).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("stratum")
#: Decorator for hook implementations (``@stratum.hookimpl``), beside the specs it implements,
#: as pluggy's and datasette's hosts do. ``stratum.hookimpl`` and
#: ``stratum.plugin_manager.hookimpl`` are this same marker.
hookimpl = pluggy.HookimplMarker("stratum")


# ---------------------------------------------------------------------------
# Registration hooks: one per component kind.
# ---------------------------------------------------------------------------


@hookspec
def stratum_register_strategies():
    """Register training strategies (``--strategy NAME``).

    Fires once while the registries are built. Receives nothing. Returns a
    ``Component`` of kind ``strategy`` (see :func:`stratum.components.strategy`)
    or an iterable of them; its factory is called as ``factory(run)`` and must
    return a :class:`stratum.Strategy`. Not firstresult: every plugin's
    registrations are collected.
    """


@hookspec
def stratum_register_models():
    """Register model architectures (``--model NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``model`` components; the factory is called as ``factory(spec, options)``
    with a :class:`stratum.data.ModelSpec` (input shape, number of outputs) and
    returns an ``nn.Module``. Not firstresult.
    """


@hookspec
def stratum_register_datasets():
    """Register data sets (``--dataset NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``dataset`` components; the factory is called as ``factory(request,
    options)`` with a :class:`stratum.data.DataRequest` and returns a
    :class:`stratum.data.DatasetBundle`. Not firstresult.
    """


@hookspec
def stratum_register_initializers():
    """Register weight initialisers (``--init NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``initializer`` components; the factory is called as ``factory(model,
    options, generator)`` and re-initialises the model's parameters in place
    using only ``generator`` for randomness. Not firstresult.
    """


@hookspec
def stratum_register_optimizers():
    """Register optimisers (``--optimizer NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``optimizer`` components; the factory is called as ``factory(params,
    config, options)`` and returns a ``torch.optim.Optimizer``. Not firstresult.
    """


@hookspec
def stratum_register_regressors():
    """Register focus-library regressor backends (``--regressor NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``regressor`` components; the factory is called as ``factory(options)``
    and returns an object with ``fit(x, y)`` and ``predict(x)`` on tensors.
    Not firstresult.
    """


@hookspec
def stratum_register_switching_policies():
    """Register switching policies (``--policy NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``policy`` components; the factory is called as ``factory(options)`` and
    returns a policy object consulted after every epoch. Not firstresult.
    """


@hookspec
def stratum_register_profilers():
    """Register profilers (``--profile NAME``, repeatable).

    Fires once while the registries are built. Receives nothing. Returns
    ``profiler`` components; the factory is called as ``factory(run,
    options)`` at fit start and returns an object that is registered as a
    run-scoped plugin (it may implement any lifecycle hook). Not firstresult.
    """


@hookspec
def stratum_register_feature_sets():
    """Register focus-library feature sets (``--features NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``feature_set`` components; the factory is called as ``factory(options)``.
    Not firstresult.
    """


@hookspec
def stratum_register_extensions():
    """Register extensions: plugin-wide behaviours switched on by their own options.

    Fires once while the registries are built. Receives nothing. Returns
    ``extension`` components. Unlike profilers, which the user selects with
    ``--profile``, every extension's factory is called at every fit start as
    ``factory(run, options)``; it returns a run-scoped plugin (any lifecycle
    hooks, e.g. a ``stratum_apply_update`` wrapper adding an L1 term to
    ``.grad``) or ``None`` when its options leave it off, so it composes with
    any strategy and costs nothing when unused. Not firstresult.
    """


@hookspec
def stratum_register_commands():
    """Add sub-commands to the ``stratum`` CLI (e.g. ``stratum prior``).

    Fires when the CLI resolves or lists its commands. Receives nothing.
    Returns a ``click.Command`` (or group) or a list of them; a command whose
    name is already taken by the core or another plugin is an error. Inside a
    command, ``stratum.cli.get_pm(click.get_current_context())`` gives the
    plugin manager. Not firstresult.
    """


# ---------------------------------------------------------------------------
# Lifecycle hooks: called by the engine.
# ---------------------------------------------------------------------------


@hookspec
def stratum_fit_start(run):
    """The model, optimiser and data are ready; no step has run yet.

    Fires once per fit, after a checkpoint (if any) was restored, so
    ``run.epoch`` may be greater than 0. Receives the ``run``. May prepare
    state, wrap or replace ``run.optimizer``, and write into ``run.summary``.
    Return value ignored; not firstresult.
    """


@hookspec
def stratum_fit_end(run, summary):
    """Training has stopped (epochs done, early stop, divergence or a stop request).

    Fires once per fit, before the summary is written. Receives the ``run``
    and the ``summary`` dict about to be returned; may add JSON-safe keys to
    ``summary``. Return value ignored; not firstresult.
    """


@hookspec
def stratum_epoch_start(run, epoch, mode):
    """An epoch is about to run.

    Receives the ``run``, the 1-based ``epoch`` and the ``mode`` (the update
    method that will run this epoch, e.g. ``"sgd"`` or ``"focus"``). Return value
    ignored; not firstresult.
    """


@hookspec
def stratum_epoch_end(run, epoch, record):
    """An epoch, its evaluation and its history row are complete.

    Receives the ``run``, the 1-based ``epoch`` and ``record``, the history row
    (keys ``epoch``, ``mode``, ``train_loss``, ``val_loss``, ``val_acc``,
    ``test_loss``, ``test_acc``, ``epoch_s``, ``cum_s`` ...). May add JSON-safe
    keys to ``record``. A row with ``diverged: true`` ends the run after this
    hook; a plugin that has restored the model to a finite earlier state (the
    focus strategy's guarded rollback) may remove ``diverged`` and
    ``stopped_reason`` from ``record`` so that training goes on. Return value
    ignored; not firstresult.
    """


@hookspec
def stratum_before_train_step(run, step):
    """A training step is about to start.

    Receives the ``run`` and the 0-based ``step`` within the epoch
    (``run.global_step`` counts across epochs). Return value ignored; not firstresult.
    """


@hookspec
def stratum_after_train_step(run, step, loss):
    """A training step, including its parameter update, is complete.

    Receives the ``run``, the 0-based ``step`` and ``loss``: the detached loss
    tensor of this step, or ``None`` in a mode that uses no data. The place to
    re-apply masks or clamp parameters. Return value ignored; not firstresult.
    """


@hookspec
def stratum_capture_parameters(run, step):
    """Gradients of this step are in ``.grad``; the update has not been applied.

    Fires every step in every mode, between the backward pass (if any) and
    :func:`stratum_apply_update`. Receives the ``run`` and the 0-based ``step``.
    Implementations read parameters and gradients (e.g. to build a prior) and
    must not modify them. Under ``--precision fp16`` the gradients are already
    unscaled here; a step whose unscaled gradients hold inf or NaN is skipped
    (neither this hook nor :func:`stratum_apply_update` fires for it, as
    ``GradScaler.step`` skips ``optimizer.step()``). Return value ignored; not firstresult.
    """


@hookspec(firstresult=True)
def stratum_apply_update(run, step):
    """Apply this step's parameter update.

    Receives the ``run`` and the 0-based ``step``. The first implementation
    that returns a non-``None`` value has applied the update; the rest are
    skipped. stratum's own fallback (``trylast``) calls
    ``run.optimizer.step()`` and returns ``"optimizer"``. A strategy that
    predicts gradients writes them to ``.grad`` and steps the optimiser here.
    Wrappers (``@hookimpl(wrapper=True)``) may change ``.grad`` before the
    update (noise, penalties) or parameters after it (masks). The gradients
    are true (unscaled) gradients under every ``--precision``. firstresult.
    """


@hookspec
def stratum_evaluation_end(run, epoch, metrics):
    """Validation and test evaluation of an epoch are done.

    Receives the ``run``, the 1-based ``epoch`` and ``metrics`` (``val_loss``,
    ``val_acc``, ``test_loss``, ``test_acc``; accuracies are ``None`` for
    regression tasks). Plugins may read them; training decisions must read
    only the ``val_*`` entries. Return value ignored; not firstresult.
    """


@hookspec(firstresult=True)
def stratum_decide_switch(run, epoch, history):
    """Decide the update method for the next epoch.

    Fires after :func:`stratum_epoch_end`, unless training is stopping.
    Receives the ``run``, the 1-based ``epoch`` just finished and the
    ``history`` rows so far. Returns a :class:`stratum.SwitchDecision` to
    change ``run.mode`` (and optionally roll back), or ``None`` to keep the
    current mode. Decisions must read validation metrics only. firstresult.
    """
