"""Files that parse but have the wrong shape: priors and checkpoints, field by field.

Each case takes a good file written by stratum itself, breaks ONE field (removed,
of the wrong type, or an unknown extra), and runs the real command that reads
it: one line on stderr naming the file and the field, exit 2, and the file left
exactly as it was.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load, save

from stratum.checkpoint import RUN_SCHEMA
from stratum.io import atomic_torch_save
from stratum_plugins.focus.prior import METADATA_KEY, METADATA_SCHEMA
from stratum_plugins.lottery.strategy import STATE_SCHEMA
from tests.conftest import assert_one_line_error, run_cli

TINY = ["--model", "mlp", "--hidden", "16", "--threads", "1", "--quiet"]


# ---------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_prior(tmp_path_factory):
    path = tmp_path_factory.mktemp("prior") / "good.safetensors"
    result = run_cli("prior", "build", "--out", path, *TINY, "--epochs", "1", "--steps-per-epoch", "3")
    assert result.exit_code == 0, result.stderr
    return path


def _read(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(json.loads(raw[8:8 + n])["__metadata__"][METADATA_KEY]), load(raw)


def _write(path, metadata, tensors):
    path.write_bytes(save(tensors, metadata={METADATA_KEY: json.dumps(metadata)}))


def _wrong(spec_value):
    """A JSON value of the wrong type for a field: a list where a scalar or table belongs, else a string."""
    return "not-a-list" if isinstance(spec_value, list) else [1]


# (dotted field, variant): every top-level field wrong-typed, removed and added as an unknown,
# and the nested fields the run reads.
TOP = sorted({**METADATA_SCHEMA.required, **METADATA_SCHEMA.optional})
NESTED = ["optimizer.lr", "capture.every", "capture.dtype", "capture.trajectory", "capture.trajectory.window",
          "capture.trajectory.ema_decays", "architecture.0.params", "architecture.0.layer", "captured.0.rows",
          "captured.0.key", "captured.0.shape", "split.split_seed"]
PRIOR_CASES = ([(f, "wrong") for f in TOP + NESTED] + [(f, "missing") for f in TOP + NESTED]
               + [(f, "extra") for f in ["", "optimizer", "capture", "capture.trajectory", "captured.0"]])


def _break(metadata, field, variant):
    parts = [int(p) if p.isdigit() else p for p in field.split(".")] if field else []
    parent = metadata
    for part in parts[:-1]:
        parent = parent[part]
    if variant == "extra":
        target = parent[parts[-1]] if parts else metadata
        target["unexpected_field"] = 1
        return "unexpected_field"
    if variant == "missing":
        del parent[parts[-1]]
    else:
        parent[parts[-1]] = _wrong(parent[parts[-1]])
    return str(parts[-1])


def _is_optional(field):
    spec = METADATA_SCHEMA
    for part in field.split("."):
        if part.isdigit():
            spec = spec.item
            continue
        if part in spec.optional:
            return True
        spec = spec.required[part]
    return False


@pytest.mark.parametrize("field, variant", PRIOR_CASES, ids=[f"{f or 'top'}-{v}" for f, v in PRIOR_CASES])
def test_prior_with_a_broken_field_is_one_line_naming_file_and_field(good_prior, tmp_path, field, variant):
    metadata, tensors = _read(good_prior)
    if field.split(".")[0] not in metadata and variant != "extra":
        pytest.skip(f"{field} is not written by this build")
    named = _break(metadata, field, variant)
    broken = tmp_path / "broken.safetensors"
    _write(broken, metadata, tensors)
    before = broken.read_bytes()

    info = run_cli("prior", "info", broken)
    if variant == "missing" and _is_optional(field):
        assert info.exit_code == 0, info.stderr  # an optional field may be absent
        return
    assert info.exit_code == 2, info.stderr
    assert_one_line_error(info.stderr, str(broken), named)
    if variant == "wrong":  # the same file through a run, which reads the fields it needs
        run = run_cli("run", "--strategy", "focus", "--prior", broken, *TINY, "--epochs", "1",
                      "--steps-per-epoch", "2")
        assert run.exit_code == 2, run.stderr
        assert_one_line_error(run.stderr, str(broken), named)
    assert broken.read_bytes() == before


def test_prior_whose_row_count_disagrees_with_its_tensors(good_prior, tmp_path):
    metadata, tensors = _read(good_prior)
    metadata["captured"][0]["rows"] += 1
    broken = tmp_path / "rows.safetensors"
    _write(broken, metadata, tensors)
    result = run_cli("prior", "info", broken)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, str(broken), "captured", "rows")


# ---------------------------------------------------------------------------
# Checkpoints (the run's, each lottery fit's, the lottery state file)
# ---------------------------------------------------------------------------

RUN = [*TINY, "--epochs", "1", "--steps-per-epoch", "2"]
LOTTERY = [*RUN, "--strategy", "lottery", "--prune-rounds", "1", "--lottery-controls", "none"]


@pytest.fixture(scope="module")
def good_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, args in [("sgd", RUN), ("lottery", LOTTERY)]:
        result = run_cli("run", *args, "--out", root / name)
        assert result.exit_code == 0, result.stderr
    return root


def _wrong_value(key, value):
    if key in ("history", "config"):
        return 5  # they travel as JSON strings
    return {"a": 1} if isinstance(value, list) else [1]


def _checkpoint_cases(schema, extra_keys=()):
    keys = sorted({**schema.required, **schema.optional}) + list(extra_keys)
    return [(k, "missing") for k in keys if k in schema.required] + [(k, "wrong") for k in keys]


RUN_CASES = _checkpoint_cases(RUN_SCHEMA)
STATE_CASES = _checkpoint_cases(STATE_SCHEMA)


def _break_checkpoint(path, key, variant):
    state = torch.load(path, weights_only=True)
    if variant == "missing":
        state.pop(key)
    else:
        state[key] = _wrong_value(key, state.get(key))
    atomic_torch_save(path, state)
    return path.read_bytes()


def _forget_last_lottery_fit(out):
    """The state file as it was while the level-1 ticket still trained: a resume then reads its checkpoint."""
    state = torch.load(out / "lottery-state.pt", weights_only=True)
    state["results"] = json.dumps([r for r in json.loads(state["results"]) if r["level"] == 0])
    atomic_torch_save(out / "lottery-state.pt", state)


@pytest.mark.parametrize("file", ["checkpoint.pt", "lottery-L01-ticket.pt"])
@pytest.mark.parametrize("key, variant", RUN_CASES, ids=[f"{k}-{v}" for k, v in RUN_CASES])
def test_checkpoint_with_a_broken_top_level_key_is_one_line(good_runs, tmp_path, file, key, variant):
    strategy = "sgd" if file == "checkpoint.pt" else "lottery"
    out = tmp_path / "run"
    shutil.copytree(good_runs / strategy, out)
    if strategy == "lottery":
        _forget_last_lottery_fit(out)
    before = _break_checkpoint(out / file, key, variant)
    result = run_cli("run", *(RUN if strategy == "sgd" else LOTTERY), "--out", out, "--resume")
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, str(out / file), f"'{key}'")
    assert (out / file).read_bytes() == before


@pytest.mark.parametrize("key, variant", STATE_CASES, ids=[f"{k}-{v}" for k, v in STATE_CASES])
def test_lottery_state_with_a_broken_key_is_one_line(good_runs, tmp_path, key, variant):
    out = tmp_path / "run"
    shutil.copytree(good_runs / "lottery", out)
    before = _break_checkpoint(out / "lottery-state.pt", key, variant)
    result = run_cli("run", *LOTTERY, "--out", out, "--resume")
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, str(out / "lottery-state.pt"), f"'{key}'")
    assert (out / "lottery-state.pt").read_bytes() == before


@pytest.mark.parametrize("mutate, fragment", [
    (lambda s: s.__setitem__("history", json.dumps([{"epoch": 1}])), "'history[0].mode' is missing"),
    (lambda s: s.__setitem__("history", json.dumps([1])), "'history[0]'"),
    (lambda s: s.__setitem__("history", "{not json"), "'history' is not valid JSON"),
    (lambda s: s.__setitem__("switches", [{"epoch": "one", "from": "sgd", "to": "focus"}]), "'switches[0].epoch'"),
    (lambda s: s.__setitem__("rng", {"cuda": []}), "'rng.torch' is missing"),
    (lambda s: s["model"].__setitem__(next(iter(s["model"])), [1.0]), "'model."),
    (lambda s: s.__setitem__("partial", {"loss_count": "3"}), "'partial.loss_count'"),
    (lambda s: s.__setitem__("plugins", [1]), "'plugins'"),
], ids=["history-row-field", "history-row-type", "history-json", "switch-field", "rng-field", "model-tensor",
        "partial-field", "plugins"])
def test_checkpoint_nested_fields_are_named(good_runs, tmp_path, mutate, fragment):
    out = tmp_path / "run"
    shutil.copytree(good_runs / "sgd", out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    mutate(state)
    atomic_torch_save(out / "checkpoint.pt", state)
    result = run_cli("run", *RUN, "--out", out, "--resume")
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, str(out / "checkpoint.pt"), fragment)
