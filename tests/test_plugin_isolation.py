"""One plugin cannot break stratum for the others, and its failures are named.

Every plugin here is a real installed distribution (a dist-info with a ``stratum``
entry point on ``sys.path``), discovered and loaded exactly as a pip-installed one, and
driven through the real CLI.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from stratum.checkpoint import load_checkpoint
from stratum.display import epoch_label
from tests.conftest import assert_one_line_error, run_cli, run_subprocess
from tests.plugin_fixtures import TRAPDOOR, install_distribution

TINY = ["--model", "mlp", "--hidden", "32", "--epochs", "1", "--steps-per-epoch", "3", "--threads", "1"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def plugin_source(body: str) -> str:
    return "import attrs\nimport stratum\nfrom stratum import option\n" + textwrap.dedent(body)


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("stratum: plugin warning: ")]


# ---------------------------------------------------------------------------
# A. option names that collide
# ---------------------------------------------------------------------------

OPTION_COLLISIONS = {
    # name: (declaration in the plugin, who declared it first)
    "eps": ('option(3, "my integer eps.", min=0)', "'optimizers'"),  # a built-in plugin's option
    "lr": ('option(0.5, "my own learning rate.", min=0)', "stratum's core options"),  # a core option
    "width": ('option(2.0, "how wide, my way.", min=0)', "(built-in)"),  # shared by the zoo's and lottery's models
    "quiet": ('option(True, "a switch of mine.")', "stratum's core options"),
    "config": ('option("x", "shadows --config.")', "reserved by stratum"),
    "mine": ('option(0.9, "sneaks in as --momentum.", cli="--momentum")', "'momentum'"),  # a flag, not a name
}


@pytest.mark.parametrize("name", sorted(OPTION_COLLISIONS))
def test_an_option_colliding_with_an_earlier_declaration_disables_only_that_plugin(site, tmp_path, name):
    declaration, first = OPTION_COLLISIONS[name]
    install_distribution(site, plugin_source(f"""
        @attrs.frozen
        class Opts:
            {name}: object = {declaration}

        @stratum.hookimpl
        def stratum_register_strategies():
            from stratum_plugins.sgd import SGDStrategy
            return stratum.strategy("clash-sgd", SGDStrategy, "collides", options=Opts)
    """), dist="stratum-clash", ep_name="clash", version="0.4")
    out = tmp_path / "s.json"
    # vgg11 (width 0.5 at 8x8) reads --width; mlp does not, and a run records only what it reads
    result = run_cli("run", *TINY[2:], "--model", "vgg11", "--optimizer", "adam", "--eps", "1e-6", "--lr", "0.002",
                     "--width", "0.5", "--quiet", "--json", out)
    assert result.exit_code == 0, result
    warnings = warning_lines(result.stderr)
    assert len(warnings) == 1, result.stderr
    assert "plugin 'clash' (dist stratum-clash 0.4)" in warnings[0] and f"option {name!r}" in warnings[0]
    assert first in warnings[0] and "-p clash" in warnings[0]
    config = json.loads(out.read_text())["config"]
    assert (config["eps"], config["lr"], config["width"]) == (1e-6, 0.002, 0.5)  # built-in options intact
    help_text = run_cli("run", "--help").stdout
    assert "Learning rate." in help_text and "my own learning rate" not in help_text
    listed = run_cli("list", "strategy")
    assert listed.exit_code == 0 and "clash-sgd" not in listed.stdout
    assert "disabled" in next(l for l in run_cli("plugins").stdout.splitlines() if l.startswith("clash"))


def test_the_same_declaration_shared_by_a_plugin_is_not_a_collision(site, tmp_path):
    # Exactly the built-in declaration of --eps (type, default, bounds, help): one option, shared.
    install_distribution(site, plugin_source("""
        @attrs.frozen
        class Opts:
            eps: float = option(1e-8, "Adaptive optimisers' denominator epsilon.", min=0, min_exclusive=True)

        @stratum.hookimpl
        def stratum_register_strategies():
            from stratum_plugins.sgd import SGDStrategy
            return stratum.strategy("shared-sgd", SGDStrategy, "shares --eps", options=Opts)
    """), dist="stratum-shared", ep_name="shared")
    result = run_cli("run", *TINY, "--strategy", "shared-sgd", "--optimizer", "adam", "--eps", "1e-6", "--quiet",
                     "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result
    assert warning_lines(result.stderr) == []
    assert json.loads((tmp_path / "s.json").read_text())["config"]["eps"] == 1e-6


# ---------------------------------------------------------------------------
# B. component names that collide
# ---------------------------------------------------------------------------

NAME_COLLISIONS = {
    "strategy": ('stratum.strategy("sgd", SGDStrategy, "impostor")', "'sgd'"),
    "model": ('stratum.model("mlp", lambda spec, options: None, "impostor")', "'zoo'"),
    "dataset": ('stratum.dataset("digits", lambda request, options: None, "impostor")', "'data'"),
    "optimizer": ('stratum.optimizer("adam", lambda params, config, options: None, "impostor")', "'optimizers'"),
}


@pytest.mark.parametrize("kind", sorted(NAME_COLLISIONS))
def test_a_component_name_collision_disables_only_the_offending_plugin(site, tmp_path, kind):
    component, first = NAME_COLLISIONS[kind]
    install_distribution(site, plugin_source(f"""
        from stratum_plugins.sgd import SGDStrategy

        @stratum.hookimpl
        def stratum_register_{'strategies' if kind == 'strategy' else kind + 's'}():
            return {component}

        @stratum.hookimpl
        def stratum_register_initializers():
            return stratum.initializer("innocent-init", lambda module, options, generator: None, "fine alone")

        @stratum.hookimpl
        def stratum_epoch_end(run, epoch, record):
            raise RuntimeError("a disabled plugin's hooks must not run")
    """), dist="stratum-impostor", ep_name="impostor", version="2.1")
    for args in (["--help"], ["list"], ["plugins"], ["run", "--help"],
                 ["run", *TINY, "--quiet", "--json", tmp_path / "s.json"]):
        result = run_cli(*args)
        assert result.exit_code == 0, (args, result)
        warnings = warning_lines(result.stderr)
        assert len(warnings) == 1, (args, result.stderr)
        assert "plugin 'impostor' (dist stratum-impostor 2.1)" in warnings[0] and first in warnings[0]
        assert "-p impostor" in warnings[0]
    listed = run_cli("list").stdout
    assert "innocent-init" not in listed and "impostor" not in listed  # all of its registrations went
    silenced = run_cli("-p", "impostor", "list", "model")
    assert silenced.exit_code == 0 and warning_lines(silenced.stderr) == []


def test_an_override_warns_once_and_the_summary_and_header_name_the_provider(site, tmp_path):
    install_distribution(site, plugin_source("""
        from stratum_plugins.sgd import SGDStrategy

        @stratum.hookimpl
        def stratum_register_strategies():
            return stratum.strategy("sgd", SGDStrategy, "my sgd", override=True)
    """), dist="stratum-better-sgd", ep_name="better-sgd", version="2.0")
    result = run_cli("run", *TINY, "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result
    warnings = warning_lines(result.stderr)
    assert len(warnings) == 1 and "'better-sgd'" in warnings[0] and "overrides strategy 'sgd'" in warnings[0]
    components = json.loads((tmp_path / "s.json").read_text())["components"]
    assert components["strategy"] == {"name": "sgd", "plugin": "better-sgd", "version": "2.0", "dist": "stratum-better-sgd"}
    assert components["model"]["plugin"] == "zoo" and components["dataset"]["plugin"] == "data"
    header = next(l for l in result.stdout.splitlines() if l.startswith("components: "))
    assert "strategy=sgd[better-sgd 2.0]" in header and "model=mlp[zoo " in header


@pytest.mark.parametrize("name", ["run", "list", "bench"])
def test_a_plugin_command_named_like_an_existing_one_disables_only_that_plugin(site, name):
    install_distribution(site, plugin_source(f"""
        import click

        @stratum.hookimpl
        def stratum_register_commands():
            return click.command({name!r})(lambda: None)
    """), dist="stratum-cmd-clash", ep_name="cmd-clash")
    # Plugin commands are collected when a command is looked up that is not a core one
    # (stratum --help lists them all); the core command keeps working either way.
    for args in (["--help"], ["nosuch-command"]):
        result = run_cli(*args)
        warnings = warning_lines(result.stderr)
        assert len(warnings) == 1 and f"command {name!r}" in warnings[0] and "-p cmd-clash" in warnings[0], result
    assert run_cli(name, "--help").exit_code == 0
    assert "sgd" in run_cli("list", "strategy").stdout


# ---------------------------------------------------------------------------
# C. naming the right thing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, env, fragments", [
    (["-p", "zo", "list"], {}, ["--block-plugin", "unknown plugin 'zo'", "did you mean 'zoo'"]),
    (["--block-plugin", "nosuchname", "plugins"], {}, ["unknown plugin 'nosuchname'", "available: ", "sgd"]),
    (["-p", "zoo", "-p", "optimisers", "run", "--epochs", "1"], {}, ["'optimisers'", "did you mean 'optimizers'"]),
    (["list"], {"STRATUM_BLOCK_PLUGINS": "data,nosuch"}, ["STRATUM_BLOCK_PLUGINS", "unknown plugin 'nosuch'"]),
    (["run", "--help"], {"STRATUM_BLOCK_PLUGINS": "lotery"}, ["did you mean 'lottery'"]),
])
def test_blocking_a_plugin_that_does_not_exist_is_refused(args, env, fragments, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = run_cli(*args)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, *fragments)


def test_a_plugin_strategy_epoch_line_shows_the_strategy(site, tmp_path):
    install_distribution(site, TRAPDOOR, dist="stratum-trapdoor", ep_name="trapdoor", version="1.5")
    result = run_cli("run", *TINY, "--strategy", "trap-sgd")
    assert result.exit_code == 0, result
    assert any(l.startswith("epoch   1 [trap-sgd] train_loss=") for l in result.stdout.splitlines()), result.stdout
    baseline = run_cli("run", *TINY).stdout
    assert "epoch   1 [sgd] train_loss=" in baseline


@pytest.mark.parametrize("strategy, mode, modes, label", [
    ("sgd", "sgd", ["sgd"], "sgd"),
    ("sign-sgd", "sgd", ["sgd"], "sign-sgd"),
    ("focus", "focus", ["sgd", "focus"], "focus"),
    ("focus", "sgd", ["sgd", "focus"], "focus/sgd"),
])
def test_epoch_label_shows_the_mode_only_where_it_tells_something(strategy, mode, modes, label):
    assert epoch_label(strategy, mode, modes) == label


# ---------------------------------------------------------------------------
# D. plugin code that fails or tries to end the run
# ---------------------------------------------------------------------------

# site in the plugin -> the flags that make a run reach it
SITES = {
    "model": ["--model", "trap-mlp"],
    "forward": ["--model", "trap-mlp"],
    "dataset": ["--dataset", "trap-data"],
    "initializer": ["--init", "trap-init"],
    "optimizer": ["--optimizer", "trap-opt"],
    "strategy": ["--strategy", "trap-sgd"],
    "strategy.setup": ["--strategy", "trap-sgd"],
    "strategy.hook": ["--strategy", "trap-sgd"],
    "strategy.summary": ["--strategy", "trap-sgd"],
    "profiler": ["--profile", "trap-prof"],
    "profiler.hook": ["--profile", "trap-prof"],
    "extension": [],
    "feature_set": ["--strategy", "focus", "--features", "trap-feat"],
    "policy": ["--strategy", "focus", "--policy", "trap-policy"],
    # the regressor is made after the prior is built on a (tiny) source run
    "regressor": ["--strategy", "focus", "--regressor", "trap-reg", "--prior-epochs", "1",
                  "--capture-max-samples", "200", "--focus-fit-samples", "200"],
}
HOWS = {
    "exception": "RuntimeError: trap sprung in",
    "stratum": "user-fixable trouble in",
    "exit0": "sys.exit(0)",
    "exit3": "sys.exit(3)",
    "base": "Bang: base exception in",
}
CASES = [(site, how) for site in SITES for how in ("exception", "exit0")]
CASES += [(site, how) for site in ("model", "strategy.hook", "profiler.hook", "extension", "forward")
          for how in ("stratum", "exit3", "base")]


@pytest.mark.parametrize("where, how", CASES)
def test_plugin_code_that_fails_ends_the_run_with_one_line_naming_the_plugin(site, tmp_path, monkeypatch, where, how):
    install_distribution(site, TRAPDOOR, dist="stratum-trapdoor", ep_name="trapdoor", version="1.5")
    monkeypatch.setenv("STRATUM_TRAP", f"{where}={how}")
    out = tmp_path / "s.json"
    result = run_cli("run", *TINY, *SITES[where], "--json", out)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, "plugin 'trapdoor' (dist stratum-trapdoor 1.5)", HOWS[how])
    if how in ("exception", "base", "stratum"):
        assert f" in {where}" in result.stderr
    assert not out.exists()  # never a false success


def test_run_scoped_plugins_are_named_by_component_and_providing_plugin(site, monkeypatch):
    install_distribution(site, TRAPDOOR, dist="stratum-trapdoor", ep_name="trapdoor", version="1.5")
    monkeypatch.setenv("STRATUM_TRAP", "profiler.hook=exception")
    result = run_cli("run", *TINY, "--profile", "trap-prof")
    assert_one_line_error(
        result.stderr,
        "profiler 'trap-prof' from plugin 'trapdoor' (dist stratum-trapdoor 1.5) failed in hook stratum_epoch_end",
    )
    assert "run" + "7f" not in result.stderr and ":profiler:" not in result.stderr
    monkeypatch.setenv("STRATUM_TRAP", "strategy.hook=exception")
    result = run_cli("run", *TINY, "--strategy", "trap-sgd")
    assert_one_line_error(result.stderr, "strategy 'trap-sgd' from plugin 'trapdoor'", "hook stratum_epoch_end")
    monkeypatch.setenv("STRATUM_TRAP", "model=exception")
    result = run_cli("run", *TINY, "--model", "trap-mlp")
    assert_one_line_error(result.stderr, "model 'trap-mlp' from plugin 'trapdoor' (dist stratum-trapdoor 1.5)")


def test_sys_exit_0_in_a_hook_is_not_a_success_for_a_real_process(tmp_path):
    site = tmp_path / "site"
    install_distribution(site, TRAPDOOR, dist="stratum-trapdoor", ep_name="trapdoor", version="1.5")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "STRATUM_TRAP": "profiler.hook=exit0"}
    result = run_subprocess("run", *TINY, "--profile", "trap-prof", "--json", tmp_path / "s.json", env=env)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "profiler 'trap-prof' from plugin 'trapdoor'", "sys.exit(0)")
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("how", ["exception", "stratum", "exit0", "base"])
def test_a_failing_registration_disables_only_that_plugin(site, monkeypatch, how):
    install_distribution(site, TRAPDOOR, dist="stratum-trapdoor", ep_name="trapdoor", version="1.5")
    monkeypatch.setenv("STRATUM_TRAP", f"register={how}")
    for args in (["list"], ["plugins"], ["--help"], ["run", *TINY, "--quiet"]):
        result = run_cli(*args)
        assert result.exit_code == 0, (args, result)
        warnings = warning_lines(result.stderr)
        assert len(warnings) == 1 and "plugin 'trapdoor' (dist stratum-trapdoor 1.5)" in warnings[0], result.stderr
        assert "stratum_register_strategies" in warnings[0]
    listed = run_cli("list").stdout
    assert "trap-mlp" not in listed and "sgd" in listed  # the whole plugin, and only it
    assert "failed" in next(l for l in run_cli("plugins").stdout.splitlines() if l.startswith("trapdoor"))


@pytest.mark.parametrize("where, how, code, fragment", [
    ("command", "exception", 2, "RuntimeError: trap sprung in command"),
    ("command", "stratum", 2, "user-fixable trouble in command"),
    ("command", "base", 2, "Bang: base exception"),
])
def test_a_failing_plugin_command_names_the_plugin(site, monkeypatch, where, how, code, fragment):
    install_distribution(site, TRAPDOOR, dist="stratum-trapdoor", ep_name="trapdoor", version="1.5")
    assert run_cli("trap-cmd").stdout.strip() == "trap-cmd ran"
    monkeypatch.setenv("STRATUM_TRAP", f"{where}={how}")
    result = run_cli("trap-cmd")
    assert result.exit_code == code
    assert_one_line_error(result.stderr, "plugin 'trapdoor' (dist stratum-trapdoor 1.5)", "command 'trap-cmd'", fragment)


def test_a_failing_command_registration_leaves_the_cli_working(site, monkeypatch):
    install_distribution(site, TRAPDOOR, dist="stratum-trapdoor", ep_name="trapdoor", version="1.5")
    monkeypatch.setenv("STRATUM_TRAP", "register-commands=exit0")
    result = run_cli("--help")
    assert result.exit_code == 0 and "trap-cmd" not in result.stdout
    warnings = warning_lines(result.stderr)
    assert len(warnings) == 1 and "'trapdoor'" in warnings[0] and "stratum_register_commands" in warnings[0]


@pytest.mark.parametrize("where, flags", [("profiler.step", ["--profile", "trap-prof"]),
                                          ("strategy.hook", ["--strategy", "trap-sgd"])])
def test_keyboard_interrupt_from_a_hook_flushes_a_checkpoint_like_ctrl_c(site, tmp_path, monkeypatch, where, flags):
    install_distribution(site, TRAPDOOR, dist="stratum-trapdoor", ep_name="trapdoor", version="1.5")
    monkeypatch.setenv("STRATUM_TRAP", f"{where}=keyboard")
    out = tmp_path / "run"
    result = run_cli("run", "--model", "mlp", "--hidden", "32", "--epochs", "3", "--steps-per-epoch", "6",
                     "--threads", "1", *flags, "--out", out)
    assert result.exit_code == 130, result
    assert "interrupted by SIGINT" in result.stderr and "continue with --resume" in result.stderr
    assert any("'trapdoor'" in w and "KeyboardInterrupt" in w for w in warning_lines(result.stderr))
    state = load_checkpoint(out / "checkpoint.pt")
    if where == "profiler.step":
        assert (state["epoch"], state["step_in_epoch"]) == (0, 3)  # stopped at the next step boundary
    else:
        assert (state["epoch"], state["step_in_epoch"]) == (1, 0)
    assert not (out / "summary.json").exists()
