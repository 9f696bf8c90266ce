"""Option values: bounds on every integer, the whole configuration in the summary, explicit
values over component defaults, and the shape of every TOML file stratum reads.

The options under test are discovered from the registries (core and plugin), so a new
option is covered without touching this file.
"""

from __future__ import annotations

import json
import math

import attrs
import pytest

from stratum.config import CORE_FIELDS, components_in_use, make_config, plugin_option_fields, resolve_config
from stratum.engine import build_run
from stratum.options import INT_MAX, flag_name, option_meta
from stratum.plugin_manager import create_plugin_manager
from tests.conftest import FAST, assert_one_line_error, fast_args, run_cli

_PM = create_plugin_manager()
ALL_FIELDS = {**CORE_FIELDS, **plugin_option_fields(_PM.registries.all())}
INT_FIELDS = sorted(name for name, f in ALL_FIELDS.items() if option_meta(f)["type"] is int)


def _over_max(name: str) -> int:
    return option_meta(ALL_FIELDS[name])["max"] + 1


def _toml(value) -> str:
    """A TOML literal for the small set of values these tests write."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _write_toml(path, values: dict, table: str | None = None) -> None:
    lines = [f"[{table}]"] if table else []
    lines += [f"{key} = {_toml(value)}" for key, value in values.items() if value is not None]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# A. Every integer option has an upper bound; the error names the flag (and the file)
# ---------------------------------------------------------------------------


def test_every_integer_option_declares_an_upper_bound_within_64_bits():
    assert len(INT_FIELDS) > 30  # core and plugin options were found
    for name in INT_FIELDS:
        meta = option_meta(ALL_FIELDS[name])
        assert meta["max"] is not None and meta["max"] <= INT_MAX, name
    assert option_meta(CORE_FIELDS["threads"])["max"] < 2**31  # torch.set_num_threads takes a C int
    assert option_meta(CORE_FIELDS["seed"])["max"] <= 2**63 - 1  # the bench store's signed 64-bit seed


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("via", ["flag", "toml"])
def test_an_integer_option_above_its_bound_is_one_line_naming_the_flag(tmp_path, name, via):
    flag = flag_name(ALL_FIELDS[name])
    value = _over_max(name)
    if via == "flag":
        result = run_cli("run", *fast_args(), "--quiet", flag, value)
        assert result.exit_code == 2, result
        assert_one_line_error(result.stderr, flag, str(value))
    else:
        config = tmp_path / "huge.toml"
        _write_toml(config, {name: [value] if option_meta(ALL_FIELDS[name])["multiple"] else value})
        result = run_cli("run", "--config", config, *fast_args(), "--quiet")
        assert result.exit_code == 2, result
        assert_one_line_error(result.stderr, flag, "huge.toml")


@pytest.mark.parametrize("args, fragment", [
    (["--threads", "4294967297"], "--threads"),
    (["--threads", "1025"], "--threads"),
    (["--loader-workers", "100000"], "--loader-workers"),
    (["--seed", str(2**63)], "--seed"),
    (["--split-seed", "18446744073709551616"], "--split-seed"),
    (["--dataset", "synthetic", "--synthetic-seed", str(2**63 - 1)], "--synthetic-seed"),
    (["--hidden", f"8,{2**63}"], "--hidden"),
    (["--lr", "1" + "0" * 400], "--lr"),  # an integer too large for a float
])
def test_tighter_bounds_name_the_flag(args, fragment):
    result = run_cli("run", *fast_args(), "--quiet", *args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, fragment)


@pytest.mark.parametrize("args, fragment", [
    (["bench", "--seeds", "0,9223372036854775808", "--dry-run"], "--seeds"),
    (["bench", "--seeds", "9223372036854775807-9223372036854775808", "--dry-run"], "--seeds"),
    (["bench", "--strategies", "sgd", "--axis", "seed=1,9223372036854775808", "--dry-run"], "--axis seed"),
    (["bench", "--strategies", "sgd", "--axis", "epochs=1,9223372036854775808", "--dry-run"], "--epochs"),
    (["bench", "--strategies", "sgd", "--set", "batch_size=9223372036854775808", "--dry-run"], "--batch-size"),
    (["bench", "--strategies", "sgd", "--threads", "4294967297", "--dry-run"], "--threads"),
    (["bench", "--strategies", "sgd", "--workers", str(10**20), "--dry-run"], "--workers"),
    (["report", "missing.sqlite", "--bootstrap", str(10**20)], "--bootstrap"),
    (["report", "missing.sqlite", "--seed", str(2**64)], "--seed"),
    (["prior", "build", "--out", "p.prior", "--capture-every", str(2**63)], "--capture-every"),
    (["prior", "build", "--out", "p.prior", "--threads", "4294967297"], "--threads"),
])
def test_integer_bounds_in_bench_report_and_prior_commands(args, fragment):
    result = run_cli(*args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, fragment)


@pytest.mark.parametrize("args, fragment", [
    (["--hidden", str(10**13)], "--hidden"),
    (["--hidden", str(2**62)], "--hidden"),
    (["--dataset", "cubic", "--cubic-points", str(2**62)], "--cubic-points"),
])
def test_a_size_too_large_for_memory_is_one_line_naming_the_option(args, fragment):
    result = run_cli("run", *fast_args(), "--quiet", *args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, fragment, "too large")


# ---------------------------------------------------------------------------
# B. The summary holds the whole configuration, and re-creates the run
# ---------------------------------------------------------------------------

_CLOCKS = ("epoch_s", "cum_s", "cum_all_in_s", "train_s", "val_s", "test_s", "step_s", "setup_s")


def _without_clocks(history):
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in history]


@pytest.mark.parametrize("extra", [
    ["--optimizer", "adamw", "--profile", "losses"],
    ["--optimizer", "momentum", "--momentum-default", "0.5", "--dataset", "cubic", "--cubic-points", "200"],
    ["--strategy", "focus", "--prior-epochs", "1", "--policy", "fixed", "--switch-every", "1"],
])
def test_the_summary_config_re_creates_the_run(tmp_path, extra):
    first = tmp_path / "first.json"
    args = fast_args(epochs=2, steps_per_epoch=3, hidden=[16])
    result = run_cli("run", *args, "--deterministic", "--quiet", *extra, "--json", first)
    assert result.exit_code == 0, result
    summary = json.loads(first.read_text())
    config = summary["config"]

    # Every option of every component in use is there, including those left at their defaults.
    pm = create_plugin_manager()
    registries = pm.registries
    named = [registries.get(kind, config[key]) for key, kind in
             (("strategy", "strategy"), ("model", "model"), ("dataset", "dataset"), ("init", "initializer"),
              ("optimizer", "optimizer"))]
    named += [registries.get("profiler", p) for p in config["profile"]] + list(registries["extension"])
    if config["strategy"] == "focus":
        named += [registries.get(kind, config[key]) for key, kind in
                  (("regressor", "regressor"), ("features", "feature_set"), ("policy", "policy"))]
    for component in named:
        for field in attrs.fields(component.options) if component.options else ():
            assert field.name in config, (component.name, field.name)
    assert set(CORE_FIELDS) <= set(config)

    # Written as TOML and run again: the same configuration and the same trajectory.
    toml = tmp_path / "again.toml"
    recorded = {k: v for k, v in config.items() if k not in ("json",)}
    _write_toml(toml, recorded)
    second = tmp_path / "second.json"
    result = run_cli("run", "--config", toml, "--json", second)
    assert result.exit_code == 0, result
    again = json.loads(second.read_text())
    assert {k: v for k, v in again["config"].items() if k != "json"} == recorded
    assert _without_clocks(again["history"]) == _without_clocks(summary["history"])
    plugin_fields = plugin_option_fields(registries.all())
    assert (make_config(again["config"], plugin_fields=plugin_fields).fingerprint()
            == make_config(config, plugin_fields=plugin_fields).fingerprint())


def test_explicit_defaults_and_absent_options_give_the_same_fingerprint(pm):
    plugin_fields = plugin_option_fields(pm.registries.all())
    registries = pm.registries
    base = make_config({**FAST, "optimizer": "adam"}, plugin_fields=plugin_fields)
    defaults = {}
    for component in components_in_use(base, registries):
        for field in attrs.fields(component.options) if component.options else ():
            if field.name not in base.options and field.default is not None:
                default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
                defaults[field.name] = list(default) if isinstance(default, tuple) else default
    for name in ("weight_decay", "momentum", "nesterov", "val_fraction", "split_seed"):
        defaults[name] = CORE_FIELDS[name].default
    assert {"beta1", "eps", "batch_norm", "init_mode", "activation"} <= set(defaults)  # mlp reads these, not width
    explicit = make_config({**FAST, "optimizer": "adam", **defaults}, plugin_fields=plugin_fields)
    assert base.fingerprint() != explicit.fingerprint()  # unresolved, they differ...
    a, b = resolve_config(base, registries), resolve_config(explicit, registries)
    assert a.to_dict() == b.to_dict() and a.fingerprint() == b.fingerprint()  # ...resolved, they are one
    assert resolve_config(a, registries).to_dict() == a.to_dict()  # resolving twice changes nothing


def test_resume_accepts_options_given_explicitly_at_their_defaults(tmp_path):
    out = tmp_path / "r"
    result = run_cli("run", *fast_args(epochs=1), "--quiet", "--optimizer", "adamw", "--out", out)
    assert result.exit_code == 0, result
    result = run_cli("run", *fast_args(epochs=2), "--quiet", "--optimizer", "adamw", "--out", out, "--resume",
                     "--weight-decay", "0.01", "--beta1", "0.9", "--width", "1.0", "--activation", "relu",
                     "--val-fraction", "0.1")
    assert result.exit_code == 0, result
    result = run_cli("run", *fast_args(epochs=3), "--quiet", "--optimizer", "adamw", "--out", out, "--resume",
                     "--weight-decay", "0")
    assert result.exit_code == 2 and "weight_decay" in result.stderr, result  # a real difference is still caught


# ---------------------------------------------------------------------------
# C. An explicit value always wins over a component's own default
# ---------------------------------------------------------------------------


def _group(pm, toml_values=None, **values):
    config = make_config({**FAST, **values}, toml_values=toml_values, toml_source="test.toml",
                         plugin_fields=plugin_option_fields(pm.registries.all()))
    run = build_run(config, pm)
    return run.optimizer.param_groups[0], run.config


@pytest.mark.parametrize("values, toml_values, key, expected", [
    ({"optimizer": "adamw", "weight_decay": 0}, None, "weight_decay", 0.0),
    ({"optimizer": "adamw", "weight_decay": "0.0"}, None, "weight_decay", 0.0),
    ({"optimizer": "adamw"}, {"weight_decay": 0.0}, "weight_decay", 0.0),
    ({"optimizer": "adamw"}, None, "weight_decay", 0.01),
    ({"optimizer": "adamw", "weight_decay": 0.2}, None, "weight_decay", 0.2),
    ({"optimizer": "momentum", "momentum": 0}, None, "momentum", 0.0),
    ({"optimizer": "momentum", "momentum_default": 0.5}, None, "momentum", 0.5),
    ({"optimizer": "momentum", "momentum_default": 0.5, "momentum": 0.9}, None, "momentum", 0.9),
    ({"optimizer": "momentum"}, {"momentum": 0.0, "momentum_default": 0.7}, "momentum", 0.0),
    ({"optimizer": "nesterov", "momentum_default": 0.6}, None, "momentum", 0.6),
])
def test_an_explicit_value_wins_over_a_component_default(pm, values, toml_values, key, expected):
    group, config = _group(pm, toml_values, **values)
    assert math.isclose(group[key], expected)
    assert math.isclose(getattr(config, key), expected)  # what the summary records is what was used


def test_explicit_zero_momentum_with_nesterov_is_one_line():
    result = run_cli("run", *fast_args(), "--quiet", "--optimizer", "nesterov", "--momentum", "0")
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, "nesterov", "--momentum")


def test_adamw_with_explicit_zero_weight_decay_through_the_cli(tmp_path):
    for extra, expected in ((["--weight-decay", "0"], 0.0), ([], 0.01)):
        path = tmp_path / f"s{len(extra)}.json"
        result = run_cli("run", *fast_args(epochs=1, steps_per_epoch=1), "--quiet", "--optimizer", "adamw",
                         *extra, "--json", path)
        assert result.exit_code == 0, result
        assert json.loads(path.read_text())["config"]["weight_decay"] == expected


# ---------------------------------------------------------------------------
# D. Files that parse but have the wrong shape: one line naming the file and the field
# ---------------------------------------------------------------------------

BAD_BENCH = [
    # (table, key, value, fragment expected besides the file name)
    ("bench", "workers", "four", "workers"),
    ("bench", "workers", True, "workers"),
    ("bench", "workers", 0, "workers"),
    ("bench", "workers", 2**63 - 1, "workers"),
    ("bench", "workers", [2], "workers"),
    ("bench", "workers", {"n": 2}, "workers"),
    ("bench", "executor", 3, "executor"),
    ("bench", "executor", "slurm", "executor"),
    ("bench", "address", ["tcp://x:1"], "address"),
    ("bench", "name", {"a": 1}, "name"),
    ("bench", "name", ["x"], "name"),
    ("bench", "recipe", "nope", "recipe"),
    ("bench", "scale", "huge", "scale"),
    ("bench", "strategies", 1, "strategies"),
    ("bench", "strategies", [1], "strategies"),
    ("bench", "strategies", {"a": "sgd"}, "strategies"),
    ("bench", "models", [["mlp"]], "models"),
    ("bench", "seeds", True, "seeds"),
    ("bench", "seeds", [1.5], "seeds"),
    ("bench", "seeds", "x", "seeds"),
    ("bench", "seeds", -3, "seeds"),
    ("bench", "seeds", [2**63], "seeds"),
    ("bench", "seeds", {"n": 1}, "seeds"),
    ("axes", "lr", "fast", "--lr"),
    ("axes", "lr", {"a": 1}, "lr"),
    ("axes", "epochs", [True], "--epochs"),
    ("axes", "epochs", [1, 2**63], "--epochs"),
    ("axes", "batch_size", -1, "--batch-size"),
    ("axes", "hidden", [[True]], "--hidden"),
    ("axes", "model", [3], "--model"),
    ("axes", "seed", [True], "seed"),
    ("run", "epochs", "x", "--epochs"),
    ("run", "epochs", 2**63, "--epochs"),
    ("run", "lr", [1.0], "--lr"),
    ("run", "lr", {"a": 1}, "lr"),
    ("run", "model", 3, "--model"),
    ("run", "hidden", "a", "--hidden"),
    ("run", "hidden", [[1]], "hidden"),
    ("run", "threads", 4294967297, "--threads"),
    ("run", "deterministic", 1, "--deterministic"),
    ("variant", "lr", "fast", "--lr"),
    ("variant", "momentum", {"a": 1}, "momentum"),
    ("variant", "name", 3, "name"),
    ("variant", "seed", 2**63, "--seed"),
]


def _bench_toml(path, table, key, value):
    if table == "variant":
        body = {"name": "v"} if key != "name" else {}
        body[key] = value
        text = "[bench]\nstrategies = 'sgd'\n[[variant]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items())
    elif table == "bench":
        base = "" if key in ("strategies", "recipe") else "strategies = 'sgd'\n"
        if key == "scale":
            base += "recipe = 'depth'\n"
        text = f"[bench]\n{base}{key} = {_toml(value)}\n"
    else:
        text = f"[bench]\nstrategies = 'sgd'\n[{table}]\n{key} = {_toml(value)}\n"
    path.write_text(text)


@pytest.mark.parametrize("table, key, value, fragment", BAD_BENCH,
                         ids=[f"{t}.{k}={v!r}"[:40] for t, k, v, _ in BAD_BENCH])
def test_a_bench_toml_with_a_wrong_field_is_one_line_naming_file_and_field(tmp_path, table, key, value, fragment):
    path = tmp_path / "shape.toml"
    _bench_toml(path, table, key, value)
    result = run_cli("bench", "--config", path, "--dry-run", "--db", tmp_path / "b.sqlite")
    assert result.exit_code == 2, (path.read_text(), result)
    assert_one_line_error(result.stderr, "shape.toml", fragment)
    assert not (tmp_path / "b.sqlite").exists()


@pytest.mark.parametrize("text, fragment", [
    ("variant = [1, 2]\n", "[[variant]]"),
    ("bench = 3\n", "[bench]"),
    ("axes = [1]\n", "[axes]"),
    ("run = 'x'\n", "[run]"),
])
def test_a_bench_toml_with_a_wrong_table_is_one_line(tmp_path, text, fragment):
    path = tmp_path / "shape.toml"
    path.write_text(text)
    result = run_cli("bench", "--config", path, "--dry-run")
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, "shape.toml", fragment)


def _wrong_values(name: str, index: int) -> list:
    """Wrong values for an option: one of another type (rotating over the options, so that
    every kind of mistake is tried on some option of every type), and one out of range."""
    meta = option_meta(ALL_FIELDS[name])
    kind = meta["type"]
    out_of_range = []
    if kind is int:
        types = ["x", True, 1.5, {"a": 1}]
        out_of_range.append(meta["max"] + 1)
        if meta["min"] is not None and meta["min"] > -(2**63):
            out_of_range.append(meta["min"] - 1)
    elif kind is float:
        types = ["fast", True, {"a": 1}]
        if meta["max"] is not None:
            out_of_range.append(meta["max"] + 1)
        elif meta["min"] is not None:
            out_of_range.append(meta["min"] - 1)
    elif kind is bool:
        types = ["maybe", 2, {"a": 1}]
    elif kind is str:
        types = [3, [1] if meta["multiple"] else ["a", "b"], {"a": 1}]
    else:  # paths
        types = [3, "", {"a": 1}]
    if meta["multiple"]:
        types.append([[1]])
    return [types[index % len(types)]] + out_of_range[:1]


RUN_TOML_CASES = [(name, value) for i, name in enumerate(sorted(ALL_FIELDS)) for value in _wrong_values(name, i)]


@pytest.mark.parametrize("name, value", RUN_TOML_CASES, ids=[f"{n}={v!r}"[:40] for n, v in RUN_TOML_CASES])
def test_a_run_toml_with_a_wrong_value_is_one_line_naming_file_and_option(tmp_path, name, value):
    path = tmp_path / "wrong.toml"
    path.write_text(f"{name} = {_toml(value)}\n")
    result = run_cli("run", "--config", path, *fast_args(), "--quiet")
    assert result.exit_code == 2, (path.read_text(), result)
    assert_one_line_error(result.stderr, "wrong.toml")
    assert name in result.stderr or flag_name(ALL_FIELDS[name]) in result.stderr, result.stderr


def test_the_largest_seed_runs_focus_whose_source_run_adds_an_offset():
    result = run_cli("run", *fast_args(epochs=1, steps_per_epoch=2, hidden=[8]), "--quiet", "--strategy", "focus",
                     "--prior-epochs", "1", "--seed", str(2**63 - 1))
    assert result.exit_code == 0, result
