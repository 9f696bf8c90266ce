"""The example plugin packages of docs/plugin-examples.md: one per component kind, installed and run.

Every package in tests/fixtures/stratum_example_* is pip-installed once (one pip call,
``--no-deps --no-build-isolation --target``) into a temporary directory that is put on
``sys.path`` for this module only: importlib.metadata then discovers the entry points
exactly as it would for any installed distribution, and the real CLI (``run_cli``) lists
and runs each component. The docs show every file of every package verbatim, and the
commands they suggest are the ones run here, so the docs cannot drift from working code.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stratum.components import KINDS
from tests.conftest import REPO, run_cli

FIXTURES = REPO / "tests" / "fixtures"
EXAMPLES_DOC = REPO / "docs" / "plugin-examples.md"
GUIDE = REPO / "docs" / "plugin-guide.md"

# kind -> (package folder, component name, entry-point (plugin) name)
EXAMPLES = {
    "strategy": ("stratum_example_plugin", "sign-sgd", "example"),
    "model": ("stratum_example_plugin", "tiny-cnn", "example"),
    "dataset": ("stratum_example_dataset", "spirals", "example-dataset"),
    "initializer": ("stratum_example_initializer", "scaled-uniform", "example-initializer"),
    "optimizer": ("stratum_example_optimizer", "signum", "example-optimizer"),
    "schedule": ("stratum_example_schedule", "inverse-sqrt", "example-schedule"),
    "regressor": ("stratum_example_regressor", "poly", "example-regressor"),
    "policy": ("stratum_example_policy", "alternate", "example-policy"),
    "profiler": ("stratum_example_profiler", "grad-norm", "example-profiler"),
    "feature_set": ("stratum_example_feature_set", "magnitude", "example-feature-set"),
    "extension": ("stratum_example_extension", "grad-clip", "example-extension"),
    "augmentation": ("stratum_example_augmentation", "cutout", "example-augmentation"),
    "logger": ("stratum_example_logger", "jsonl", "example-logger"),
}
# What makes every run tiny (appended to the docs' commands; a repeated flag takes the last value).
TINY = ["--hidden", "16", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "32", "--threads", "1", "--quiet"]
# Strategy focus needs a source run for its prior, and its policy needs epochs to switch.
FOCUS_KINDS = {"regressor", "policy", "feature_set"}


@pytest.fixture(scope="session")
def example_site(tmp_path_factory):
    """Every example package, pip-installed into one directory (once per session)."""
    target = tmp_path_factory.mktemp("examples-site")
    build = tmp_path_factory.mktemp("examples-build")
    folders = sorted({folder for folder, _, _ in EXAMPLES.values()})
    for folder in folders:  # build from copies: setuptools writes build/ and *.egg-info beside sources
        subprocess.run(["cp", "-r", str(FIXTURES / folder), str(build / folder)], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), *(str(build / folder) for folder in folders)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture(scope="module")
def installed(example_site):
    """The installed examples on sys.path for this module's tests, and off it afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(example_site))
        yield example_site
    importlib.invalidate_caches()


def _doc_for(kind: str) -> str:
    return GUIDE.read_text() if EXAMPLES[kind][0] == "stratum_example_plugin" else EXAMPLES_DOC.read_text()


def _sources(kind: str) -> list:
    folder = FIXTURES / EXAMPLES[kind][0]
    return [folder / "pyproject.toml", *sorted(p for p in folder.rglob("*.py") if "build" not in p.parts)]


def _try_it(kind: str) -> list[list[str]]:
    """The ``stratum run`` commands of the kind's "Try it" block in docs/plugin-examples.md."""
    doc = EXAMPLES_DOC.read_text()
    folder = EXAMPLES[kind][0]
    section = doc[doc.index(f"`tests/fixtures/{folder}/pyproject.toml`"):]
    block = re.search(r"Try it:\n\n```sh\n(.*?)```", section, re.S).group(1)
    commands = []
    for line in block.splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("stratum run "):
            commands.append(shlex.split(line)[2:])  # after "stratum run"
    return commands


def test_one_example_package_per_kind():
    assert set(EXAMPLES) == set(KINDS)
    for kind, (folder, _, plugin) in EXAMPLES.items():
        assert (FIXTURES / folder / "pyproject.toml").exists(), kind
        assert f"{plugin} = " in (FIXTURES / folder / "pyproject.toml").read_text(), kind


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_docs_show_each_package_verbatim(kind):
    doc = _doc_for(kind)
    for path in _sources(kind):
        assert path.read_text().rstrip() in doc, f"{path.relative_to(REPO)} is not shown verbatim in the docs"


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_listed_under_its_kind_with_its_plugin(installed, kind):
    _, name, plugin = EXAMPLES[kind]
    result = run_cli("list", kind)
    assert result.exit_code == 0, result
    line = next((l for l in result.stdout.splitlines() if l.split()[:1] == [name]), None)
    assert line is not None, result.stdout
    assert f"[{plugin}]" in line


