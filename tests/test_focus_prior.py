"""Focus priors on disk: round trip, metadata, and clear errors for bad files (CLI, exit 2)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from stratum.errors import PriorError
from stratum_plugins.focus.prior import Prior, check_architecture, load_prior, save_prior

from .conftest import assert_one_line_error, fast_args, run_cli

BUILD = ["prior", "build", "--model", "mlp", "--hidden", "16", "--epochs", "1", "--steps-per-epoch", "4",
         "--threads", "1", "--capture-max-samples", "500"]


@pytest.fixture(scope="module")
def built_prior(tmp_path_factory):
    path = tmp_path_factory.mktemp("prior") / "mlp16.prior"
    result = run_cli(*BUILD, "--out", path)
    assert result.exit_code == 0, result
    return path


def test_build_writes_a_prior_with_the_documented_metadata(built_prior):
    prior = load_prior(built_prior)
    meta = prior.metadata
    assert meta["format"] == "stratum-prior/1"
    assert meta["model"] == "mlp" and meta["dataset"] == "digits" and meta["seed"] == 0
    assert meta["split"]["val_fraction"] == 0.1 and "split_seed" in meta["split"]
    assert meta["steps"] == 4 and meta["epochs"] == 1
    assert meta["capture"]["max_samples"] == 500 and meta["capture"]["layers"] == "auto"
    assert {"stratum", "torch"} <= set(meta["versions"])
    assert [layer["layer"] for layer in meta["architecture"]] == ["net.1", "net.3"]
    assert meta["architecture"][0]["params"] == {"weight": [16, 64], "bias": [16]}
    assert set(prior.tensors) == {"net.1:w", "net.1:b", "net.3:w", "net.3:b"}
    for key, columns in prior.tensors.items():
        assert len(columns["grad"]) <= 500
        assert {"w", "grad", "delta", "ema_disp", "layer_rms", "step"} <= set(columns)


def test_round_trip_is_exact(built_prior, tmp_path):
    prior = load_prior(built_prior)
    copy_path = tmp_path / "copy.prior"
    save_prior(copy_path, prior)
    again = load_prior(copy_path)
    assert again.metadata == prior.metadata
    for key, columns in prior.tensors.items():
        for name, tensor in columns.items():
            assert torch.equal(again.tensors[key][name], tensor)


def test_info_prints_the_metadata(built_prior):
    result = run_cli("prior", "info", built_prior)
    assert result.exit_code == 0, result
    assert "mlp" in result.stdout and "net.1:w" in result.stdout and "window 4" in result.stdout
    raw = run_cli("prior", "info", built_prior, "--json")
    assert json.loads(raw.stdout)["format"] == "stratum-prior/1"


def test_build_refuses_to_overwrite_without_force(built_prior):
    before = built_prior.read_bytes()
    result = run_cli(*BUILD, "--out", built_prior)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "exists", "--force")
    assert built_prior.read_bytes() == before


def test_mismatched_prior_names_the_first_differing_layer(built_prior):
    result = run_cli("run", *fast_args(hidden=[24]), "--strategy", "focus", "--prior", built_prior)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "does not match this model", "net.1", "16x64", "24x64")


def test_mismatch_lists_a_missing_layer():
    a = [{"layer": "f.0", "params": {"weight": [2, 2]}}]
    b = a + [{"layer": "f.1", "params": {"weight": [3, 2]}}]
    with pytest.raises(PriorError, match="'f.1'.*not in the prior"):
        check_architecture(a, b)
    with pytest.raises(PriorError, match="prior layer 'f.1'.*not in this model"):
        check_architecture(b, a)
    check_architecture(a, a)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "header_only", "not_stratum", "pickle", "directory", "missing"])
def test_bad_prior_files_give_one_line_and_exit_2(built_prior, tmp_path, damage):
    bad = tmp_path / "bad.prior"
    raw = built_prior.read_bytes()
    if damage == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x13\x37" * 500)
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "header_only":
        n = int.from_bytes(raw[:8], "little")
        bad.write_bytes(raw[: 8 + n])
    elif damage == "not_stratum":
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(3)}, str(bad))
    elif damage == "pickle":
        marker = tmp_path / "payload-ran"

        class Payload:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        bad.write_bytes(pickle.dumps(Payload()))
    elif damage == "directory":
        bad.mkdir()
    for args in (["prior", "info", bad], ["run", *fast_args(), "--strategy", "focus", "--prior", bad]):
        result = run_cli(*args)
        assert result.exit_code == 2, (damage, result)
        assert_one_line_error(result.stderr, "prior")
    if damage == "pickle":
        assert not (tmp_path / "payload-ran").exists()


def test_nonfinite_values_are_never_written(tmp_path):
    prior = Prior({"format": "x"}, {"a:w": {"w": torch.tensor([1.0, float("nan")]), "grad": torch.zeros(2)}})
    with pytest.raises(PriorError, match="non-finite"):
        save_prior(tmp_path / "p", prior)
    assert not (tmp_path / "p").exists()


def test_capture_out_lets_any_strategy_write_a_prior(tmp_path):
    path = tmp_path / "sgd.prior"
    result = run_cli("run", *fast_args(), "--capture-out", path, "--capture-layers", "all", "--quiet",
                     "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result
    prior = load_prior(path)
    assert prior.metadata["strategy"] == "sgd" and prior.metadata["steps"] == 10
    assert json.loads((tmp_path / "s.json").read_text())["capture"]["prior"] == str(path)


def test_build_with_a_bad_name_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "x.prior"
    result = run_cli("prior", "build", "--model", "vgg111", "--out", out)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "unknown model 'vgg111'", "did you mean 'vgg11'")
    assert not out.exists()
    result = run_cli("prior", "build", "--model", "mlp")
    assert_one_line_error(result.stderr, "--out")
