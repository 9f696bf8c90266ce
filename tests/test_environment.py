"""summary["environment"] and summary["versions"]: git commits, plugins, CPU/GPU, library versions."""

from __future__ import annotations

import importlib.metadata as md
import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import stratum
from stratum import environment
from tests.conftest import FAST, fast_args, run_cli

QUICK = {**FAST, "epochs": 1, "steps_per_epoch": 2, "quiet": True}

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _summary_from_cli(*extra, env=None) -> dict:
    result = run_cli("run", *fast_args(epochs=1, steps_per_epoch=2), "--quiet", "--json", "s.json", *extra, env=env)
    assert result.exit_code == 0, result
    return json.loads(Path("s.json").read_text())


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _expected_version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def test_the_summary_records_library_versions_cpu_and_plugins():
    summary = _summary_from_cli()
    versions = summary["versions"]
    assert versions["torch"] == torch.__version__
    assert versions["python"] == platform.python_version()
    assert versions["stratum"] == stratum.__version__
    for name in ("numpy", "xgboost"):
        assert versions[name] == _expected_version(name)
    env = summary["environment"]
    assert env["cpu"]["threads"] == 1 == summary["threads"]
    assert env["cpu"]["logical_cores"] >= 1
    assert env["cpu"]["model"] == environment.cpu_model() and env["cpu"]["model"]
    names = {p["name"]: p for p in env["plugins"]}
    assert {"zoo", "sgd", "data"} <= set(names)
    assert names["zoo"]["origin"] == "builtin" and names["zoo"]["dist"] == "stratum"
    # which plugin provides each component: summary["components"], not repeated in environment
    assert summary["components"]["model"]["plugin"] == "zoo"
    assert "components" not in env


def test_cpu_model_comes_from_cpuinfo_or_falls_back(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Imaginary CPU @ 9.9GHz\n")
    assert environment.cpu_model(str(info)) == "Imaginary CPU @ 9.9GHz"
    monkeypatch.setattr(platform, "processor", lambda: "fallback-arch")
    assert environment.cpu_model(str(tmp_path / "missing")) == "fallback-arch"
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert environment.cpu_model(str(tmp_path / "missing")) is None


def test_the_gpu_name_is_recorded_when_cuda_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"Fake GPU {index}")
    result = stratum.fit(**QUICK, device="cpu")
    assert result.summary["environment"]["gpu"] == "Fake GPU 0"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: (_ for _ in ()).throw(RuntimeError("driver")))
    assert environment.gpu_name() is None  # a broken driver never fails a run


def test_no_gpu_records_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert stratum.fit(**QUICK, device="cpu").summary["environment"]["gpu"] is None


@needs_git
def test_git_commit_and_dirty_flag_of_the_working_directory_repository():
    cwd = Path.cwd()
    _git(cwd, "init", "-q")
    Path("experiment.py").write_text("x = 1\n")
    _git(cwd, "add", "experiment.py")
    _git(cwd, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    head = _git(cwd, "rev-parse", "HEAD")
    clean = stratum.fit(**QUICK).summary["environment"]["git"]["cwd"]
    assert clean == {"path": str(cwd.resolve()), "commit": head, "dirty": False}
    Path("experiment.py").write_text("x = 2\n")
    dirty = _summary_from_cli()["environment"]["git"]["cwd"]
    assert dirty["commit"] == head and dirty["dirty"] is True


@needs_git
def test_git_commit_of_the_stratum_checkout():
    git = stratum.fit(**QUICK).summary["environment"]["git"]
    assert git["cwd"] is None  # the test's working directory is no repository
    package = Path(stratum.__file__).resolve().parent
    top = subprocess.run(["git", "-C", str(package), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != package.parent:
        assert git["stratum"] is None  # an installed copy reports no one else's repository
        return
    assert git["stratum"]["commit"] == _git(package, "rev-parse", "HEAD")
    assert git["stratum"]["path"] == str(package.parent) and isinstance(git["stratum"]["dirty"], bool)


@pytest.mark.parametrize("failure", ["git-missing", "git-hangs", "git-fails"])
def test_a_missing_or_broken_git_never_fails_the_run(monkeypatch, failure):
    real_run = subprocess.run

    def fake_run(command, *args, **kwargs):
        if command and command[0] == "git":
            if failure == "git-missing":
                raise FileNotFoundError(2, "No such file or directory", "git")
            if failure == "git-hangs":
                raise subprocess.TimeoutExpired(command, kwargs.get("timeout"))
            return subprocess.CompletedProcess(command, 128, "", "fatal: broken")
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(environment.subprocess, "run", fake_run)
    summary = _summary_from_cli()
    assert summary["environment"]["git"] == {"stratum": None, "cwd": None}
    assert summary["epochs_run"] == 1


def test_a_local_plugin_is_recorded_with_its_path_and_version(tmp_path):
    plugin = tmp_path / "envplug.py"
    plugin.write_text('import stratum\n__version__ = "2.5"\n\n@stratum.hookimpl\ndef stratum_fit_start(run):\n    pass\n')
    summary = _summary_from_cli(env={"STRATUM_PLUGINS": str(plugin)})
    (row,) = [p for p in summary["environment"]["plugins"] if p["name"] == "envplug"]
    assert row == {"name": "envplug", "origin": "local", "dist": None, "version": "2.5", "module": str(plugin)}
