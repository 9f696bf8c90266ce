"""Installing throw-away plugin distributions for tests, and one that fails on demand.

``install_distribution`` writes a module and a ``*.dist-info`` (METADATA and an entry
point in group ``stratum``) into a directory on ``sys.path``: importlib.metadata then
discovers it exactly like a pip-installed package, in process (``run_cli``) and in
subprocesses that inherit ``PYTHONPATH``.

``TRAPDOOR`` is a plugin with a component of every kind, a run-scoped profiler, an
extension and a command. ``STRATUM_TRAP=SITE=HOW`` makes the code at SITE fail in manner
HOW (see ``trap`` below); without it everything works.
"""

from __future__ import annotations

import importlib
import itertools
import textwrap
from pathlib import Path

_COUNTER = itertools.count()

TRAPDOOR = textwrap.dedent('''
    """A plugin that fails where STRATUM_TRAP=SITE=HOW says."""
    import os
    import sys

    import attrs
    import click
    import torch
    from torch import nn

    import stratum
    from stratum.engine import build_optimizer

    __version__ = "1.5"


    class Bang(BaseException):
        """Not an Exception: a plugin bug that skips every `except Exception`."""


    def trap(site):
        where, _, how = os.environ.get("STRATUM_TRAP", "").partition("=")
        if where != site:
            return
        if how == "exception":
            raise RuntimeError(f"trap sprung in {site}")
        if how == "stratum":
            raise stratum.StratumError(f"user-fixable trouble in {site}")
        if how == "exit0":
            sys.exit(0)
        if how == "exit3":
            sys.exit(3)
        if how == "base":
            raise Bang(f"base exception in {site}")
        if how == "keyboard":
            raise KeyboardInterrupt()


    @attrs.frozen
    class TrapOptions:
        trap_width: int = stratum.option(16, "trap-mlp: hidden units.", min=1)


    class TrapNet(nn.Module):
        def __init__(self, spec, width):
            super().__init__()
            n_in = 1
            for d in spec.input_shape:
                n_in *= d
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, spec.num_outputs))

        def forward(self, x):
            trap("forward")
            return self.body(x)


    def make_model(spec, options):
        trap("model")
        return TrapNet(spec, options.trap_width)


    def make_data(request, options):
        trap("dataset")
        from stratum_plugins.data.sources import load_digits
        return load_digits()


    def init_weights(module, options, generator):
        trap("initializer")


    def make_optimizer(params, config, options):
        trap("optimizer")
        return torch.optim.SGD(params, lr=config.lr)


    class TrapStrategy(stratum.Strategy):
        name = "trap-sgd"

        def setup(self, run):
            trap("strategy.setup")
            run.optimizer = build_optimizer(run)

        @stratum.hookimpl
        def stratum_epoch_end(self, run, epoch, record):
            trap("strategy.hook")

        def summary(self, run):
            trap("strategy.summary")
            return {}


    def make_strategy(run, options):
        trap("strategy")
        return TrapStrategy(run, options)


    class TrapProfiler:
        @stratum.hookimpl
        def stratum_before_train_step(self, run, step):
            if step == 2:
                trap("profiler.step")

        @stratum.hookimpl
        def stratum_epoch_end(self, run, epoch, record):
            trap("profiler.hook")


    def make_profiler(run, options):
        trap("profiler")
        return TrapProfiler()


    def make_extension(run, options):
        trap("extension")
        return None


    @stratum.hookimpl
    def stratum_register_strategies():
        trap("register")
        return stratum.strategy("trap-sgd", make_strategy, "SGD that fails on demand.")


    @stratum.hookimpl
    def stratum_register_models():
        return stratum.model("trap-mlp", make_model, "An MLP that fails on demand.", options=TrapOptions)


    @stratum.hookimpl
    def stratum_register_datasets():
        return stratum.dataset("trap-data", make_data, "digits, failing on demand.")


    @stratum.hookimpl
    def stratum_register_initializers():
        return stratum.initializer("trap-init", init_weights, "Keeps torch's init, failing on demand.")


    @stratum.hookimpl
    def stratum_register_optimizers():
        return stratum.optimizer("trap-opt", make_optimizer, "torch SGD, failing on demand.")


    @stratum.hookimpl
    def stratum_register_profilers():
        return stratum.profiler("trap-prof", make_profiler, "A profiler that fails on demand.")


    @stratum.hookimpl
    def stratum_register_extensions():
        return stratum.extension("trap-ext", make_extension, "Takes no part, failing on demand.")


    def make_regressor(options):
        trap("regressor")
        from stratum_plugins.focus.regressors import RidgeRegressor
        return RidgeRegressor(alpha=1.0)


    def make_policy(options):
        trap("policy")
        return None


    def make_features(options):
        trap("feature_set")
        return None


    @stratum.hookimpl
    def stratum_register_regressors():
        return stratum.regressor("trap-reg", make_regressor, "Ridge, failing on demand.")


    @stratum.hookimpl
    def stratum_register_switching_policies():
        return stratum.policy("trap-policy", make_policy, "Fails on demand.")


    @stratum.hookimpl
    def stratum_register_feature_sets():
        return stratum.feature_set("trap-feat", make_features, "Fails on demand.")


    @stratum.hookimpl
    def stratum_register_commands():
        trap("register-commands")

        @click.command("trap-cmd", help="A command that fails on demand.")
        def trap_cmd():
            trap("command")
            click.echo("trap-cmd ran")

        return trap_cmd
''')


def install_distribution(site: Path, source: str, *, dist: str, ep_name: str, version: str = "1.0") -> str:
    """Write module ``source`` as an installed distribution ``dist`` with entry point ``ep_name``.

    The module gets a unique name (``sys.modules`` caches by name); it is returned.
    ``site`` must be on ``sys.path`` (``monkeypatch.syspath_prepend``) or ``PYTHONPATH``.
    """
    site.mkdir(parents=True, exist_ok=True)
    module = f"{ep_name.replace('-', '_')}_plugin_{next(_COUNTER)}_{abs(hash(str(site))):x}"
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[stratum]\n{ep_name} = {module}\n")
    importlib.invalidate_caches()
    return module
