"""stratum tune: search spaces, the Optuna study (pruning, resume, parallel workers), the best TOML."""

from __future__ import annotations

import pytest

from stratum.bench.matrix import known_fields
from stratum.errors import ConfigError
from stratum.store import Store
from stratum.tune.space import check_read, parse_space

from .conftest import assert_one_line_error, run_cli

pytest.importorskip("optuna")

# One trial: 2 epochs of 3 steps per seed, about a quarter of a second.
BASE = ["--model", "mlp", "--hidden", "32", "--dataset", "digits", "--epochs", "2", "--steps-per-epoch", "3",
        "--batch-size", "32", "--threads", "1"]


@pytest.fixture(scope="module")
def fields():
    from stratum.plugin_manager import create_plugin_manager

    pm = create_plugin_manager()
    return known_fields(pm.registries), pm.registries


def test_specs_parse_by_the_options_type(fields):
    fields, _ = fields
    lr, epochs, momentum, schedule, log_int = parse_space(
        ["lr=log:1e-3:1e-1", "epochs=2:6", "momentum=0.8:0.99:0.01", "schedule=cosine,linear", "batch-size=log:8:64"],
        fields)
    assert (lr.kind, lr.low, lr.high, lr.log) == ("float", 1e-3, 1e-1, True)
    assert (epochs.kind, epochs.low, epochs.high) == ("int", 2, 6)  # an integer option draws integers
    assert (momentum.kind, momentum.step) == ("float", 0.01)
    assert schedule.choices == ("cosine", "linear") and schedule.grid == ["cosine", "linear"]
    assert (log_int.name, log_int.kind, log_int.log) == ("batch_size", "int", True)
    assert lr.grid is None


@pytest.mark.parametrize("spec, fragment", [
    ("lrr=log:1e-3:1", "did you mean 'lr'"),
    ("lr=0:1", "--lr must be > 0"),  # the option's own bound, before any trial
    ("lr=0.5:0.1", "LO must be below HI"),
    ("lr=int:1:3", "drop 'int:'"),
    ("lr=log:1:2:3", "expected log:LO:HI"),
    ("lr=abc:1", "is not a number"),
    ("schedule=cosine,cosne", "did you mean 'cosine'"),
    ("schedule=cosine", "one value is no search"),
    ("schedule=1:2", "list its values"),
    ("seed=1:5", "cannot be tuned"),
    ("hidden=16,32", "single-valued options only"),
    ("lr", "expects NAME=SPEC"),
])
def test_bad_specs_are_refused_in_one_line(fields, spec, fragment):
    fields, registries = fields
    with pytest.raises(ConfigError) as info:
        parse_space([spec], fields, registries=registries)
    assert fragment in str(info.value)


def test_a_param_no_component_reads_is_refused_but_one_a_listed_choice_reads_is_not(fields):
    fields, registries = fields
    with pytest.raises(ConfigError, match="no component of this run reads it"):
        check_read(parse_space(["width=0.25:1"], fields), {"model": "mlp"}, registries)
    with pytest.raises(ConfigError, match="no component of this run reads it"):
        check_read(parse_space(["momentum=0.5:0.9"], fields), {"optimizer": "adam"}, registries)
    # momentum is read once the optimizer search offers one that reads it
    check_read(parse_space(["optimizer=adam,momentum", "momentum=0.5:0.9"], fields), {"optimizer": "adam"}, registries)


@pytest.mark.parametrize("args, fragment", [
    (["--param", "weight-decay=log:0:1"], "log range needs LO > 0"),
    (["--param", "lrr=0.1:0.2"], "did you mean 'lr'"),
    (["--param", "lr=0.01:0.1", "--sampler", "grid"], "--sampler grid needs listed values"),
    (["--param", "lr=0.01:0.1", "--lr", "0.1"], "also given a fixed value"),
    (["--param", "width=0.5:1"], "no component of this run reads it"),
    (["--param", "lr=0.01:0.1", "--seeds", "1,1"], "seeds repeat"),
    ([], "nothing to tune"),
])
def test_cli_refuses_bad_input_before_any_trial(tmp_path, args, fragment):
    result = run_cli("tune", *BASE, "--db", tmp_path / "t.sqlite", *args)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, fragment)
    assert not (tmp_path / "t.sqlite").exists()


