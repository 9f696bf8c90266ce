"""Run tracking (issue 13, item 4): the logger kind, the csv / tensorboard / mlflow loggers and
the guard that keeps a failing logger from stopping training.

MLflow is exercised for real: runs log into MLflow's own local file store under tmp_path and are
read back with ``mlflow.tracking.MlflowClient``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import sys
import textwrap

import pytest

import stratum
from stratum.engine import Trainer
from tests.conftest import REPO, assert_one_line_error, run_cli

TINY = ["--model", "mlp", "--hidden", "16", "--epochs", "2", "--steps-per-epoch", "2", "--threads", "1", "--quiet"]


@pytest.fixture
def mlflow_env():
    """The logger may set MLFLOW_ALLOW_FILE_STORE for a file store; leave the environment as it was."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    yield
    if before is None:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
    else:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------
# csv
# ---------------------------------------------------------------------------


def test_csv_writes_one_row_per_epoch_with_the_history_keys(pm, make_cfg, tmp_path):
    summary = Trainer(pm).run(make_cfg(log=["csv"], out=str(tmp_path / "r"), epochs=3, steps_per_epoch=2))
    path = tmp_path / "r" / "metrics.csv"
    assert summary["metrics_csv"] == str(path)
    rows = _rows(path)
    history = summary["history"]
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in history]
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:len(history[0])] == list(history[0])  # the first row's keys, in its order
    for row, record in zip(rows, history):
        assert float(row["val_acc"]) == pytest.approx(record["val_acc"], rel=1e-12)
        assert row["mode"] == record["mode"]
    assert "logger_errors" not in summary


def test_csv_resume_continues_the_file_without_repeating_epochs(pm, make_cfg, tmp_path):
    out = tmp_path / "r"
    cfg = dict(log=["csv"], out=str(out), steps_per_epoch=2)
    Trainer(pm).run(make_cfg(epochs=2, **cfg))
    saved = (out / "checkpoint.pt").read_bytes()  # after epoch 2
    Trainer(pm).run(make_cfg(epochs=3, resume=True, **cfg))
    assert [r["epoch"] for r in _rows(out / "metrics.csv")] == ["1", "2", "3"]
    (out / "checkpoint.pt").write_bytes(saved)  # back to epoch 2: the row of epoch 3 is stale
    summary = Trainer(pm).run(make_cfg(epochs=4, resume=True, **cfg))
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert [float(r["val_acc"]) for r in rows] == pytest.approx([h["val_acc"] for h in summary["history"]])


def test_csv_keeps_finished_epochs_and_widens_its_header_for_a_new_key(pm, make_cfg, tmp_path):
    class LateKey:
        @stratum.hookimpl(tryfirst=True)  # before the logger: epoch 2's row brings a new key
        def stratum_epoch_end(self, run, epoch, record):
            if epoch == 2:
                record["late"] = {"a": 1.5}

    summary = Trainer(pm, extra_plugins=[("late", LateKey())]).run(
        make_cfg(log=["csv"], out=str(tmp_path / "r"), epochs=3, steps_per_epoch=1))
    assert "logger_errors" not in summary
    rows = _rows(tmp_path / "r" / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]  # epoch 1 survived the rewrite
    assert [r["late.a"] for r in rows] == ["", "1.5", ""]
    assert [float(r["val_acc"]) for r in rows] == pytest.approx([h["val_acc"] for h in summary["history"]])


def test_loggers_are_chosen_in_toml_too(tmp_path):
    (tmp_path / "run.toml").write_text(f'log = ["csv"]\nout = "{tmp_path / "r"}"\n')
    result = run_cli("run", *TINY, "--config", tmp_path / "run.toml")
    assert result.exit_code == 0, result
    assert [r["epoch"] for r in _rows(tmp_path / "r" / "metrics.csv")] == ["1", "2"]


def test_csv_without_a_run_directory_is_refused_before_training():
    result = run_cli("run", *TINY, "--log", "csv")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--log csv needs a run directory", "--out")


# ---------------------------------------------------------------------------
# The guard: a logger failure is reported once and never stops training
# ---------------------------------------------------------------------------

