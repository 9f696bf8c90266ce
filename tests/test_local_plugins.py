"""Local plugin modules: `stratum --plugin`, `stratum run --plugin`, STRATUM_PLUGINS, bench workers."""

from __future__ import annotations

import itertools
import sqlite3
import textwrap

import pytest

from tests.conftest import assert_one_line_error, fast_args, run_cli

_COUNTER = itertools.count()

LOCAL = textwrap.dedent('''
    import attrs
    from torch import nn

    import stratum

    __version__ = "0.7"


    @attrs.frozen
    class TinyOptions:
        tiny_width: int = stratum.option(8, "tiny: hidden units.", min=1)


    def make_tiny(spec, options):
        n = 1
        for d in spec.input_shape:
            n *= d
        return nn.Sequential(nn.Flatten(), nn.Linear(n, options.tiny_width), nn.ReLU(),
                             nn.Linear(options.tiny_width, spec.num_outputs))


    @stratum.hookimpl
    def stratum_register_models():
        return [stratum.model("tiny", make_tiny, "A tiny MLP from a local file.", options=TinyOptions)]
''')

TINY = ["--model", "tiny", "--tiny-width", "4", "--epochs", "1", "--steps-per-epoch", "2", "--threads", "1", "--quiet"]


def _write(tmp_path, source=LOCAL, stem=None):
    stem = stem or f"localplug{next(_COUNTER)}"
    path = tmp_path / f"{stem}.py"
    path.write_text(source)
    return path


@pytest.mark.parametrize("how", ["group-file", "run-file", "run-file-equals", "env-file", "group-module", "env-module"])
def test_a_local_plugin_loads_for_run_and_its_options_become_flags(tmp_path, monkeypatch, how):
    path = _write(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = path.stem if how.endswith("module") else str(path)
    env = None
    json_path = tmp_path / "s.json"
    tail = [*TINY, "--json", json_path]
    if how == "group-file" or how == "group-module":
        args = ["--plugin", spec, "run", *tail]
    elif how == "run-file":
        args = ["run", "--plugin", spec, *tail]
    elif how == "run-file-equals":
        args = ["run", *tail, f"--plugin={spec}"]
    else:
        args, env = ["run", *tail], {"STRATUM_PLUGINS": f"{spec}"}
    result = run_cli(*args, env=env)
    assert result.exit_code == 0, result
    import json

    summary = json.loads(json_path.read_text())
    assert summary["model"] == "tiny" and summary["config"]["tiny_width"] == 4
    assert summary["components"]["model"]["plugin"] == path.stem
    local = [p for p in summary["environment"]["plugins"] if p["origin"] == "local"]
    assert [(p["name"], p["version"]) for p in local] == [(path.stem, "0.7")]


@pytest.mark.parametrize("command", [["list", "model"], ["plugins"], ["run", "--help-all"]])
def test_local_plugins_show_in_list_plugins_and_help(tmp_path, command):
    path = _write(tmp_path)
    result = run_cli("--plugin", path, *command)
    assert result.exit_code == 0, result
    if command == ["plugins"]:
        row = next(line for line in result.stdout.splitlines() if line.startswith(path.stem))
        assert row.split()[1:4] == ["local", "0.7", "loaded"] and str(path) in row
    elif command[0] == "list":
        assert "tiny" in result.stdout and f"[{path.stem}]" in result.stdout
    else:
        assert "--tiny-width" in result.stdout and "--plugin" in result.stdout


def test_without_the_plugin_its_model_is_unknown(tmp_path):
    result = run_cli("run", *TINY[:2], "--epochs", "1")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "unknown model 'tiny'")


BAD = {
    "missing-file": (lambda d: str(d / "nope.py"), "no such file"),
    "directory": (lambda d: str(d) + "/", "is a directory"),
    "not-python": (lambda d: _write_raw(d / "notes.txt", "x"), "not a .py file"),
    "syntax-error": (lambda d: _write_raw(d / "broken.py", "def (:\n"), "SyntaxError"),
    "raises-on-import": (lambda d: _write_raw(d / "raiser.py", "raise RuntimeError('no import today')\n"),
                         "RuntimeError: no import today"),
    "exits-on-import": (lambda d: _write_raw(d / "exiter.py", "import sys\nsys.exit(3)\n"), "sys.exit(3)"),
    "missing-module": (lambda d: "no_such_module_xyz.sub", "no module named 'no_such_module_xyz'"),
    "bad-module-name": (lambda d: "not a module!", "not a module name"),
    "hook-typo": (lambda d: _write_raw(d / "typo.py", "import stratum\n@stratum.hookimpl\n"
                                       "def stratum_register_model():\n    return []\n"),
                  "did you mean 'stratum_register_models'"),
    "name-taken": (lambda d: _write_raw(d / "zoo.py", LOCAL), "a plugin named 'zoo' is loaded already"),
    "component-collision": (lambda d: _write_raw(d / "clash.py", LOCAL.replace('"tiny"', '"mlp"')), "mlp"),
    "reserved-option": (lambda d: _write_raw(d / "reserved.py", LOCAL.replace("tiny_width: int", "plugin: int")),
                        "plugin"),
}


def _write_raw(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("where", ["group", "run", "env"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_local_plugin_is_one_error_line(tmp_path, case, where):
    make, fragment = BAD[case]
    spec = make(tmp_path)
    if where == "group":
        result = run_cli("--plugin", spec, "list", "model")
    elif where == "run":
        result = run_cli("run", "--plugin", spec, *fast_args(epochs=1, steps_per_epoch=2))
    else:
        result = run_cli("plugins", env={"STRATUM_PLUGINS": spec})
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, fragment)


def test_bench_workers_load_the_local_plugin(tmp_path):
    path = _write(tmp_path)
    db = tmp_path / "b.sqlite"
    result = run_cli("--plugin", path, "bench", "--strategies", "sgd", "--models", "tiny", "--seeds", "1",
                     "--epochs", "1", "--steps-per-epoch", "2", "--workers", "1", "--db", db, "--quiet", "--no-report")
    assert result.exit_code == 0, result
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT status, error FROM runs").fetchall()
    assert rows and all(status == "done" for status, _ in rows), rows


def test_a_failing_local_plugin_is_named_with_its_path(tmp_path):
    path = _write(tmp_path, LOCAL.replace("    n = 1\n", "    raise RuntimeError('factory bug')\n"))
    result = run_cli("run", "--plugin", path, *TINY)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, f"model 'tiny' from plugin '{path.stem}' (local {path})", "factory bug")
