"""Issue 11 item 4: options grouped by component, component-aware help, per-optimizer
options, dropped bench axes, shell completion.

* ``option(group=)``: core options fall in run, data, optimisation, output, reproducibility;
  a plugin option defaults to its component's section, an explicit group wins.
* ``stratum run --help`` lists the core groups and the components the command line uses
  (flags, ``--config`` TOML, defaults); ``--help-all`` lists every component; every flag
  stays accepted whatever help shows.
* Each optimizer declares its own options; a bench axis no selected component reads is
  dropped with one warning naming who would read it (plugin options and the selective core
  options ``--momentum``/``--nesterov``).
* click's shell completion completes component names and choices.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import attrs
import pytest
from click.shell_completion import ShellComplete

from stratum import option
from stratum.bench.matrix import plan_runs
from stratum.bench.spec import BenchSpec
from stratum.cli import cli
from stratum.config import CORE_FIELDS, SELECTIVE_CORE_OPTIONS, option_declaration, option_readers
from stratum.grouped_help import component_label, option_group
from stratum.options import CORE_GROUPS, option_meta

from .conftest import assert_one_line_error, fast_args, run_cli


def sections(text: str) -> dict[str, str]:
    """Help text split into its sections: heading (without ':') -> the lines under it."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            current = line[:-1]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


# ---------------------------------------------------------------------------
# option(group=)
# ---------------------------------------------------------------------------


def test_every_core_option_has_one_of_the_core_groups():
    groups = {name: option_meta(field)["group"] for name, field in CORE_FIELDS.items()}
    assert set(groups.values()) == set(CORE_GROUPS)
    assert groups["lr"] == "optimisation" and groups["dataset"] == "data" and groups["seed"] == "reproducibility"
    assert groups["out"] == "output" and groups["epochs"] == "run"


def test_a_plugin_option_is_listed_under_its_component_unless_it_names_a_group():
    @attrs.frozen
    class Opts:
        plain: int = option(1, "Plain.")
        placed: int = option(1, "Placed.", group="focus library")

    owners = [type("C", (), {"kind": "strategy", "name": "focus"})()]
    fields = attrs.fields_dict(Opts)
    assert option_group(fields["plain"], owners) == "strategy focus"
    assert option_group(fields["placed"], owners) == "focus library"
    # the group places an option in help; it does not make two declarations differ
    a = attrs.fields_dict(attrs.make_class("A", {"x": option(1.0, "X.")}))["x"]
    b = attrs.fields_dict(attrs.make_class("B", {"x": option(1.0, "X.", group="elsewhere")}))["x"]
    assert option_declaration(a) == option_declaration(b)
    with pytest.raises(TypeError, match="group"):
        option(1, "Bad.", group="")


def test_component_labels_name_kinds_and_several_components():
    def c(kind, name):
        return type("C", (), {"kind": kind, "name": name})()

    assert component_label([c("optimizer", "adam"), c("optimizer", "adamw")]) == "optimizer adam, adamw"
    assert component_label([c("strategy", "focus"), c("extension", "capture")]) == "strategy focus / extension capture"
    many = [c("model", f"m{i}") for i in range(8)]
    assert component_label(many) == "model m0, m1, m2, m3, m4 and 3 more"


# ---------------------------------------------------------------------------
# stratum run --help
# ---------------------------------------------------------------------------


def test_run_help_has_one_section_per_core_group_and_per_component_in_use():
    result = run_cli("run", "--help")
    assert result.exit_code == 0, result
    found = sections(result.stdout)
    for title in ("Run options", "Data options", "Optimisation options", "Output options", "Reproducibility options",
                  "Model vgg11 options", "Dataset digits options", "Initializer he-normal options"):
        assert title in found, (title, list(found))
    assert "--lr" in found["Optimisation options"] and "--seed" in found["Reproducibility options"]
    assert "--width" in found["Model vgg11 options"]
    assert "--config" in found["Run options"] and "--help-all" in found["Run options"]
    # the defaults are in use: sgd (no options of its own), not focus, adam or the synthetic data set
    for flag in ("--focus-", "--beta1", "--difficulty", "--torch-trace-dir", "--regressor"):
        assert flag not in result.stdout, flag
    text = " ".join(result.stdout.split())
    assert "--help-all" in text and "--strategy focus --help" in text  # plain help says how to see the rest


