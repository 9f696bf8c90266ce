"""Robustness of the results store, the report and every name that becomes a path.

Classes (see docs/reliability.md):
A. results database names that are not files; bench workers that exit cleanly with work pending;
B. reading a results database from a read-only place;
C. stored tables, columns and JSON fields of the wrong shape (report, and bench resuming into them);
D. report options that parse but mean nothing (--target, --baseline, --bench, fractions);
E. labels and names that would escape their directory once they become paths;
F. TensorBoard logs named after the run and fit (not the clock), continued on resume.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest

from stratum.bench.matrix import RunPlan, run_id
from stratum.bench.store import ResultsStoreError, Store
from stratum.paths import safe_join, slug, unique_slug

from .bench_fixtures import summary
from .conftest import REPO, assert_one_line_error, fast_args, run_cli

# Hostile names: each must end up as one safe component inside the chosen directory.
HOSTILE = ["..", ".", "a/b", "/abs", "~x", "", "x" * 300, "a\x00b", "é中", "../../escape", "-rf", ".hidden", "a\\b"]

PLOTTED = ["..", "a/b", "/abs", "", "x" * 300]

GRADFLOW = {"layers": ["l1"], "epochs": [1, 2], "mean_grad_norm": [[0.1, 0.2]], "verdict": ["healthy"]}


def _store_with_labels(db: Path, labels: list[str]) -> Path:
    """One finished run per label (labels as a bench's [[variant]] names make them)."""
    with Store(db) as store:
        plans = []
        for i, label in enumerate(labels):
            values = {"strategy": "sgd", "seed": 0, "k": i}
            plans.append(RunPlan(run_id(values), i, label, {"variant": label}, {"variant": label, "seed": 0}, values))
        store.record_bench("b", {"settings": {}}, None)
        store.enqueue("b", plans, "s")
        for plan in plans:
            assert store.claim("s", "h:1:1")[0] == plan.run_id
            s = summary("sgd", 0, [50, 70], extra={"gradflow": GRADFLOW})
            store.finish(plan.run_id, "h:1:1", {"status": "done", "summary": s, "duration_s": 1.0})
    return db


def _known(db: Path) -> Path:
    from .test_report import known_bench

    return known_bench(db)


def _listing(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---------------------------------------------------------------------------
# A. names that are not files; workers that stop cleanly with runs pending
# ---------------------------------------------------------------------------


BAD_DB_NAMES = [":memory:", "file:x.sqlite", "file::memory:?cache=shared", "FILE:y.sqlite?mode=memory", "", "   ",
                "adir", "adir/", "newdir/", "/dev/null", "a\x00b.sqlite"]


@pytest.mark.parametrize("name", BAD_DB_NAMES)
def test_database_names_that_are_not_files_are_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    Path("adir").mkdir()
    bench = run_cli("bench", "--db", name, "--strategies", "sgd", "--seeds", "1", *fast_args(epochs=1), "--workers", "1")
    assert bench.exit_code == 2, bench
    assert_one_line_error(bench.stderr, "results database")
    report = run_cli("report", name)
    assert report.exit_code == 2, report
    assert_one_line_error(report.stderr, "results database")
    assert sorted(os.listdir(tmp_path)) == ["adir"] and not os.listdir("adir")  # nothing created anywhere


class _Progress:
    def update(self, counts, finished=None):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("target_name", ["debug", "info"])
def test_workers_that_exit_cleanly_with_runs_pending_end_the_bench(tmp_path, monkeypatch, target_name):
    """A worker exiting 0 without taking a run (it looked at another store) is a failed start."""
    import logging

    from stratum.bench import local

    # logging.debug/info accept the worker's arguments and return at once: exit code 0, nothing claimed.
    monkeypatch.setattr(local, "worker_main", getattr(logging, target_name))
    monkeypatch.setattr(local, "worker_context", lambda: __import__("multiprocessing").get_context("fork"))
    with Store(tmp_path / "w.sqlite") as store:
        plans = [RunPlan(run_id({"seed": i}), i, "sgd", {}, {"seed": i}, {"seed": i}) for i in range(2)]
        store.enqueue("b", plans, "s")
        started = time.monotonic()
        with pytest.raises(local.WorkersFailToStart, match="exited with code 0 while runs were still pending"):
            local.run_local(store, "s", workers=1, threads=1, block=(), progress=_Progress(), poll_s=0.05)
        assert time.monotonic() - started < 20
        assert store.session_counts("s")["pending"] == 2  # nothing was lost or marked done


def test_a_worker_never_creates_a_store_of_its_own(tmp_path):
    with pytest.raises(ResultsStoreError, match="not found"):
        Store(tmp_path / "gone.sqlite", must_exist=True)
    assert not (tmp_path / "gone.sqlite").exists()


# ---------------------------------------------------------------------------
# B. read-only places
# ---------------------------------------------------------------------------


def _without_permission_override():
    """In the child: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so that
    root (the tests run as root) meets file permission bits like any user after exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP


def _unprivileged(*args, cwd) -> subprocess.CompletedProcess:
    preexec = _without_permission_override if os.geteuid() == 0 else None
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd,
                          preexec_fn=preexec, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))})


@pytest.fixture
def read_only_place():
    """A directory holding a finished WAL results database, both then made read-only (0o555, 0o444)."""
    root = Path(tempfile.mkdtemp(prefix="stratum-ro-"))
    place = root / "ro"
    place.mkdir()
    db = _known(place / "k.sqlite")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sorted(os.listdir(place)) == ["k.sqlite"]
    db.chmod(0o444)
    place.chmod(0o555)
    probe = _unprivileged("-c", f"open({str(place / 'probe')!r}, 'w')", cwd=root)
    try:
        if probe.returncode == 0:
            pytest.skip("cannot make a directory read-only to this process (no way to drop the permission override)")
        yield place, db
    finally:
        place.chmod(0o755)
        db.chmod(0o644)
        shutil.rmtree(root, ignore_errors=True)


def test_report_reads_a_database_in_a_read_only_directory(read_only_place):
    place, db = read_only_place
    before = sorted(os.listdir(place))
    result = _unprivileged("-m", "stratum", "report", db, "--format", "json", cwd=place.parent)
    assert result.returncode == 0, result.stderr
    assert {c["label"] for c in json.loads(result.stdout)["configurations"]} == {"sgd", "fast"}
    assert sorted(os.listdir(place)) == before  # nothing created next to the database


def test_permission_problems_say_permission(read_only_place):
    place, db = read_only_place
    place.chmod(0o755)
    db.chmod(0o000)
    try:
        report = _unprivileged("-m", "stratum", "report", db, cwd=place.parent)
        assert report.returncode == 2
        assert_one_line_error(report.stderr, "permission denied")
        assert "not a readable" not in report.stderr
    finally:
        db.chmod(0o644)
    place.chmod(0o555)
    before = db.read_bytes()
    bench = _unprivileged("-m", "stratum", "bench", "--db", db, "--strategies", "sgd", "--seeds", "1",
                          *fast_args(epochs=1), "--workers", "1", cwd=place.parent)
    assert bench.returncode == 2
    assert_one_line_error(bench.stderr, "Permission denied")
    assert sorted(os.listdir(place)) == ["k.sqlite"] and db.read_bytes() == before


def test_reading_never_creates_companion_files(tmp_path):
    db = _known(tmp_path / "k.sqlite")
    assert run_cli("report", db).exit_code == 0
    assert sorted(os.listdir(tmp_path)) == ["k.sqlite"]
    with Store(db, create=False) as store:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.conn.execute("DELETE FROM runs")


# ---------------------------------------------------------------------------
# C. stored data of the wrong shape
# ---------------------------------------------------------------------------


def _set_summary(conn, mutate):
    run, text = conn.execute("SELECT run_id, summary_json FROM runs WHERE summary_json IS NOT NULL LIMIT 1").fetchone()
    data = json.loads(text)
    new = mutate(data)
    conn.execute("UPDATE runs SET summary_json = ? WHERE run_id = ?", (new if isinstance(new, str) else json.dumps(new), run))


def _history_bad(d):
    d["history"][-1]["test_acc"] = "high"
    return d


CORRUPTIONS = {
    "summary not JSON": (lambda c: _set_summary(c, lambda d: "{not json"), "summary_json"),
    "summary a list": (lambda c: _set_summary(c, lambda d: [1, 2]), "summary_json"),
    "summary NaN": (lambda c: _set_summary(c, lambda d: '{"peak_test_acc": NaN}'), "summary_json"),
    "peak a string": (lambda c: _set_summary(c, lambda d: {**d, "peak_test_acc": "abc"}), "peak_test_acc"),
    "history not a list": (lambda c: _set_summary(c, lambda d: {**d, "history": "x"}), "history"),
    "history value": (lambda c: _set_summary(c, _history_bad), "].test_acc"),
    "gradflow rows": (lambda c: _set_summary(c, lambda d: {**d, "gradflow": {"mean_grad_norm": "x"}}), "gradflow"),
    "group not JSON": (lambda c: c.execute("UPDATE bench_runs SET group_json = 'nope'"), "group_json"),
    "values an array": (lambda c: c.execute("UPDATE runs SET values_json = '[]'"), "values_json"),
    "spec not JSON": (lambda c: c.execute("UPDATE benches SET spec_json = '{'"), "spec_json"),
    "label not text": (lambda c: c.execute("UPDATE bench_runs SET label = x'00ff'"), "label"),
    "unknown status": (lambda c: (c.execute("PRAGMA ignore_check_constraints = 1"),
                                  c.execute("UPDATE runs SET status = 'weird'")), "status"),
    "no summary column": (lambda c: c.execute("ALTER TABLE runs DROP COLUMN summary_json"), "summary_json"),
    "no label column": (lambda c: (c.execute("ALTER TABLE bench_runs RENAME COLUMN label TO labl")), "label"),
    "no spec column": (lambda c: c.execute("ALTER TABLE benches DROP COLUMN spec_json"), "spec_json"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_report_on_a_malformed_store_names_the_file_and_field(tmp_path, case):
    corrupt, field = CORRUPTIONS[case]
    db = _known(tmp_path / "k.sqlite")
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        corrupt(conn)
    before = db.read_bytes()
    result = run_cli("report", db, "--plot", tmp_path / "plots", "--tensorboard", tmp_path / "tb")
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, str(db), field)
    assert db.read_bytes() == before
    assert not (tmp_path / "plots").exists() and not (tmp_path / "tb").exists()


@pytest.fixture(scope="module")
def finished_bench(tmp_path_factory):
    """A real one-run bench (its run ids match what the same command plans again)."""
    root = tmp_path_factory.mktemp("finished")
    args = ["bench", "--db", root / "b.sqlite", "--strategies", "sgd", "--seeds", "1", *fast_args(epochs=1, steps_per_epoch=2),
            "--workers", "1", "--quiet", "--no-report"]
    result = run_cli(*args)
    assert result.exit_code == 0, result
    return root / "b.sqlite", args[3:]


@pytest.mark.parametrize("case", ["summary not JSON", "peak a string", "history value", "unknown status",
                                  "no summary column", "no label column"])
def test_bench_resuming_into_a_malformed_store_stops_before_training(tmp_path, finished_bench, case):
    source, bench_args = finished_bench
    db = tmp_path / "b.sqlite"
    shutil.copy(source, db)
    corrupt, field = CORRUPTIONS[case]
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        corrupt(conn)
    before = db.read_bytes()
    result = run_cli("bench", "--db", db, *bench_args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, str(db), field)
    assert db.read_bytes() == before  # the finished result was neither re-run nor overwritten


# ---------------------------------------------------------------------------
# D. report options
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragments", [
    (["--target", "nan"], ["--target", "finite"]),
    (["--target", "inf"], ["--target", "finite"]),
    (["--target", "-inf"], ["--target", "finite"]),
    (["--target", "-1"], ["--target", ">= 0"]),
    (["--target", "150"], ["--target", "percent"]),
    (["--target-fraction", "nan"], ["--target-fraction"]),
    (["--confidence", "nan"], ["--confidence"]),
    (["--confidence", "1"], ["--confidence"]),
    (["--bootstrap", "1000000000"], ["--bootstrap"]),
    (["--baseline", "strategy=nosuch"], ["strategy=nosuch", "sgd", "fast"]),
    (["--baseline", "strategy=fats"], ["did you mean strategy=fast?"]),
    (["--baseline", "strategi=sgd"], ["no configuration of this bench has 'strategi'", "did you mean 'strategy'?"]),
    (["--baseline", "strategy="], ["KEY=VALUE"]),
    (["--baseline", "=sgd"], ["KEY=VALUE"]),
    (["--baseline", ""], ["--baseline is empty"]),
    (["--baseline", "fst"], ["not a configuration of this bench", "did you mean 'fast'?"]),
    (["--bench", "knwn"], ["no bench named 'knwn'", "did you mean 'known'?"]),
])
def test_report_options_that_mean_nothing_are_refused(tmp_path, args, fragments):
    db = _known(tmp_path / "k.sqlite")
    result = run_cli("report", db, *args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, *fragments)
    assert result.stdout == ""


def test_report_options_within_range_still_work(tmp_path):
    db = _known(tmp_path / "k.sqlite")
    for args in (["--target", "0"], ["--target", "100"], ["--target", "85.5"], ["--baseline", "strategy=fast"],
                 ["--baseline", "fast"]):
        result = run_cli("report", db, "--format", "json", *args)
        assert result.exit_code == 0, (args, result)


@pytest.mark.parametrize("baseline, fragment", [("strategy=nosuch", "strategy values: sgd"), ("nolabel", "labels: sgd")])
def test_bench_refuses_a_baseline_it_will_not_have_before_training(tmp_path, baseline, fragment):
    db = tmp_path / "b.sqlite"
    result = run_cli("bench", "--db", db, "--strategies", "sgd", "--seeds", "1", *fast_args(epochs=1),
                     "--workers", "1", "--baseline", baseline)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, fragment)
    assert not db.exists()


# ---------------------------------------------------------------------------
# E. names that become paths
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_slug_is_one_safe_component(tmp_path, name):
    s = slug(name)
    assert s and s not in (".", "..") and "/" not in s and "\\" not in s and "\x00" not in s
    assert not s.startswith((".", "-", "~")) and len(s) <= 100 and s.isascii()
    assert safe_join(tmp_path, s).parent == tmp_path
    assert slug(name) == s  # deterministic


def test_unique_slug_keeps_colliding_labels_apart():
    taken: set = set()
    names = [unique_slug(label, taken) for label in ("a/b", "a b", "a_b", "x" * 300, "x" * 301)]
    assert len(set(names)) == 5


def test_report_exports_of_hostile_labels_stay_inside_their_directories(tmp_path, monkeypatch):
    db = _store_with_labels(tmp_path / "h.sqlite", HOSTILE)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = run_cli("report", db, "--tensorboard", "out/tb", "--format", "csv")
    assert result.exit_code == 0, result
    few = _store_with_labels(tmp_path / "few.sqlite", PLOTTED)  # plots are slower: a few names
    result = run_cli("report", few, "--plot", "out/plots", "--format", "csv")
    assert result.exit_code == 0, result
    assert sorted(os.listdir(work)) == ["out"] and sorted(os.listdir(work / "out")) == ["plots", "tb"]
    assert sorted(os.listdir(tmp_path)) == ["few.sqlite", "h.sqlite", "work"]
    runs = [p for p in (work / "out/tb").iterdir()]
    assert len(runs) == len(HOSTILE)  # one directory per label: none merged, none outside
    for run_dir in runs:
        assert run_dir.name not in (".", "..") and [p.name for p in run_dir.iterdir()] == ["seed0"]
    gradflow = [p for p in (work / "out/plots").iterdir() if p.name.startswith("gradflow-")]
    assert len(gradflow) == len(PLOTTED)


def test_a_bench_variant_named_dot_dot_cannot_escape_the_export(tmp_path, monkeypatch):
    toml = tmp_path / "b.toml"
    toml.write_text("[run]\nmodel = 'mlp'\nhidden = [32]\nepochs = 1\nsteps_per_epoch = 2\nthreads = 1\n"
                    "[[variant]]\nname = '..'\nlr = 0.01\n[[variant]]\nname = 'a/../../b'\nlr = 0.02\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli("bench", "--config", toml, "--db", "b.sqlite", "--workers", "1", "--quiet", "--no-report")
    assert result.exit_code == 0, result
    (tmp_path / "export").mkdir()
    result = run_cli("report", "b.sqlite", "--tensorboard", "export/tb")
    assert result.exit_code == 0, result
    assert sorted(os.listdir(tmp_path)) == ["b.sqlite", "b.toml", "export"]
    assert sorted(os.listdir(tmp_path / "export/tb")) == ["a_.._.._b", "config"]
    assert not (tmp_path / "seed0").exists() and not (tmp_path / "export/seed0").exists()


@pytest.mark.parametrize("name", HOSTILE)
def test_run_names_that_would_leave_the_output_directory_are_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", *fast_args(epochs=1), "--out", "runs", "--name", name)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, "--name")
    assert os.listdir(tmp_path) == []  # refused before anything was written, here or anywhere


@pytest.mark.parametrize("tag", HOSTILE)
def test_fit_tags_and_run_names_stay_inside_the_tensorboard_directory(tmp_path, make_cfg, tag):
    from stratum.report.tensorboard import run_log_dir

    run = types.SimpleNamespace(config=make_cfg(tensorboard=str(tmp_path)), fit_tag=tag)
    path = run_log_dir(run)
    assert path.parent.parent == tmp_path if tag else path.parent == tmp_path
    assert path.resolve().is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize("tag", ["../../up", "/abs", "a/b"])
def test_torch_traces_of_hostile_fit_tags_stay_in_their_directory(tmp_path, pm, make_cfg, tag):
    from stratum.engine import build_run
    from stratum_plugins.profilers.torch_trace import TorchTraceProfiler

    run = build_run(make_cfg(out=str(tmp_path / "r")), pm)
    run.fit_tag = tag
    profiler = TorchTraceProfiler(run, types.SimpleNamespace(torch_trace_wait=0, torch_trace_steps=1, torch_trace_dir=None))
    assert profiler.path.parent == tmp_path / "r" and "/" not in profiler.path.name


# ---------------------------------------------------------------------------
# F. TensorBoard log identity
# ---------------------------------------------------------------------------


def _scalars(log_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return acc.Scalars(tag) if tag in acc.Tags()["scalars"] else []


def test_log_directory_is_the_run_not_the_clock(pm, make_cfg, tmp_path):
    from stratum.engine import Trainer

    first = Trainer(pm).run(make_cfg(tensorboard=str(tmp_path / "tb"), epochs=1))["tensorboard_dir"]
    time.sleep(1.05)  # the clock moves on; the identity does not
    again = Trainer(pm).run(make_cfg(tensorboard=str(tmp_path / "tb"), epochs=1))["tensorboard_dir"]
    other = Trainer(pm).run(make_cfg(tensorboard=str(tmp_path / "tb"), epochs=1, seed=1))["tensorboard_dir"]
    assert first == again != other
    assert sorted(os.listdir(tmp_path / "tb")) == sorted({Path(first).name, Path(other).name})
    assert "seed1" in Path(other).name
    assert [e.step for e in _scalars(first, "epoch/val_acc")] == [1]  # the fresh re-run replaced the first log


def test_each_lottery_fit_logs_on_its_own(pm, make_cfg, tmp_path):
    from stratum.engine import Trainer

    Trainer(pm).run(make_cfg(strategy="lottery", prune_rounds=1, lottery_controls=["reinit"], epochs=2,
                             tensorboard=str(tmp_path / "tb")))
    (run_dir,) = (tmp_path / "tb").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["L00-dense", "L01-reinit", "L01-ticket"]
    for fit in run_dir.iterdir():
        assert [e.step for e in _scalars(fit, "epoch/val_acc")] == [1, 2]  # each fit once, not interleaved
        assert [e.step for e in _scalars(fit / "steps", "step/train_loss")] == [10]


def test_a_resumed_run_continues_its_log_and_purges_what_came_after_the_checkpoint(pm, make_cfg, tmp_path):
    from stratum.engine import Trainer

    tb, out = tmp_path / "tb", tmp_path / "run"
    cfg = dict(tensorboard=str(tb), out=str(out), steps_per_epoch=5)
    first = Trainer(pm).run(make_cfg(epochs=2, **cfg))["tensorboard_dir"]
    saved = (out / "checkpoint.pt").read_bytes()  # the state after epoch 2, global step 10
    Trainer(pm).run(make_cfg(epochs=4, resume=True, **cfg))  # logs epochs 3-4, steps up to 20
    (out / "checkpoint.pt").write_bytes(saved)  # back to epoch 2: what was logged for 3-4 is stale
    resumed_at = time.time()
    last = Trainer(pm).run(make_cfg(epochs=4, resume=True, **cfg))["tensorboard_dir"]
    assert first == last and len(list(tb.iterdir())) == 1
    epochs = _scalars(first, "epoch/val_acc")
    assert [e.step for e in epochs] == [1, 2, 3, 4]  # each epoch exactly once
    assert all(e.wall_time < resumed_at for e in epochs[:2]) and all(e.wall_time >= resumed_at for e in epochs[2:])
    steps = _scalars(Path(first) / "steps", "step/train_loss")
    assert [e.step for e in steps] == [10, 20]
    assert steps[0].wall_time < resumed_at <= steps[1].wall_time
