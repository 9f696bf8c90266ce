"""A real third-party plugin: installed, discovered through importlib.metadata, listed and run.

The package in tests/fixtures/stratum_example_plugin is pip-installed into a
temporary target directory; stratum subprocesses see it through PYTHONPATH,
exactly as they would see any installed distribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_subprocess

FIXTURE = REPO / "tests" / "fixtures" / "stratum_example_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    subprocess.run(["cp", "-r", str(FIXTURE), str(build / "pkg")], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(build / "pkg")],
        check=True, capture_output=True, text=True,
    )
    assert list(target.glob("stratum_example_plugin-0.2.0.dist-info"))
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def test_discovered_and_listed(installed):
    result = run_subprocess("list", "strategy", env=installed)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if "sign-sgd" in l)
    assert "[example]" in line and "signSGD" in line
    models = run_subprocess("list", "model", env=installed).stdout
    assert "tiny-cnn" in models


def test_plugins_command_shows_origin_and_version(installed):
    result = run_subprocess("plugins", env=installed)
    line = next(l for l in result.stdout.splitlines() if l.startswith("example"))
    assert "stratum-example-plugin" in line and "0.2.0" in line and "loaded" in line


def test_runs_by_name_with_its_own_options(installed, tmp_path):
    out = tmp_path / "s.json"
    result = run_subprocess(
        "run", "--strategy", "sign-sgd", "--sign-scale", "0.5", "--model", "tiny-cnn", "--tiny-channels", "4",
        "--epochs", "1", "--steps-per-epoch", "5", "--lr", "0.01", "--quiet", "--json", out, env=installed,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["strategy"] == "sign-sgd" and summary["model"] == "tiny-cnn"
    assert summary["config"]["sign_scale"] == 0.5 and summary["config"]["tiny_channels"] == 4


def test_autoload_off_hides_it_but_keeps_builtins(installed):
    env = {**installed, "STRATUM_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = run_subprocess("list", "strategy", env=env)
    assert result.returncode == 0
    assert "sign-sgd" not in result.stdout and "sgd" in result.stdout
    plugins = run_subprocess("plugins", env=env).stdout
    assert "skipped" in next(l for l in plugins.splitlines() if l.startswith("example"))