def test_choosing_components_by_flag_shows_their_options():
    result = run_cli("run", "--strategy", "focus", "--model", "mlp", "--optimizer", "adam", "--help")
    assert result.exit_code == 0, result
    found = sections(result.stdout)
    assert "Strategy focus options" in found and "--regressor" in found["Strategy focus options"]
    assert "Optimizer adam options" in found and "--beta1" in found["Optimizer adam options"]
    assert "Model mlp options" in found and "Model vgg11 options" not in found
    assert "Regressor linear options" in found  # focus's default regressor, selected transitively
    assert "--rmsprop-alpha" not in result.stdout and "--adagrad-lr-decay" not in result.stdout


def test_choosing_components_by_toml_shows_their_options(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('strategy = "focus"\nregressor = "mlp"\nepochs = 3\n')
    result = run_cli("run", "--config", toml, "--help")
    assert result.exit_code == 0, result
    found = sections(result.stdout)
    assert "Strategy focus options" in found and "Regressor mlp options" in found
    assert "Regressor linear options" not in found
    flag_wins = run_cli("run", "--config", toml, "--strategy", "sgd", "--help")  # a flag wins over the TOML
    assert "Strategy focus options" not in sections(flag_wins.stdout)


def test_help_all_shows_every_component_and_every_flag_stays_accepted():
    all_help = run_cli("run", "--help-all")
    assert all_help.exit_code == 0, all_help
    for flag in ("--regressor", "--beta1", "--rmsprop-alpha", "--difficulty", "--torch-trace-dir", "--width"):
        assert flag in all_help.stdout, flag
    assert "Strategy focus options" in sections(all_help.stdout)
    chosen = run_cli("run", "--strategy", "focus", "--help-all")
    assert "--difficulty" in chosen.stdout  # --help-all ignores the choice
    # a flag help does not list is still accepted
    result = run_cli("run", *fast_args(epochs=1, steps_per_epoch=2), "--beta1", "0.8", "--difficulty", "0.5", "--quiet")
    assert result.exit_code == 0, result


def test_help_with_an_unknown_component_is_one_error_line():
    result = run_cli("run", "--strategy", "focsu", "--help")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "unknown strategy 'focsu'", "did you mean 'focus'")


def test_bench_help_is_grouped_and_follows_its_axes():
    plain = sections(run_cli("bench", "--help").stdout)
    assert "Bench options" in plain and "--strategies" in plain["Bench options"]
    assert "Optimisation options" in plain and "Strategy focus options" not in plain
    chosen = run_cli("bench", "--strategies", "sgd,focus", "--axis", "optimizer=sgd,adam", "--help")
    assert chosen.exit_code == 0, chosen
    found = sections(chosen.stdout)
    assert "Strategy focus options" in found and "Optimizer adam options" in found
    assert "--beta1" in found["Optimizer adam options"]


# ---------------------------------------------------------------------------
# Per-optimizer options
# ---------------------------------------------------------------------------


def _optimizer_options(pm):
    return {c.name: set(attrs.fields_dict(c.options)) if c.options else set() for c in pm.registries["optimizer"]}


def test_each_optimizer_declares_only_the_options_it_reads(pm):
    options = _optimizer_options(pm)
    assert options["sgd"] == set()
    assert options["momentum"] == options["nesterov"] == {"momentum_default"}
    assert options["adam"] == options["adamw"] == {"beta1", "beta2", "eps", "amsgrad"}
    assert options["adagrad"] == {"eps", "adagrad_lr_decay", "adagrad_initial_accumulator"}
    assert options["rmsprop"] == {"eps", "rmsprop_alpha", "rmsprop_momentum", "rmsprop_centered"}
    reads = {c.name: set(c.reads) for c in pm.registries["optimizer"]}
    assert reads["sgd"] == {"momentum", "nesterov"} and reads["momentum"] == {"momentum"} and not reads["adam"]
    assert set(SELECTIVE_CORE_OPTIONS) == {"momentum", "nesterov"}
    assert [c.name for c in option_readers("nesterov", pm.registries.all())] == ["sgd"]


def test_reads_takes_option_names():
    import stratum

    assert stratum.optimizer("x", print, reads="momentum").reads == ("momentum",)
    assert stratum.optimizer("x", print, reads=["momentum", "nesterov"]).reads == ("momentum", "nesterov")
    with pytest.raises(TypeError, match="reads of optimizer 'x'"):
        stratum.optimizer("x", print, reads=[1])