FAILING = textwrap.dedent('''
    import stratum

    CALLS = []


    class Failing:
        @stratum.hookimpl
        def stratum_epoch_end(self, run, epoch, record):
            CALLS.append(epoch)
            raise RuntimeError("disk on fire")


    class Deciding:
        @stratum.hookimpl
        def stratum_decide_switch(self, run, epoch, history):
            return None


    @stratum.hookimpl
    def stratum_register_loggers():
        return [stratum.logger("failing", lambda run, options: Failing(), "raises at every epoch end"),
                stratum.logger("deciding", lambda run, options: Deciding(), "implements a firstresult hook")]
''')


@pytest.fixture
def failing_plugin(tmp_path):
    path = tmp_path / "failing_logger.py"
    path.write_text(FAILING)
    return path


def test_a_failing_logger_is_reported_once_and_training_finishes(failing_plugin, tmp_path, capsys):
    args = dict(model="mlp", hidden=[16], epochs=3, steps_per_epoch=2, threads=1, quiet=True)
    plain = stratum.fit(**args).summary
    capsys.readouterr()
    result = stratum.fit(**args, log=["failing", "csv"], out=str(tmp_path / "r"), plugins=[str(failing_plugin)])
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "logger 'failing'" in line]
    assert len(warnings) == 1 and "RuntimeError: disk on fire" in warnings[0], err
    (module,) = [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(failing_plugin)]
    assert module.CALLS == [1]  # disabled after its first failure
    summary = result.summary
    assert summary["logger_errors"] == [{"logger": "failing", "hook": "stratum_epoch_end",
                                         "error": "RuntimeError: disk on fire"}]
    # training went on: the same result as without the logger, and the csv logger after it kept logging
    assert [h["val_acc"] for h in summary["history"]] == [h["val_acc"] for h in plain["history"]]
    assert len(_rows(tmp_path / "r" / "metrics.csv")) == 3


def test_an_unwritable_csv_discovered_mid_run_is_reported_and_the_run_finishes(pm, make_cfg, tmp_path, capsys):
    out = tmp_path / "r"

    class Saboteur:  # runs after the loggers: after epoch 1 the csv file becomes a directory
        @stratum.hookimpl
        def stratum_epoch_end(self, run, epoch, record):
            if epoch == 1:
                (out / "metrics.csv").unlink()
                (out / "metrics.csv").mkdir()

    summary = Trainer(pm, extra_plugins=[("saboteur", Saboteur())]).run(
        make_cfg(log=["csv"], out=str(out), epochs=3, steps_per_epoch=1))
    assert summary["epochs_run"] == 3 and (out / "checkpoint.pt").exists()
    (error,) = summary["logger_errors"]
    assert error["logger"] == "csv" and error["hook"] == "stratum_epoch_end"
    assert len([l for l in capsys.readouterr().err.splitlines() if "logger 'csv' failed" in l]) == 1


def test_a_logger_implementing_a_firstresult_hook_is_refused_in_one_line(failing_plugin):
    result = run_cli("--plugin", str(failing_plugin), "run", *TINY, "--log", "deciding")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "logger 'deciding'", "stratum_decide_switch", "loggers observe")


# ---------------------------------------------------------------------------
# tensorboard: the logger, and the deprecated --tensorboard DIR
# ---------------------------------------------------------------------------


def test_log_tensorboard_writes_into_the_run_directory_by_default(tmp_path):
    result = run_cli("run", *TINY, "--log", "tensorboard", "--out", tmp_path / "r", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result
    assert "deprecated" not in result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert os.path.dirname(summary["tensorboard_dir"]) == str(tmp_path / "r" / "tensorboard")
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(summary["tensorboard_dir"]))