def test_an_unwritable_output_is_refused_before_any_trial(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("tune", *BASE, "--db", tmp_path / "t.sqlite", "--param", "lr=0.01:0.1",
                     "--output", blocker / "best.toml")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "best.toml")
    assert not (tmp_path / "t.sqlite").exists()


def test_a_damaged_journal_is_refused_in_one_line_and_left_alone(tmp_path):
    db = tmp_path / "t.sqlite"
    journal = tmp_path / "t.sqlite.optuna-journal"
    journal.write_text("not a journal{\n")
    result = run_cli("tune", *BASE, "--db", db, "--param", "lr=0.01,0.1")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "is not a readable Optuna journal")
    assert journal.read_text() == "not a journal{\n" and not db.exists()


def _trials(db, study="tune"):
    import optuna

    from stratum.tune.study import storage

    return optuna.load_study(study_name=study, storage=storage(db)).trials


def test_tune_beats_the_default_lr_writes_a_runnable_toml_and_stores_every_run(tmp_path):
    """The cheap version of the issue's check: the tuned lr's validation accuracy (seed 100) is
    above the default lr's (0.01), both measured here; the best TOML runs with `stratum run`."""
    db, best = tmp_path / "t.sqlite", tmp_path / "best.toml"
    default = run_cli("run", *BASE, "--seed", "100", "--json", tmp_path / "default.json", "--quiet")
    assert default.exit_code == 0, default
    import json

    default_val = json.loads((tmp_path / "default.json").read_text())["best_val_acc"]
    result = run_cli("tune", *BASE, "--db", db, "--param", "lr=log:0.01:0.5", "--trials", "3", "--seeds", "100",
                     "--pruner", "none", "--output", best)
    assert result.exit_code == 0, result
    trials = _trials(db)
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    top = max(trials, key=lambda t: t.value)
    assert top.value > default_val
    assert f"best: trial {top.number}" in result.stdout
    with Store(db, create=False) as store:
        rows = store.bench_rows("tune:tune")
    assert len(rows) == 3 and {r["seed"] for r in rows} == {100}
    assert {r["group"]["trial"] for r in rows} == {0, 1, 2}
    assert [r["summary"]["best_val_acc"] for r in sorted(rows, key=lambda r: r["ordinal"])] == [t.value for t in trials]
    ran = run_cli("run", "--config", best, "--seed", "100", "--json", tmp_path / "tuned.json", "--quiet")
    assert ran.exit_code == 0, ran
    tuned = json.loads((tmp_path / "tuned.json").read_text())
    assert tuned["config"]["lr"] == pytest.approx(top.params["lr"])
    assert tuned["best_val_acc"] == pytest.approx(top.value)  # the TOML reproduces the trial


def test_resume_runs_only_the_missing_trials_and_refuses_another_space(tmp_path):
    db = tmp_path / "t.sqlite"
    args = ["tune", *BASE, "--db", db, "--param", "lr=log:0.01:0.5", "--seeds", "100", "--sampler", "random"]
    assert run_cli(*args, "--trials", "2").exit_code == 0
    first = [(t.number, t.params) for t in _trials(db)]
    again = run_cli(*args, "--trials", "3")
    assert again.exit_code == 0, again
    trials = _trials(db)
    assert len(trials) == 3 and [(t.number, t.params) for t in trials[:2]] == first
    assert trials[2].params != trials[0].params  # a resumed session does not repeat the sampler's draws
    assert "2 of 3 trials finished, 1 to run" in again.stdout
    other = run_cli("tune", *BASE, "--db", db, "--param", "lr=log:0.01:0.2", "--seeds", "100")
    assert other.exit_code == 2
    assert_one_line_error(other.stderr, "was made with another space")


def test_a_trial_left_running_by_a_dead_process_is_failed_and_asked_again(tmp_path):
    import optuna

    from stratum.tune.study import storage

    db = tmp_path / "t.sqlite"
    args = ["tune", *BASE, "--db", db, "--param", "lr=0.05,0.2", "--seeds", "100", "--sampler", "grid"]
    assert run_cli(*args, "--trials", "1").exit_code == 0
    # A worker killed mid-trial leaves its trial RUNNING, owned by a process that is gone.
    study = optuna.load_study(study_name="tune", storage=storage(db),
                              sampler=optuna.samplers.GridSampler({"lr": [0.05, 0.2]}))
    done = study.trials[0].params["lr"]
    orphan = study.ask({"lr": optuna.distributions.CategoricalDistribution([0.05, 0.2])})
    orphan.set_user_attr("owner", "nohost:1:1")
    lost = orphan.params["lr"]
    result = run_cli(*args)
    assert result.exit_code == 0, result
    assert "1 left running by a stopped process asked again" in result.stdout
    trials = _trials(db)
    assert trials[1].state.name == "FAIL"
    retried = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].params["lr"] == lost
    assert sorted(t.params["lr"] for t in trials if t.state.name == "COMPLETE") == sorted({done, lost})


