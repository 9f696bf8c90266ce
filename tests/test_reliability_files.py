"""Safe loading, safe paths, and corrupt inputs that must not damage what is written."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch

from stratum.errors import UnsafePathError
from stratum.paths import safe_join
from tests.conftest import assert_one_line_error, fast_args, run_cli


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_torch_file(path: Path, marker: Path) -> None:
    """A file in torch.save's zip format whose pickle runs a command when loaded unsafely."""
    buffer = io.BytesIO()
    torch.save({"model": Payload(marker)}, buffer)
    path.write_bytes(buffer.getvalue())


def malicious_raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"model": Payload(marker)}))


@pytest.mark.parametrize("make", [malicious_torch_file, malicious_raw_pickle])
def test_malicious_checkpoint_is_refused_and_its_code_never_runs(tmp_path, make):
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "pwned"
    make(out / "checkpoint.pt", marker)
    result = run_cli("run", *fast_args(), "--out", out, "--resume")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "checkpoint")
    assert not marker.exists(), "the pickled payload executed"
    # Prove the payload would have run under an unsafe load (so the test can fail).
    torch.load(out / "checkpoint.pt", weights_only=False) if make is malicious_torch_file else pickle.loads((out / "checkpoint.pt").read_bytes())
    assert marker.exists()


def test_truncated_checkpoint_gets_one_line_and_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", *fast_args(), "--out", out, "--quiet").exit_code == 0
    good = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(good[: len(good) // 3])
    truncated = (out / "checkpoint.pt").read_bytes()
    summary_before = (out / "summary.json").read_bytes()
    result = run_cli("run", *fast_args(epochs=3), "--out", out, "--resume")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "corrupt or truncated")
    assert (out / "checkpoint.pt").read_bytes() == truncated  # left exactly as found
    assert (out / "summary.json").read_bytes() == summary_before


def test_malformed_toml_writes_nothing(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text('{"kept": true}\n')
    toml = tmp_path / "bad.toml"
    toml.write_bytes(b"epochs = 3\nlr = [\x00\n")
    result = run_cli("run", "--config", toml, "--json", target)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr)
    assert target.read_text() == '{"kept": true}\n'


def test_non_utf8_toml(tmp_path):
    toml = tmp_path / "latin1.toml"
    toml.write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    result = run_cli("run", "--config", toml)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "UTF-8")


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc/passwd", "~root", "..", ""])
def test_safe_join_refuses_escapes(tmp_path, name):
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, name)


def test_safe_join_refuses_a_symlink_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (base / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        safe_join(base, "link")
    assert safe_join(base, "fine") == base / "fine"


@pytest.mark.parametrize("name", ["../escape", "x/../../y", "/abs", ".hidden"])
def test_run_name_cannot_leave_the_output_directory(tmp_path, name):
    out = tmp_path / "runs"
    result = run_cli("run", *fast_args(), "--out", out, "--name", name)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--name")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "y").exists()