def test_registering_the_optimizers_does_not_import_torch():
    code = ("import sys, stratum_plugins.optimizers as o; o.stratum_register_optimizers(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0 and out.stdout.strip() == "False", out


@pytest.mark.parametrize("optimizer, args, key, expected", [
    ("sgd", ["--momentum", "0.5", "--nesterov"], "nesterov", True),
    ("momentum", ["--momentum-default", "0.7"], "momentum", 0.7),
    ("nesterov", ["--momentum", "0.6"], "momentum", 0.6),
    ("adagrad", ["--adagrad-lr-decay", "0.1", "--adagrad-initial-accumulator", "0.2", "--eps", "1e-6"], "eps", 1e-6),
    ("rmsprop", ["--rmsprop-alpha", "0.9", "--rmsprop-momentum", "0.1", "--rmsprop-centered"], "centered", True),
    ("adam", ["--beta1", "0.8", "--beta2", "0.95", "--amsgrad"], "betas", (0.8, 0.95)),
    ("adamw", ["--beta1", "0.85", "--weight-decay", "0.05"], "weight_decay", 0.05),
])
def test_every_optimizer_flag_still_reaches_its_optimizer(pm, optimizer, args, key, expected):
    from stratum.config import make_config, plugin_option_fields
    from stratum.engine import build_run

    values = {}
    flags = iter(args)
    for flag in flags:
        name = flag[2:].replace("-", "_")
        values[name] = True if name in ("nesterov", "amsgrad", "rmsprop_centered") else next(flags)
    config = make_config({**dict(model="mlp", hidden=[32], threads=1), "optimizer": optimizer, **values},
                         plugin_fields=plugin_option_fields(pm.registries.all()))
    group = build_run(config, pm).optimizer.param_groups[0]
    assert group[key] == pytest.approx(expected) if not isinstance(expected, bool) else group[key] is expected


def test_an_adaptive_option_with_sgd_is_accepted_with_a_warning_and_left_out(tmp_path):
    """Every flag is accepted whatever the components; one the run does not read is named in
    a warning and left out of the run's config (its summary, fingerprint and --resume)."""
    out = tmp_path / "s.json"
    result = run_cli("run", *fast_args(epochs=1, steps_per_epoch=2), "--beta1", "0.8", "--quiet", "--json", out)
    assert result.exit_code == 0, result
    assert "stratum: warning: --beta1 is ignored: no component of this run reads it (only optimizer adam, optimizer adamw read it)" in result.stderr
    assert "beta1" not in json.loads(out.read_text())["config"]
    result = run_cli("run", *fast_args(epochs=1, steps_per_epoch=2), "--optimizer", "adam", "--beta1", "0.8",
                     "--quiet", "--json", out)
    assert result.exit_code == 0 and "ignored" not in result.stderr, result
    assert json.loads(out.read_text())["config"]["beta1"] == 0.8


@pytest.mark.parametrize("flags, model", [(["--width", "0.5"], "mlp"), (["--hidden", "8"], "vgg11"),
                                          (["--vgg-pooling", "legacy"], "mlp"), (["--init-gain", "2"], "mlp"),
                                          (["--switch-at", "2"], "mlp")])
def test_plugin_options_the_run_does_not_read_are_named_and_left_out(tmp_path, flags, model):
    out = tmp_path / "s.json"
    extra = ["--width", "0.25"] if model == "vgg11" else []
    result = run_cli("run", *fast_args(epochs=1, steps_per_epoch=1), "--model", model, *extra, *flags,
                     "--quiet", "--json", out)
    assert result.exit_code == 0, result
    assert f"stratum: warning: {flags[0]} is ignored: no component of this run reads it" in result.stderr
    assert flags[0][2:].replace("-", "_") not in json.loads(out.read_text())["config"]


# ---------------------------------------------------------------------------
# Dropped bench axes
# ---------------------------------------------------------------------------


def _plan(pm, axes, fixed=None):
    notes = []
    plans = plan_runs(BenchSpec(axes=axes, fixed=fixed or {}), pm.registries, warn=notes.append)
    return plans, notes


def test_an_axis_no_selected_optimizer_reads_is_dropped_with_one_warning(pm):
    plans, notes = _plan(pm, {"strategy": ["sgd"], "beta1": [0.9, 0.99]})
    assert len(plans) == 1 and "beta1" not in plans[0].values
    assert len(notes) == 1 and "'beta1'" in notes[0] and "optimizer adam, optimizer adamw" in notes[0], notes
    plans, notes = _plan(pm, {"strategy": ["sgd"], "beta1": [0.9, 0.99]}, {"optimizer": "adam"})
    assert len(plans) == 2 and notes == []  # adam reads it
    assert {p.values["beta1"] for p in plans} == {0.9, 0.99}


def test_the_cli_dry_run_warns_once_per_dropped_axis():
    result = run_cli("bench", "--strategies", "sgd", "--axis", "beta1=0.9,0.99", "--axis", "rmsprop_alpha=0.9,0.95",
                     "--dry-run")
    assert result.exit_code == 0, result
    warnings = [line for line in result.stderr.splitlines() if line.startswith("stratum: warning:")]
    assert len(warnings) == 2 and "'beta1'" in warnings[0] and "optimizer rmsprop" in warnings[1], result.stderr
    assert result.stdout.strip().endswith("1 runs")


@pytest.mark.parametrize("args, warned", [
    (["--strategies", "sgd", "--models", "mlp", "--axis", "width=0.5,1"], ["axis 'width'"]),
    (["--strategies", "sgd", "--models", "vgg11", "--set", "width=0.25", "--axis", "hidden=8,16"], ["axis 'hidden'"]),
    (["--strategies", "sgd", "--set", "init_gain=2"], ["fixed option 'init_gain'"]),
    (["--strategies", "focus", "--axis", "switch-at=1,2"], ["axis 'switch_at'"]),
])
def test_options_of_components_not_in_the_runs_plan_no_copies(args, warned):
    """An axis or a fixed option that only components outside the runs read plans no identical
    copies; each gets one warning naming the components that would read it."""
    result = run_cli("bench", *args, "--dry-run")
    assert result.exit_code == 0, result
    warnings = [line for line in result.stderr.splitlines() if line.startswith("stratum: warning:")]
    assert len(warnings) == len(warned) and all(w in line for w, line in zip(warned, warnings)), result.stderr
    assert result.stdout.strip().endswith("1 runs"), result.stdout


def test_selective_core_options_apply_only_to_runs_whose_components_read_them(pm):
    plans, notes = _plan(pm, {"optimizer": ["sgd", "adam"], "momentum": [0.5, 0.9]})
    by_optimizer = {}
    for plan in plans:
        by_optimizer.setdefault(plan.values["optimizer"], []).append(plan.values.get("momentum"))
    assert sorted(by_optimizer["sgd"]) == [0.5, 0.9] and by_optimizer["adam"] == [None]
    assert notes == []
    plans, notes = _plan(pm, {"nesterov": [True, False]}, {"optimizer": "momentum"})
    assert len(plans) == 1 and len(notes) == 1 and "only optimizer sgd read it" in notes[0], notes
    plans, _ = _plan(pm, {"lr": [0.01, 0.1]}, {"optimizer": "adam"})  # an ordinary core option: every run
    assert len(plans) == 2


# ---------------------------------------------------------------------------
# Shell completion
# ---------------------------------------------------------------------------


def complete(args: list[str], incomplete: str) -> list[str]:
    return [item.value for item in ShellComplete(cli, {}, "stratum", "_STRATUM_COMPLETE").get_completions(args, incomplete)]


@pytest.mark.parametrize("args, incomplete, expected", [
    (["run", "--strategy"], "fo", ["focus"]),
    (["run", "--optimizer"], "ada", ["adagrad", "adam", "adamw"]),
    (["run", "--profile"], "gradflow,lo", ["gradflow,losses"]),
    (["run", "--regressor"], "x", ["xgboost"]),
    (["run", "--resident"], "a", ["auto", "always"]),
    (["bench", "--strategies"], "sgd,f", ["sgd,focus"]),
    (["bench", "--axis"], "beta", ["beta1=", "beta2="]),
    (["bench", "--axis"], "optimizer=sgd,ad", ["optimizer=sgd,adagrad", "optimizer=sgd,adam", "optimizer=sgd,adamw"]),
    (["bench", "--set"], "model=vgg1", ["model=vgg11", "model=vgg13", "model=vgg16", "model=vgg19"]),
    (["bench", "--recipe"], "st", ["stability"]),
    (["list"], "sch", ["schedule"]),
    (["list"], "pol", ["policy"]),
    (["--block-plugin"], "foc", ["focus"]),
    (["-p"], "lot", ["lottery"]),
])
def test_completion_completes_component_names_and_choices(args, incomplete, expected):
    assert complete(args, incomplete) == expected


def test_completion_through_clicks_environment_variable():
    env = {**os.environ, "_STRATUM_COMPLETE": "bash_complete", "COMP_WORDS": "stratum run --strategy fo",
           "COMP_CWORD": "3"}
    out = subprocess.run([sys.executable, "-m", "stratum"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out
    assert out.stdout.split() == ["plain,focus"]
    source = subprocess.run([sys.executable, "-m", "stratum"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "_STRATUM_COMPLETE": "zsh_source"})
    assert source.returncode == 0 and "_stratum_completion" in source.stdout


def test_list_valued_options_show_a_list_placeholder():
    out = run_cli("run", "--model", "mlp", "--help").stdout
    assert "--hidden INT,..." in out and "--profile TEXT,..." in out and "--epochs INT " in out
