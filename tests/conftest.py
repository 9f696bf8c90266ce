"""Shared test helpers.

Tests train tiny models on the shipped digits set so the whole suite stays
within a few minutes on 2 cores. ``run_cli`` runs the real command in-process
(click's CliRunner); ``run_subprocess`` runs ``python -m stratum`` for real
exit codes and signals.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from stratum.cli import cli
from stratum.config import make_config, plugin_option_fields
from stratum.plugin_manager import create_plugin_manager

# Keep each xdist worker to one thread: two workers on two cores, no oversubscription.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

# A run that finishes in about a second.
FAST = dict(model="mlp", hidden=[32], dataset="digits", epochs=2, steps_per_epoch=5, batch_size=32, threads=1)


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path_factory, monkeypatch):
    """Every test runs in a fresh, empty working directory of its own.

    A run whose output path is relative (``out = "r"`` in a fuzzed TOML, a default
    such as ``bench.sqlite``) then writes into that directory, never into the
    checkout. ``.ci/run`` fails when the suite leaves the checkout dirty.
    """
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def pm():
    return create_plugin_manager()


@pytest.fixture
def make_cfg(pm):
    """``make_cfg(**overrides)`` -> a validated RunConfig based on FAST."""

    def _make(**overrides):
        values = {**FAST, **overrides}
        return make_config(values, plugin_fields=plugin_option_fields(pm.registries.all()))

    return _make


class CliResult:
    def __init__(self, exit_code, stdout, stderr):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr

    def __repr__(self):
        return f"CliResult(exit={self.exit_code}, stderr={self.stderr[-500:]!r})"


def run_cli(*args, env=None) -> CliResult:
    runner = CliRunner()
    result = runner.invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def fast_args(**overrides) -> list[str]:
    values = {**FAST, **overrides}
    args = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(map(str, value))]
        else:
            args += [flag, str(value)]
    return args


def run_subprocess(*args, env=None, timeout=120, cwd=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "stratum", *map(str, args)], capture_output=True, text=True,
        env=full_env, timeout=timeout, cwd=cwd,
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip() and "plugin warning" not in line]
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert lines[0].startswith("stratum: error: "), lines[0]
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


class SizedBatches:
    """A batch source (``len``, ``epoch(generator, start)``) yielding batches of the given sizes;
    each batch is ``(x, x.clone())`` with ``x`` the running sample indices, so shards can be checked."""

    def __init__(self, sizes, *, drop_single: bool = False):
        self.sizes = sizes
        self.drop_single = drop_single
        self.dropped_tail_samples = 0

    def __len__(self):
        return len(self.sizes)

    def epoch(self, generator, start=0):
        offset = 0
        for n in self.sizes[start:]:
            x = torch.arange(offset, offset + n)
            offset += n
            yield x, x.clone()
