"""Fuzzing the CLI and TOML configs: the only outcomes are success, or one error line and exit 2.

Generated values mix valid, borderline and nonsense inputs for real flags, plus
unknown flags and stray tokens. Every run is capped to a tiny model and a couple
of steps (the caps come first, so generated flags override them only with
values drawn from cheap ranges or invalid ones).
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli

CAPS = ["--model", "mlp", "--hidden", "8", "--epochs", "1", "--steps-per-epoch", "2", "--threads", "1", "--quiet"]

junk_text = st.text(alphabet=string.ascii_letters + string.digits + "-_./:, =[]\"'", max_size=12)
numbers = st.one_of(
    st.integers(-5, 3).map(str), st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.sampled_from(["0", "1e-3", "-0.0", "1e309", "0x10", "", " ", "nan", "inf", "1.5"]), junk_text,
)
names = st.one_of(st.sampled_from(["sgd", "mlp", "lenet300", "digits", "he-normal", "adam", "sgdd", "vgg", "", "SGD"]), junk_text)
booleans = st.sampled_from(["--deterministic", "--no-deterministic", "--nesterov", "--batch-norm", "--download", "--quiet"])

value_flags = {
    "--lr": numbers, "--momentum": numbers, "--weight-decay": numbers, "--batch-size": numbers,
    "--epochs": st.one_of(st.sampled_from(["1", "2"]), numbers.filter(lambda v: v not in {"3"})),
    "--seed": numbers, "--val-fraction": numbers, "--patience": numbers, "--steps-per-epoch": st.sampled_from(["1", "2", "0x", "-1", "a"]),
    "--strategy": names, "--model": st.sampled_from(["mlp", "lenet300", "vgg", "mlpp", "", "../x"]),
    "--dataset": st.sampled_from(["digits", "digit", "cifar10", "", "synthetic9"]), "--init": names, "--optimizer": names,
    "--device": st.sampled_from(["cpu", "auto", "gpu", "cuda:x", "", "cpu:0"]), "--resident": names,
    "--hidden": st.sampled_from(["8", "8,4", "0", "-3", "a,b", ",", "4,,4"]), "--dropout": numbers,
    "--activation": names, "--width": st.sampled_from(["0.1", "0", "-1", "17", "x"]),
    "--name": junk_text, "--checkpoint-every": numbers, "--eval-batch-size": numbers, "--threads": st.sampled_from(["1", "-1", "x"]),
}
pairs = st.one_of(
    st.sampled_from(sorted(value_flags)).flatmap(lambda flag: value_flags[flag].map(lambda v: [flag, v])),
    booleans.map(lambda b: [b]),
    junk_text.map(lambda t: ["--" + t]),          # unknown flags
    junk_text.map(lambda t: [t]),                  # stray positional tokens
    st.just(["--lr"]),                             # a flag missing its value
)


def _check(result):
    if result.exit_code == 0:
        assert "stratum result" in result.stdout
        return
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stratum: error: "), result.stderr
    assert "Traceback" not in result.stderr


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(pairs, max_size=5))
def test_fuzzed_run_arguments(tmp_path, generated):
    args = CAPS + [token for pair in generated for token in pair] + ["--out", str(tmp_path / "out")]
    _check(run_cli("run", *args))


toml_keys = st.sampled_from(["lr", "epochs", "batch_size", "batch-size", "model", "hidden", "strategy", "momentum",
                             "seed", "epoch", "lrr", "dataset", "deterministic", "profile", "options", "out"])
toml_values = st.one_of(
    st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), junk_text,
    st.lists(st.integers(-2, 20), max_size=3), st.sampled_from(["mlp", "sgd", "digits"]),
)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Mostly well-formed files, sometimes with trailing garbage bytes.
garbage_tail = st.one_of(st.just(b""), st.just(b""), st.just(b""), st.just(b"x = ["), st.binary(max_size=30))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.dictionaries(toml_keys, toml_values, max_size=5), garbage_tail)
def test_fuzzed_toml_configs(tmp_path, table, garbage):
    toml = tmp_path / "fuzz.toml"
    text = "".join(f"{key} = {_toml_value(value)}\n" for key, value in table.items())
    toml.write_bytes(text.encode() + garbage)
    # The caps come after --config here: flags win over the file, keeping runs tiny.
    _check(run_cli("run", "--config", toml, *CAPS))
