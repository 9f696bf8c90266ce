"""The command line: run, list, plugins, python -m stratum, output modes."""

from __future__ import annotations

import io
import json

from stratum.display import ConsoleDisplay
from stratum.engine import Trainer
from tests.conftest import assert_one_line_error, fast_args, run_cli, run_subprocess


def test_run_writes_summary_json_and_prints_plain_lines(tmp_path):
    out = tmp_path / "s.json"
    result = run_cli("run", *fast_args(epochs=2), "--json", out)
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    assert any(line.startswith("epoch   1 [sgd] train_loss=") for line in lines)
    assert any(line.startswith("epoch   2 [sgd]") for line in lines)
    assert "stratum result" in result.stdout and "peak test acc" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["epochs_run"] == 2 and summary["config"]["epochs"] == 2


def test_quiet_prints_only_the_table(tmp_path):
    result = run_cli("run", *fast_args(), "--quiet")
    assert result.exit_code == 0
    assert "epoch   1" not in result.stdout and "stratum result" in result.stdout


def test_out_dir_gets_checkpoint_and_summary(tmp_path):
    result = run_cli("run", *fast_args(), "--out", tmp_path / "runs", "--name", "first", "--quiet")
    assert result.exit_code == 0
    run_dir = tmp_path / "runs" / "first"
    assert (run_dir / "checkpoint.pt").exists() and (run_dir / "summary.json").exists()


def test_json_path_that_is_a_directory_fails_before_training(tmp_path):
    result = run_cli("run", *fast_args(), "--json", tmp_path)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "is a directory")


def test_live_display_on_a_terminal(pm, make_cfg):
    stream = io.StringIO()
    display = ConsoleDisplay(stream=stream, live=True)
    Trainer(pm, extra_plugins=[("display", display)]).run(make_cfg(epochs=2))
    assert "epoch   2 [sgd]" in stream.getvalue()


def test_list_all_and_one_kind():
    everything = run_cli("list")
    assert everything.exit_code == 0
    for heading in ("strategy:", "model:", "dataset:", "initializer:", "optimizer:", "regressor:", "policy:", "profiler:"):
        assert heading in everything.stdout
    models = run_cli("list", "models")
    assert "vgg16" in models.stdout and "[zoo]" in models.stdout and "strategy:" not in models.stdout
    bad = run_cli("list", "modle")
    assert bad.exit_code == 2
    assert_one_line_error(bad.stderr, "unknown component kind 'modle'", "did you mean 'model'")


def test_plugins_lists_builtins_with_origin_and_version():
    result = run_cli("plugins")
    assert result.exit_code == 0
    for name in ("sgd", "zoo", "data", "optimizers"):
        line = next(l for l in result.stdout.splitlines() if l.startswith(name + " "))
        assert "builtin" in line and "loaded" in line


def test_run_help_includes_plugin_options_and_defaults():
    result = run_cli("run", "--help-all")  # plain --help lists only the options of the components in use
    assert result.exit_code == 0
    for flag in ("--strategy", "--model", "--dataset", "--epochs", "--batch-size", "--lr", "--seed", "--device",
                 "--init", "--config", "--json", "--out", "--quiet", "--width", "--difficulty"):
        assert flag in result.stdout, flag
    assert "[default: 0.01]" in result.stdout


def test_python_dash_m_stratum_and_unknown_command():
    result = run_subprocess("--version")
    assert result.returncode == 0 and "stratum" in result.stdout
    bad = run_subprocess("trian")
    assert bad.returncode == 2
    assert_one_line_error(bad.stderr, "No such command")


def test_bare_stratum_prints_its_help_not_a_squashed_error():
    result = run_cli()
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")  # (CliRunner calls the program "cli")
    assert "stratum: error" not in result.stderr
    assert len(result.stdout.splitlines()) > 5


def test_a_toml_config_with_a_utf8_bom_is_read(tmp_path):
    """Windows editors save UTF-8 with a byte-order mark; it is not content."""
    config = tmp_path / "bom.toml"
    config.write_bytes("\ufeffepochs = 1\nsteps_per_epoch = 1\n".encode("utf-8"))
    result = run_cli("run", *fast_args(), "--config", config, "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.stderr
