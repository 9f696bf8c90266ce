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
              [inside optimizer.step(), before the update:]
              add_gradient_terms
              [clipping: --clip-grad-value, then --clip-grad-norm]
              mask_gradients
          after_train_step
          ... more steps ...
        eval_model                  (firstresult; on the training clock)
        evaluation_end              (validation and test of this epoch)
        epoch_end
        decide_switch               (firstresult)
        ... more epochs ...
      fit_end

  The active strategy, the active profilers, the extensions that take part
  (``--capture-out``, ``--average`` ...), the loggers (``--log``) and the extra
  plugins (the display, ``stratum.fit`` callbacks) are registered as
  *run-scoped* plugins: they receive lifecycle hooks for that fit only, called
  in this order: strategy, profilers (``--profile`` order), extensions, loggers
  (``--log`` order), extra plugins (the order given); then the plugins loaded
  for the whole process; stratum's ``trylast`` ``optimizer.step()`` fallback
  last. ``tryfirst=True``/``trylast=True`` move an implementation before/after
  all of them (docs/architecture.md, "Who is called first around a hook"). A
  lifecycle hook that raises ends the run with an error that names the plugin
  and the hook, except a logger's: that one is reported once and the logger is
  disabled while training goes on.

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
    or an iterable of them; its factory is called as ``factory(run, options)`` and must
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
    ``initializer`` components; the factory is called as ``factory(module,
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
def stratum_register_schedules():
    """Register learning-rate schedules (``--schedule NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``schedule`` components; the factory is called as ``factory(spec,
    options)`` with a :class:`stratum.engine.ScheduleSpec` (base rate, steps of
    the main phase, warm-up steps, steps per epoch, epochs) and returns a pure
    function ``step -> lr`` (a float) over the main phase, which starts at
    step 0 after the warm-up: the engine adds the linear warm-up and sets
    the rate before every optimizer step. Not firstresult.
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
def stratum_register_loggers():
    """Register run-tracking loggers (``--log NAME``, repeatable).

    Fires once while the registries are built. Receives nothing. Returns
    ``logger`` components; the factory is called as ``factory(run, options)``
    once per run, for each name in ``--log``, before the strategy's stages (a
    :class:`stratum.ConfigError` it raises, such as a missing optional package,
    stops the run before any training). It returns an object whose lifecycle
    hooks (``stratum_fit_start``, ``stratum_epoch_end``, ``stratum_fit_end``
    ...) record the run; it takes part in every fit of the run (``run.fit_tag``
    names the fit). Loggers observe: an implementation of a firstresult hook or
    a wrapper is refused. A logger that raises in a hook (or in ``state_dict``
    / ``load_state_dict``) is reported once on stderr, listed in the summary's
    ``logger_errors`` and disabled for the rest of the run; training goes on.
    Not firstresult.
    """


@hookspec
def stratum_register_augmentations():
    """Register train-only data augmentations (``--augment NAME``).

    Fires once while the registries are built. Receives nothing. Returns
    ``augmentation`` components; the factory is called once per run as
    ``factory(spec, options)`` with a :class:`stratum.data.ModelSpec` (the data
    set's input shape, outputs and task) and returns ``augment(x, generator)
    -> x`` (a batch of stored inputs in, the same shape, dtype and device out,
    randomness from ``generator`` only) or ``None`` for no augmentation; it
    raises :class:`stratum.ConfigError` for data it does not fit. The engine
    applies ``augment`` to training batches only, before the data set's
    ``batch_transform``, with a generator seeded from the run's seed and the
    global step (resume is exact). Not firstresult.
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
    ``stopped_reason`` from ``record`` so that training goes on. A plugin may end
    the fit after this epoch by setting ``record["stopped_reason"]`` to a short
    reason (``stratum tune`` sets ``"pruned"`` when Optuna's pruner stops a trial):
    the summary then has that ``stopped_reason``. Return value ignored; not
    firstresult.
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
    Wrappers (``@hookimpl(wrapper=True)``) may change parameters after the
    update (masks). The gradients are true (unscaled) gradients under every
    ``--precision``. Gradient terms (noise, penalties) and masks on ``.grad``
    belong in :func:`stratum_add_gradient_terms` and :func:`stratum_mask_gradients`,
    which the engine calls inside ``optimizer.step()`` in a fixed order with its
    clipping. The engine sets the learning rate (``--schedule``) before the
    step starts. firstresult.
    """


@hookspec
def stratum_add_gradient_terms(run, step):
    """Add terms to the gradients about to be applied (penalties, noise).

    Fires inside every ``run.optimizer.step()`` made during
    :func:`stratum_apply_update` (whoever calls it: the engine's fallback or a
    strategy stepping with predicted gradients), before the update, after the
    backward pass (summed over ``--grad-accum`` micro-batches). Receives the
    ``run`` and the 0-based ``step``. Implementations add to ``.grad`` in
    place. Then the engine clips (``--clip-grad-value``, then
    ``--clip-grad-norm``) and calls :func:`stratum_mask_gradients`
    (docs/architecture.md, "The order of the gradient terms on a step").
    Return value ignored; not firstresult.
    """


@hookspec
def stratum_mask_gradients(run, step):
    """Constrain the gradients last, right before the optimizer applies them (masks).

    Fires inside ``run.optimizer.step()``, after :func:`stratum_add_gradient_terms`
    and clipping, so a zeroed gradient stays zero whatever the terms or clipping
    did. Receives the ``run`` and the 0-based ``step``. Implementations change
    ``.grad`` in place. Return value ignored; not firstresult.
    """


@hookspec(firstresult=True)
def stratum_eval_model(run, epoch):
    """Choose the model this epoch is evaluated and reported on.

    Fires once per epoch, after its last training step and before validation,
    inside the epoch's training clock (``train_s``): work done here to make the
    model ready (SWA's ``update_bn`` pass) counts as training time. Receives
    the ``run`` and the 1-based ``epoch``. Returns an ``nn.Module`` that maps
    the same inputs to the same outputs as ``run.model`` (a weight average:
    ``--average ema``/``swa``), or ``None`` to evaluate ``run.model``.

    When a module is returned, the history row's ``val_*``/``test_*`` entries
    (and so best-validation-epoch selection, early stopping and switching) are
    that module's, and the raw ``run.model``'s are kept beside them as
    ``raw_val_loss``, ``raw_val_acc``, ``raw_test_loss``, ``raw_test_acc``
    (evaluated off the clock, ``raw_eval_s``; returning ``run.model`` itself
    copies the values). firstresult: the first non-``None`` answer wins.
    """


@hookspec
def stratum_evaluation_end(run, epoch, metrics):
    """Validation and test evaluation of an epoch are done.

    Receives the ``run``, the 1-based ``epoch`` and ``metrics`` (``val_loss``,
    ``val_acc``, ``test_loss``, ``test_acc``: of the model
    :func:`stratum_eval_model` chose; accuracies are ``None`` for regression
    tasks; plus the ``raw_*`` entries of ``run.model`` when another model was chosen). Plugins may read them; training decisions must read
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