def _evidence(kind: str, summary: dict) -> None:
    """The summary shows that the kind's example component was used, and did its job."""
    _, name, plugin = EXAMPLES[kind]
    components = summary["components"]
    if kind in ("strategy", "model", "dataset", "initializer", "optimizer", "augmentation"):
        assert components[kind]["name"] == name and components[kind]["plugin"] == plugin
    if kind in ("profiler", "extension", "logger"):
        assert {"name": name, "plugin": plugin} in [{"name": c["name"], "plugin": c["plugin"]} for c in components[kind]]
    if kind == "strategy":
        assert summary["sign_steps"] == summary["global_steps"] > 0
    if kind == "dataset":
        assert summary["data"]["train"] + summary["data"]["val"] == summary["config"]["spirals_train"]
    if kind == "optimizer":
        assert summary["config"]["lr"] == 0.001  # the component's default for a core option
    if kind == "regressor":
        assert summary["regressor"] == name and summary["config"]["poly_degree"] == 5
        assert summary["fit_r2"] and summary["focus"]["predicted_tensors"]
    if kind == "feature_set":
        assert summary["features"] == name and summary["focus"]["predicted_tensors"]
    if kind == "policy":
        assert summary["policy"] == name
        assert [s["to"] for s in summary["switches"]] == ["focus"]  # after the --alternate-warmup 2 epochs
        assert [r["mode"] for r in summary["history"]] == ["sgd", "sgd", "focus"]
    if kind == "profiler":
        means = summary["grad_norm"]["epoch_means"]
        assert len(means) == summary["epochs_run"] and all(m > 0 for m in means)
        assert [r["grad_norm"] for r in summary["history"]] == means
    if kind == "schedule":
        assert components[kind]["name"] == name and components[kind]["plugin"] == plugin
        # TINY: one epoch of 2 steps; step 0 warms up to half of lr(0) = --lr, step 1 is at lr(0)
        assert [(r["lr_first"], r["lr"]) for r in summary["history"]] == [(0.01 / 2, 0.01)]
    if kind == "extension":
        assert summary["grad_clip"]["max_norm"] == 1.0 and summary["grad_clip"]["clipped_steps"] >= 0
    if kind == "logger":  # one JSON line per epoch, each the epoch's history row
        lines = Path(summary["jsonl_file"]).read_text().splitlines()
        assert [json.loads(line) for line in lines] == summary["history"]
    if kind == "augmentation":
        assert summary["config"]["augment"] == name and summary["config"]["cutout_size"] == 3


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_the_documented_command_runs_the_component(installed, kind, tmp_path):
    if kind in ("strategy", "model"):  # the guide's example command
        commands = [["--strategy", "sign-sgd", "--sign-scale", "0.5", "--model", "tiny-cnn", "--tiny-channels", "4"]]
    else:
        commands = _try_it(kind)
    assert commands, f"docs/plugin-examples.md shows no `stratum run` for {kind}"
    extra = ["--epochs", "3", "--prior-epochs", "1"] if kind in FOCUS_KINDS else []
    for args in commands:
        out = tmp_path / "summary.json"
        result = run_cli("run", *args, *TINY, *extra, "--json", out)
        assert result.exit_code == 0, result
        _evidence(kind, json.loads(out.read_text()))


def test_example_strategy_state_survives_resume(installed, tmp_path):
    """sign-sgd's state_dict holds its step count: a resumed run continues it, not restarts it."""
    args = ["--strategy", "sign-sgd", "--model", "tiny-cnn", "--tiny-channels", "4", *TINY, "--out", tmp_path / "r"]
    assert run_cli("run", *args).exit_code == 0
    result = run_cli("run", *args, "--epochs", "2", "--resume")
    assert result.exit_code == 0, result
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["global_steps"] == 4 and summary["sign_steps"] == 4


def test_the_regressor_example_registers_without_importing_torch(example_site):
    """Its factory is a "module:attr" string: listing it imports neither torch nor the regressor module."""
    script = (
        "import sys\n"
        "from stratum.plugin_manager import StratumPluginManager\n"
        "import stratum_example_regressor as plugin\n"
        "pm = StratumPluginManager()\n"
        "pm.register(plugin, name='example-regressor')\n"
        "assert pm.registries.get('regressor', 'poly').factory.target == 'stratum_example_regressor_poly:from_options'\n"
        "print(sorted(m for m in ('torch', 'stratum_example_regressor_poly') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(example_site), os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