def test_the_deprecated_tensorboard_flag_selects_the_logger_with_one_warning(tmp_path):
    result = run_cli("run", *TINY, "--tensorboard", tmp_path / "tb", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result
    lines = [l for l in result.stderr.splitlines() if "deprecated" in l]
    assert len(lines) == 1 and "--log tensorboard --tensorboard-dir DIR" in lines[0]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [c["name"] for c in summary["components"]["logger"]] == ["tensorboard"]  # once, not twice
    assert os.path.dirname(summary["tensorboard_dir"]) == str(tmp_path / "tb")


def test_log_tensorboard_without_a_directory_is_refused_in_one_line():
    result = run_cli("run", *TINY, "--log", "tensorboard")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--log tensorboard needs a place to write", "--tensorboard-dir")


# ---------------------------------------------------------------------------
# mlflow, on MLflow's own local file store
# ---------------------------------------------------------------------------


def test_mlflow_logs_params_metrics_tags_and_the_summary(tmp_path, mlflow_env):
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    result = stratum.fit(model="mlp", hidden=[16], epochs=3, steps_per_epoch=2, threads=1, quiet=True, lr=0.05,
                         log=["mlflow"], mlflow_uri=uri, mlflow_experiment="exp-a", name="first", out=str(tmp_path / "o"))
    summary = result.summary
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "exp-a"
    assert run.info.run_name == "first" and run.info.status == "FINISHED"
    assert run.data.tags["stratum.strategy"] == "sgd" and run.data.tags["stratum.model"] == "mlp"
    params = run.data.params
    assert params["lr"] == "0.05" and params["hidden"] == "16" and params["log"] == "mlflow"
    assert set(params) == set(summary["config"])  # the whole resolved config
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(h["epoch"], h["val_acc"]) for h in summary["history"]]
    assert run.data.metrics["final.best_val_acc"] == summary["best_val_acc"]
    local = client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path))
    logged = json.loads(open(local).read())
    assert logged["history"] == summary["history"] and logged["best_val_acc"] == summary["best_val_acc"]


def test_mlflow_resume_continues_the_same_mlflow_run(pm, make_cfg, tmp_path, mlflow_env):
    from mlflow.tracking import MlflowClient

    cfg = dict(log=["mlflow"], out=str(tmp_path / "o"), steps_per_epoch=2)  # default store: <out>/mlruns
    first = Trainer(pm).run(make_cfg(epochs=2, **cfg))
    second = Trainer(pm).run(make_cfg(epochs=3, resume=True, **cfg))
    assert first["mlflow_run_id"] == second["mlflow_run_id"]
    client = MlflowClient(tracking_uri=(tmp_path / "o" / "mlruns").as_uri())
    steps = [m.step for m in client.get_metric_history(second["mlflow_run_id"], "val_acc")]
    assert steps == [1, 2, 3]


def test_mlflow_missing_is_refused_before_training_with_the_extra_to_install(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    trained = []

    class Watch:
        @stratum.hookimpl
        def stratum_fit_start(self, run):
            trained.append(run)

    with pytest.raises(stratum.ConfigError, match=re.escape("pip install 'stratum[mlflow]'")):
        stratum.fit(model="mlp", hidden=[16], epochs=1, steps_per_epoch=1, threads=1, quiet=True,
                    log=["mlflow"], out=str(tmp_path / "o"), callbacks=[Watch()])
    assert trained == []


def test_an_mlflow_store_that_cannot_be_opened_is_refused_in_one_line(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    result = run_cli("run", *TINY, "--log", "mlflow", "--mlflow-uri", (tmp_path / "file" / "mlruns").as_uri())
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "cannot open the MLflow tracking store")


# ---------------------------------------------------------------------------
# The documented example (docs/measurement.md, "Run tracking: loggers")
# ---------------------------------------------------------------------------


def test_the_measurement_doc_example_runs(tmp_path, mlflow_env):
    doc = (REPO / "docs" / "measurement.md").read_text()
    section = doc[doc.index("## Run tracking: loggers"):]
    shell = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line.split("#")[0]) for line in shell.splitlines() if line.startswith("stratum run ")]
    assert commands
    for args in commands:
        result = run_cli(*args[1:], "--epochs", "2", "--steps-per-epoch", "2", "--threads", "1", "--quiet")
        assert result.exit_code == 0, result
    script = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(script, "measurement.md", "exec"), namespace)  # reads back what the commands logged
    assert namespace["rows"] and namespace["history"]
