"""Start-up stays light: the commands that only describe things never import torch.

Each command runs in a fresh interpreter (a subprocess) through ``stratum.cli``,
and the test reads ``sys.modules`` afterwards: behaviour, not time (the time is
measured by benchmarks/startup.py, figures in docs/performance.md).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "torchvision", "numpy", "sklearn", "xgboost", "matplotlib", "scipy")

# Runs argv through stratum's CLI in this interpreter, then reports the heavy modules loaded.
_WRAPPER = textwrap.dedent(f"""
    import json, sys
    argv = json.loads(sys.argv[1])
    code = 0
    if argv and argv[0] == "--import":
        import importlib
        for name in argv[1:]:
            importlib.import_module(name)
    else:
        from stratum.cli import cli
        try:
            code = cli.main(args=argv, prog_name="stratum", standalone_mode=False)
        except SystemExit as exc:
            code = exc.code
    print("HEAVY-MODULES " + json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)
    sys.exit(code or 0)
""")


def _heavy_after(argv: list[str], env: dict | None = None) -> tuple[list[str], subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(argv)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    marker = [line for line in done.stderr.splitlines() if line.startswith("HEAVY-MODULES ")]
    assert marker, done.stderr
    return json.loads(marker[-1].split(" ", 1)[1]), done


def _builtin_entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in md.entry_points(group="stratum")
            if ep.dist is not None and ep.dist.metadata["Name"] == "stratum"}


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["list"],
    ["plugins"],
    ["run", "--help"],
    ["run", "--strategy", "focus", "--help"],
    ["--version"],
    ["list", "strategy"],
    ["bench", "--help"],
    ["report", "--help"],
], ids=" ".join)
def test_describing_commands_import_no_heavy_module(argv):
    heavy, done = _heavy_after(argv)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert heavy == [], f"`stratum {' '.join(argv)}` imported {heavy}"


@pytest.mark.parametrize("modules", [["stratum"], ["stratum.cli"], ["stratum.components", "stratum.plugin_manager"]],
                         ids=" ".join)
def test_importing_stratum_imports_no_heavy_module(modules):
    heavy, done = _heavy_after(["--import", *modules])
    assert done.returncode == 0, done.stderr
    assert heavy == []


@pytest.mark.parametrize("name", sorted(_builtin_entry_points()))
def test_each_builtin_plugin_registers_without_heavy_imports(name):
    """Import the entry-point module and call every registration hook of it (stratum list does)."""
    script = textwrap.dedent(f"""
        import importlib, sys, warnings
        warnings.simplefilter("error")
        from stratum.plugin_manager import StratumPluginManager
        pm = StratumPluginManager()
        pm.register(importlib.import_module({_builtin_entry_points()[name]!r}), name={name!r})
        components = list(pm.registries.all())
        assert components or pm.hook.stratum_register_commands.get_hookimpls(), "registered nothing"
    """)
    done = subprocess.run([sys.executable, "-c", script + textwrap.dedent(f"""
        print("HEAVY-MODULES", [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)
    """)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY-MODULES []" in done.stderr, done.stderr


def test_a_component_used_imports_its_factory_module():
    """The other side of lazy registration: using a component imports its code."""
    script = textwrap.dedent("""
        import sys
        from stratum.plugin_manager import create_plugin_manager
        pm = create_plugin_manager()
        component = pm.registries.get("regressor", "linear")
        assert "stratum_plugins.focus.regressors" not in sys.modules
        regressor = component.factory(component.options())
        assert type(regressor).__name__ == "RidgeRegressor" and "torch" in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_plugin_guides_example_package_registers_without_torch():
    """docs/plugin-guide.md's complete example is what plugin authors copy: it must be light."""
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "stratum_example_plugin")
    env = {"PYTHONPATH": fixture + os.pathsep + os.environ.get("PYTHONPATH", "")}
    heavy, done = _heavy_after(["--plugin", "stratum_example", "list", "strategy"], env)
    assert done.returncode == 0, done.stderr
    assert "sign-sgd" in done.stdout and heavy == [], (heavy, done.stdout)


def test_stratum_plugins_names_a_plugin_that_imports_torch_when_it_loads(tmp_path):
    plugin = tmp_path / "heavyplug.py"
    plugin.write_text("import torch\nimport stratum\n\n\n@stratum.hookimpl\ndef stratum_register_models():\n    return []\n")
    light = tmp_path / "lightplug.py"
    light.write_text("import stratum\n\n\n@stratum.hookimpl\ndef stratum_register_models():\n    return []\n")
    done = subprocess.run([sys.executable, "-m", "stratum", "--plugin", str(plugin), "--plugin", str(light), "plugins"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "'heavyplug' imports torch" in notes[0], done.stdout
    assert done.stdout.splitlines()[0].split() == ["plugin", "origin", "version", "status", "module"]