def test_a_pruned_run_ends_after_the_epoch_and_is_stored_marked_pruned(tmp_path):
    """The reporter ends the run through record["stopped_reason"]; the partial summary is kept."""
    from stratum.bench.runner import execute_run
    from stratum.tune.study import PruningReporter, TuneJob

    class Trial:  # the part of optuna.Trial the reporter uses
        def __init__(self):
            self.reports = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return True

    job = TuneJob(db=str(tmp_path / "t.sqlite"), study="s", base={"epochs": 4}, params=[], seeds=[7, 8])
    trial = Trial()
    reporter = PruningReporter(trial, job, 1, [50.0])
    values = {"model": "mlp", "hidden": [16], "dataset": "digits", "epochs": 4, "steps_per_epoch": 2, "seed": 8}
    outcome = execute_run(values, threads=1, callbacks=(("tune", reporter),))
    summary = outcome["summary"]
    assert outcome["status"] == "done" and reporter.pruned
    assert summary["stopped_reason"] == "pruned" and summary["epochs_run"] == 1
    # step = seed index x epochs + epoch; value = mean of the earlier seed's score and this one's so far
    assert trial.reports == [(5, pytest.approx((50.0 + summary["history"][0]["val_acc"]) / 2))]


def test_median_pruning_prunes_a_trial_and_stores_its_partial_run(tmp_path):
    db = tmp_path / "t.sqlite"
    # lr 0.5 learns, 1e-5 does not; the grid's sampler seed 1 runs 0.5 first. With no start-up
    # trials the median of the one finished trial decides from epoch 2 on.
    result = run_cli("tune", *BASE[:6], "--epochs", "3", *BASE[8:], "--db", db, "--param", "lr=0.5,0.00001",
                     "--sampler", "grid", "--startup-trials", "0", "--seeds", "100", "--sampler-seed", "1")
    assert result.exit_code == 0, result
    trials = _trials(db)
    assert [t.params["lr"] for t in trials] == [0.5, 0.00001]
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    with Store(db, create=False) as store:
        pruned = [r for r in store.bench_rows("tune:tune") if r["group"]["trial"] == 1]
    assert pruned[0]["status"] == "done"
    assert pruned[0]["summary"]["stopped_reason"] == "pruned" and pruned[0]["summary"]["epochs_run"] == 2


def test_two_workers_share_the_study(tmp_path):
    db = tmp_path / "t.sqlite"
    result = run_cli("tune", *BASE[:6], "--epochs", "1", *BASE[8:], "--db", db, "--param", "lr=log:0.01:0.5",
                     "--seeds", "100", "--trials", "2", "--workers", "2", "--pruner", "none", "--quiet")
    assert result.exit_code == 0, result
    trials = _trials(db)
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    owners = {t.user_attrs["owner"] for t in trials}
    assert len(owners) == 2  # one trial in each worker process
    with Store(db, create=False) as store:
        assert len(store.bench_rows("tune:tune")) == 2


def test_a_grid_on_two_workers_tries_every_point_once(tmp_path):
    # Workers once seeded their GridSamplers apart, so each shuffled the grid its own way and two of
    # them drew the same point (--trials 3 tried 0.1 twice and never 0.03).
    db = tmp_path / "t.sqlite"
    args = ["tune", *BASE[:6], "--epochs", "1", *BASE[8:], "--db", db, "--param", "lr=0.01,0.03,0.1",
            "--seeds", "100", "--workers", "2", "--pruner", "none", "--quiet"]
    assert run_cli(*args).exit_code == 0
    trials = _trials(db)
    assert sorted(t.params["lr"] for t in trials if t.state.name == "COMPLETE") == [0.01, 0.03, 0.1]
    assert len(trials) == 3
    assert run_cli(*args).exit_code == 0 and len(_trials(db)) == 3  # resumed: nothing left to try


# -- stratum bench --tune ------------------------------------------------------------------------


