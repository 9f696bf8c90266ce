"""Configuration: defaults < TOML < command line, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from stratum.config import RunConfig, load_toml, make_config
from stratum.errors import ConfigError
from tests.conftest import assert_one_line_error, fast_args, run_cli, run_subprocess


def test_defaults_are_valid():
    config = RunConfig()
    assert config.strategy == "sgd" and config.dataset == "digits" and config.epochs >= 1


def test_toml_loads_and_command_line_wins(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 1\nlr = 0.05\nmodel = "mlp"\nhidden = [16]\nbatch-size = 64\nsteps_per_epoch = 2\n')
    out = tmp_path / "summary.json"
    result = run_cli("run", "--config", toml, "--lr", "0.01", "--json", out, "--quiet")
    assert result.exit_code == 0, result
    config = json.loads(out.read_text())["config"]
    assert config["lr"] == 0.01  # flag beats TOML
    assert config["epochs"] == 1 and config["batch_size"] == 64 and config["hidden"] == [16]  # TOML beats default
    assert config["momentum"] == RunConfig().momentum  # untouched default


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--lr", "0"], "--lr must be > 0"),
        (["--lr", "-1"], "--lr must be > 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--epochs", "ten"], "--epochs must be an integer"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--momentum", "1.5"], "--momentum must be >= 0 and < 1"),
        (["--device", "tpu"], "--device has an invalid value"),
        (["--strategy", "sgdd"], "unknown strategy 'sgdd'; did you mean 'sgd'?"),
        (["--model", "vgg12"], "unknown model 'vgg12'"),
        (["--dataset", "digit"], "did you mean 'digits'"),
        (["--optimizer", "adamm"], "did you mean 'adam'"),
        (["--init", "he_normal"], "did you mean 'he-normal'"),
        (["--resident", "sometimes"], "--resident must be one of auto, always, never"),
        (["--activation", "relu6"], "--activation must be one of"),
        (["--nesterov", "--momentum", "0"], "--nesterov needs --momentum > 0"),
        (["--no-such-flag"], "No such option"),
        (["--config", "missing.toml"], "config file not found"),
        (["--name", "../escape", "--out", "runs"], "--name has an invalid value"),
    ],
)
def test_bad_values_get_one_line_and_exit_2(args, fragment):
    result = run_cli("run", *args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, fragment)


def test_malformed_toml(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("epochs = = 3\n")
    result = run_cli("run", "--config", toml)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "malformed TOML")


def test_unknown_toml_key_suggests(tmp_path):
    toml = tmp_path / "typo.toml"
    toml.write_text("epoch = 3\n")
    result = run_cli("run", "--config", toml)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "unknown key 'epoch'", "did you mean 'epochs'")


def test_toml_type_errors_name_the_file(tmp_path):
    toml = tmp_path / "types.toml"
    toml.write_text('epochs = "many"\n')
    with pytest.raises(ConfigError, match=r"--epochs must be an integer \(from .*types.toml\)"):
        make_config(toml_values=load_toml(toml), toml_source=str(toml))


def test_toml_tables_are_rejected(tmp_path):
    toml = tmp_path / "table.toml"
    toml.write_text("[model]\nname = 'mlp'\n")
    with pytest.raises(ConfigError, match="must be a value, not a table"):
        make_config(toml_values=load_toml(toml))


def test_fingerprint_ignores_presentation_but_not_trajectory():
    a = make_config({"epochs": 3, "quiet": True})
    b = make_config({"epochs": 9, "quiet": False})
    c = make_config({"lr": 0.5})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


def test_real_exit_codes_in_a_subprocess(tmp_path):
    bad = run_subprocess("run", "--epochs", "0")
    assert bad.returncode == 2
    assert_one_line_error(bad.stderr, "--epochs must be >= 1")
    ok = run_subprocess("run", *fast_args(epochs=1), "--quiet", "--json", tmp_path / "s.json")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "s.json").exists()


def _plugin_name_options():
    from stratum.config import plugin_option_fields
    from stratum.options import flag_name, option_meta
    from stratum.plugin_manager import create_plugin_manager

    fields = plugin_option_fields(create_plugin_manager().registries.all())
    return sorted((name, flag_name(f), option_meta(f)["kind"]) for name, f in fields.items() if option_meta(f)["kind"])


@pytest.mark.parametrize("name, flag, kind", _plugin_name_options())
def test_a_plugin_name_option_is_checked_even_where_no_component_reads_it(name, flag, kind):
    """--features nosuch with --strategy sgd was accepted silently (run) and dropped silently (bench)."""
    assert _plugin_name_options(), "no plugin option names a component kind: nothing to test"
    run = run_cli("run", *fast_args(epochs=1, steps_per_epoch=1), "--strategy", "sgd", flag, "nosuch")
    assert run.exit_code == 2
    assert_one_line_error(run.stderr, "nosuch", "available")
    for args in (["--set", f"{name}=nosuch"], ["--axis", f"{name}=nosuch"]):
        bench = run_cli("bench", "--strategies", "sgd", "--seeds", "1", "--model", "mlp", "--dry-run", *args)
        assert bench.exit_code == 2, (args, bench.stderr)
        assert_one_line_error(bench.stderr, "nosuch", "available")


@pytest.mark.parametrize("extra", [["--name", "x"], ["--name", "x", "--json", "s.json"]])
def test_a_run_name_without_an_output_directory_is_refused(extra):
    """--name only names a sub-directory of --out; without --out it was dropped without a word."""
    result = run_cli("run", *fast_args(epochs=1, steps_per_epoch=1), *extra)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--name needs --out")


def test_random_bytes_as_a_checkpoint_are_called_corrupt(tmp_path):
    """Not 'holds objects other than tensors' (that is for real pickles with foreign objects)."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "checkpoint.pt").write_bytes(bytes(range(7, 250)) * 3)
    result = run_cli("run", *fast_args(epochs=1), "--out", tmp_path / "r", "--resume")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "corrupt or not a torch file")