def check_tuned_bench(db, bench: str, arms: set, eval_seeds: list) -> None:
    """Each arm of a ``bench --tune`` bench ran its evaluation seeds at its study's best values,
    and the bench's stored settings say so."""
    with Store(db, create=False) as store:
        benches = {b["name"]: b for b in store.benches()}
        rows = store.bench_rows(bench)
    tuned = benches[bench]["spec"]["settings"]["tuned"]
    assert set(tuned) == arms
    for label, arm in tuned.items():
        assert f"tune:{bench}/{label}" in benches  # each arm's trials, stored as a bench of their own
        trials = _trials(db, f"{bench}/{label}")
        best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
        assert arm["values"] == best.params and arm["trials"] == len(trials)
        assert {r["summary"]["config"]["lr"] for r in rows if r["label"] == label} == {best.params["lr"]}
        assert sorted(r["seed"] for r in rows if r["label"] == label) == eval_seeds  # evaluation seeds only


@pytest.mark.parametrize("extra, fragment", [
    (["--seeds", "0,100", "--tune", "lr", "--tune-seeds", "100,101"], "--tune-seeds 100 is also evaluation seed"),
    (["--seeds", "2", "--tune", "lr", "--axis", "lr=0.1,0.2"], "also an axis of the bench"),
    (["--seeds", "2", "--tune", "momentum"], "give its space"),
    (["--seeds", "2", "--tune-seeds", "100"], "--tune-seeds needs --tune"),
    (["--seeds", "2", "--tune", "lr=0.1:0.5", "--tune-sampler", "grid"], "--sampler grid needs listed values"),
])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_bench_tune_refuses_a_bad_plan_in_one_line(tmp_path, extra, fragment, dry_run):
    # --dry-run refuses what the real bench refuses (it once planned a tuning seed that is an evaluation seed)
    result = run_cli("bench", *BASE, "--db", tmp_path / "b.sqlite", *extra, *dry_run)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, fragment)
    assert not (tmp_path / "b.sqlite").exists()


# -- docs/measurement.md -------------------------------------------------------------------------

FAST_TAIL = {"tune": ["--epochs", "1", "--steps-per-epoch", "2", "--threads", "1", "--trials", "2", "--workers", "1"],
             "run": ["--epochs", "1", "--steps-per-epoch", "2", "--threads", "1", "--quiet"],
             "bench": ["--epochs", "1", "--steps-per-epoch", "2", "--threads", "1", "--tune-trials", "2", "--seeds", "1",
                       "--workers", "1", "--tune-seeds", "100"],
             "report": []}


def doc_commands() -> list[str]:
    """The commands of the fenced blocks in the two tuning sections of docs/measurement.md."""
    import re

    from .conftest import REPO

    text = (REPO / "docs" / "measurement.md").read_text()
    start = text.index("## Tuning with `stratum tune`")
    section = text[start:text.index("\n## ", text.index("## Tune, then evaluate", start))]
    blocks = re.findall(r"^```\n(.*?)^```", section, flags=re.S | re.M)
    return [line for block in blocks for line in block.splitlines() if line.startswith("stratum ")]


def test_docs_tuning_examples_run(tmp_path, monkeypatch):
    """Every example command of the tuning sections runs (shortened: 1 epoch of 2 steps, 2 trials)."""
    import shlex

    monkeypatch.chdir(tmp_path)
    commands = doc_commands()
    assert [c.split()[1] for c in commands] == ["tune", "run", "report", "tune", "tune", "run", "bench", "report"]
    outputs = []
    for command in commands:
        words = shlex.split(command)[1:]
        result = run_cli(*words, *FAST_TAIL[words[0]])
        assert result.exit_code == 0, (command, result)
        outputs.append(result.stdout)
    assert "best: trial" in outputs[0] and (tmp_path / "best.toml").exists() and (tmp_path / "vgg11-best.toml").exists()
    assert "tuned values" in outputs[-1] and "sgd optimizer=adam" in outputs[-1]
    bench = shlex.split(commands[6])[1:] + FAST_TAIL["bench"]
    assert "chose lr=" in outputs[6] and "tuned values" in outputs[6]
    check_tuned_bench(tmp_path / "tuned.sqlite", "bench", {"sgd optimizer=sgd", "sgd optimizer=adam"}, [0])
    again = run_cli(*bench)  # an interrupted or repeated bench --tune resumes: nothing runs again
    assert again.exit_code == 0, again
    assert again.stdout.count("trials finished, 0 to run") == 2 and "2 already done, 0 to run" in again.stdout
