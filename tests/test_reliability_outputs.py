"""Output destinations, ``~`` in paths, resume and crash leftovers, working-directory defaults.

A: every destination is probed before any work (one line, exit 2, nothing left behind); a write
   that fails later is one line naming the path and the cause, after the result table.
B: ``~`` is expanded in every path option, flag and TOML, core, plugin and sub-command.
C: ``--resume`` with nothing saved yet starts fresh with a note; killed atomic writes' temp files
   are removed by the next write of the same file, and only those.
D: defaults that write into the working directory say so in --help; a failed --download leaves no
   empty folders behind; a --data-root that is a file is one line.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from stratum.errors import OutputError
from stratum.io import atomic_write_bytes, remove_leftovers
from stratum.paths import probe_output

from .conftest import assert_one_line_error, fast_args, run_cli

QUICK = dict(epochs=1, steps_per_epoch=3)
LONG_NAME = "n" * 256  # longer than NAME_MAX (255 bytes)


def _cwd_entries() -> list[str]:
    return sorted(os.listdir("."))


# -- A: destinations probed before any work ------------------------------------------------------

def _bench(*extra):
    return ["bench", "--strategies", "sgd", "--seeds", "1", "--no-report", *fast_args(**QUICK), *extra]


BAD_DESTINATIONS = [
    # (command line, fragment of the error) with "f" a regular file in the working directory
    (["run", *fast_args(**QUICK), "--json", "f/s.json"], "--json f/s.json"),
    (["run", *fast_args(**QUICK), "--json", "deep/er/" + LONG_NAME], "File name too long"),
    (["run", *fast_args(**QUICK), "--json", "."], "is a directory"),
    (["run", *fast_args(**QUICK), "--json", "/dev/null"], "not a regular file"),
    (["run", *fast_args(**QUICK), "--out", "f"], "--out f"),
    (["run", *fast_args(**QUICK), "--out", "f/run"], "f is not a directory"),
    (["run", *fast_args(**QUICK), "--out", "new", "--name", LONG_NAME], "--name"),  # refused by --name's own length limit (100), before any probe
    (["run", *fast_args(**QUICK), "--tensorboard", "f/tb"], "--tensorboard f/tb"),
    (["run", *fast_args(**QUICK), "--capture-out", "f/c.prior"], "--capture-out f/c.prior"),
    (["run", *fast_args(**QUICK), "--profile", "torch", "--torch-trace-dir", "f/traces"], "--torch-trace-dir"),
    (["run", *fast_args(**QUICK), "--strategy", "focus", "--capture-out", "f/c.prior"], "--capture-out"),
    (_bench("--db", "f/b.sqlite"), "--db f/b.sqlite"),
    (_bench("--db", "new/" + LONG_NAME), "File name too long"),
    (_bench("--log-dir", "f/logs"), "--log-dir f/logs"),
    (_bench("--plot", "f/plots"), "--plot f/plots"),
    (_bench("--tensorboard", "f/tb"), "--tensorboard f/tb"),
    (["report", "missing.sqlite", "--plot", "f/plots"], "--plot f/plots"),
    (["report", "missing.sqlite", "--output", "f/report.txt"], "--output f/report.txt"),
    (["report", "missing.sqlite", "--tensorboard", "f/tb"], "--tensorboard f/tb"),
    (["prior", "build", *fast_args(**QUICK), "--out", "f/p.prior"], "--out f/p.prior"),
    (["prior", "build", *fast_args(**QUICK), "--out", "new/" + LONG_NAME], "File name too long"),
]


@pytest.mark.parametrize("args, fragment", BAD_DESTINATIONS, ids=[" ".join(a[:1] + a[-2:])[:60] for a, _ in BAD_DESTINATIONS])
def test_unwritable_destination_fails_before_any_work(args, fragment):
    Path("f").write_text("a regular file\n")
    result = run_cli(*args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, fragment)
    assert "stratum result" not in result.stdout and "building prior" not in result.stdout
    assert _cwd_entries() == ["f"]  # nothing trained, nothing written, no probe folders left
    assert Path("f").read_text() == "a regular file\n"


@pytest.mark.parametrize("kind", ["file", "dir"])
@pytest.mark.parametrize("cause", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_probe_failure_removes_what_it_created(monkeypatch, kind, cause):
    """Read-only file system, full disk, permission (simulated: tests run as root)."""
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(cause, os.strerror(cause))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError) as info:
        probe_output("a/b/c/out.json" if kind == "file" else "a/b/c", kind, "--thing")
    assert str(info.value) == f"cannot write --thing a/b/c{'/out.json' if kind == 'file' else ''}: {os.strerror(cause)}"
    assert _cwd_entries() == []  # the parent chain it created for the probe is gone again


@pytest.mark.parametrize("kind, path", [("file", "x/y/z.json"), ("dir", "x/y/z"), ("file", "z.json"), ("dir", ".")])
def test_a_successful_probe_leaves_nothing_behind(kind, path):
    Path("keep").mkdir()
    assert probe_output(path, kind) == Path(path)
    assert _cwd_entries() == ["keep"] and os.listdir("keep") == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_directory_fails_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run_cli("run", *fast_args(**QUICK), "--json", locked / "s.json")
        assert result.exit_code == 2
        assert_one_line_error(result.stderr, "Permission denied")
    finally:
        locked.chmod(0o755)


def _fail_writes_of(monkeypatch, name: str, code: int = errno.ENOSPC):
    """Make the fsync of every atomic write of a file called ``name`` fail with ``code``."""
    real_fsync = os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.basename(target).startswith(f".{name}."):
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("args, name, fragment", [
    (["--json", "s.json"], "s.json", "cannot write --json s.json: No space left on device"),
    (["--out", "r"], "summary.json", "cannot write summary r/summary.json: No space left on device"),
    (["--out", "r", "--name", "n", "--json", "s.json"], "s.json", "cannot write --json s.json"),
    # writes at fit end, by plugins: a capture prior, the lottery report
    (["--capture-out", "c.prior"], "c.prior", "cannot write prior c.prior: No space left on device"),
    (["--strategy", "lottery", "--prune-rounds", "1", "--lottery-controls", "none", "--out", "r"], "lottery.md",
     "cannot write r/lottery.md: No space left on device"),
])
def test_a_failed_final_write_comes_after_the_result_table(monkeypatch, args, name, fragment):
    _fail_writes_of(monkeypatch, name)
    result = run_cli("run", *fast_args(**QUICK), *args, "--quiet")
    assert result.exit_code == 2, result
    assert "stratum result" in result.stdout  # the finished result is never lost
    assert_one_line_error(result.stderr, fragment)
    assert list(Path(".").rglob("*.tmp")) == [] and list(Path(".").rglob(name)) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_good_one(monkeypatch, code):
    assert run_cli("run", *fast_args(**QUICK), "--out", "r", "--quiet").exit_code == 0
    before = Path("r/checkpoint.pt").read_bytes()
    _fail_writes_of(monkeypatch, "checkpoint.pt", code)
    result = run_cli("run", *fast_args(epochs=2, steps_per_epoch=3), "--out", "r", "--resume", "--quiet")
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, "cannot write checkpoint r/checkpoint.pt", os.strerror(code))
    assert Path("r/checkpoint.pt").read_bytes() == before


def test_an_oserror_from_any_other_writer_is_one_line(monkeypatch):
    import stratum.results

    def broken(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "elsewhere/s.json")

    monkeypatch.setattr(stratum.results, "write_summary", broken)
    result = run_cli("run", *fast_args(**QUICK), "--quiet")
    assert result.exit_code == 2
    assert "stratum result" in result.stdout
    assert_one_line_error(result.stderr, "elsewhere/s.json", "Permission denied")


# -- B: ~ expanded everywhere ---------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _no_tilde_anywhere(*roots):
    for root in roots:
        assert not [p for p in Path(root).rglob("~*")], list(Path(root).rglob("~*"))


@pytest.mark.parametrize("flags, toml, expected", [
    (["--out", "~/r"], "", ["r/checkpoint.pt", "r/summary.json"]),
    ([], 'out = "~/t"\nname = "n"\n', ["t/n/summary.json"]),
    (["--json", "~/j/s.json"], "", ["j/s.json"]),
    ([], 'json = "~/tj.json"\n', ["tj.json"]),
    (["--capture-out", "~/c.prior"], "", ["c.prior"]),
    ([], 'capture-out = "~/tc.prior"\ntensorboard = "~/tb"\n', ["tc.prior", "tb"]),
    (["--profile", "torch", "--torch-trace-wait", "0", "--torch-trace-steps", "1", "--torch-trace-dir", "~/tr"], "", ["tr"]),
])
def test_tilde_in_run_paths_lands_in_home(home, flags, toml, expected):
    args = ["run", *fast_args(**QUICK), *flags, "--quiet"]
    if toml:
        (home / "c.toml").write_text(toml)
        args += ["--config", "~/c.toml"]
    result = run_cli(*args)
    assert result.exit_code == 0, result
    for item in expected:
        assert (home / item).exists(), item
    _no_tilde_anywhere(".", home)


def test_tilde_in_bench_report_and_prior_paths(home):
    Path("b.toml").write_text('[bench]\nstrategies = ["sgd"]\nseeds = 1\n[run]\nmodel = "mlp"\nhidden = [32]\n'
                              'epochs = 1\nsteps_per_epoch = 2\nthreads = 1\ntensorboard = "~/btb"\n')
    (home / "b.toml").write_text(Path("b.toml").read_text())
    result = run_cli("bench", "--config", "~/b.toml", "--db", "~/b.sqlite", "--workers", "1", "--no-report", "--quiet")
    assert result.exit_code == 0, result
    assert (home / "b.sqlite").exists() and (home / "btb").is_dir()
    result = run_cli("report", "~/b.sqlite", "--output", "~/rep/report.txt", "--plot", "~/plots")
    assert result.exit_code == 0, result
    assert (home / "rep/report.txt").exists() and any((home / "plots").glob("*.png"))
    result = run_cli("prior", "build", *fast_args(**QUICK), "--out", "~/p.prior")
    assert result.exit_code == 0, result
    result = run_cli("prior", "info", "~/p.prior")
    assert result.exit_code == 0 and str(home / "p.prior") in result.stdout
    _no_tilde_anywhere(".", home)
    assert sorted(os.listdir(".")) == ["b.toml"]


# -- C: resume and crash leftovers ----------------------------------------------------------------

def test_resume_with_nothing_saved_starts_fresh_then_resumes(tmp_path):
    out = tmp_path / "r"
    first = run_cli("run", *fast_args(**QUICK), "--out", out, "--resume", "--quiet")
    assert first.exit_code == 0, first
    assert first.stderr == f"stratum: note: no checkpoint at {out / 'checkpoint.pt'}; starting fresh\n"
    second = run_cli("run", *fast_args(epochs=2, steps_per_epoch=3), "--out", out, "--resume", "--quiet")
    assert second.exit_code == 0 and second.stderr == ""  # the checkpoint is used now: no note


def test_resume_still_refuses_a_corrupt_checkpoint(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    result = run_cli("run", *fast_args(**QUICK), "--out", tmp_path, "--resume")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "checkpoint")


def test_a_run_removes_its_own_killed_write_leftovers_only(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    own = [".checkpoint.pt.k1ll3d_0.tmp", ".summary.json.abcdefgh.tmp"]
    others = [".checkpoint.pt.short.tmp", ".checkpoint.pt.abcdefgh.tmp.keep", ".other.pt.abcdefgh.tmp",
              ".summary.json.x.abcdefgh.tmp", "checkpoint.pt.abcdefgh.tmp", "notes.txt"]
    for name in own + others:
        (out / name).write_bytes(b"partial")
    result = run_cli("run", *fast_args(**QUICK), "--out", out, "--quiet")
    assert result.exit_code == 0, result
    assert sorted(os.listdir(out)) == sorted(others + ["checkpoint.pt", "summary.json"])


def test_remove_leftovers_matches_exactly_one_files_pattern(tmp_path):
    for name in (".a.abcdefgh.tmp", ".a.b.abcdefgh.tmp", ".ab.abcdefgh.tmp", ".a.abcdefg.tmp", ".a.ABCDEFGH.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in remove_leftovers(tmp_path / "a")] == [".a.abcdefgh.tmp"]
    atomic_write_bytes(tmp_path / "a.b", b"new")  # the next write of a.b removes its own leftover
    assert sorted(os.listdir(tmp_path)) == [".a.ABCDEFGH.tmp", ".a.abcdefg.tmp", ".ab.abcdefgh.tmp", "a.b"]


def test_a_write_in_flight_is_never_removed(tmp_path):
    import time

    newer = tmp_path / ".a.abcdefgh.tmp"
    newer.write_bytes(b"being written")
    assert remove_leftovers(tmp_path / "a", older_than=time.time() - 60) == []
    assert newer.exists()


# -- D: working-directory defaults, downloads, data root -----------------------------------------

@pytest.mark.parametrize("command, flag", [
    (["run", "--help"], "--data-root"),
    (["run", "--profile", "torch", "--help"], "--torch-trace-dir"),  # help lists the options of the chosen profiler
    (["bench", "--help"], "--db"),
])
def test_working_directory_defaults_say_so_in_help(command, flag):
    result = run_cli(*command)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    start = text.index(flag)
    following = text[start:start + 400]
    assert "relative to the working directory" in following, following


def _failing_download(monkeypatch, cls_name="MNIST"):
    import torchvision.datasets as tvd

    def download(self):  # what a download with no network does: folders first, then the failure
        os.makedirs(os.path.join(self.root, cls_name, "raw"), exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://example/, got: no network")

    monkeypatch.setattr(getattr(tvd, cls_name), "download", download)


@pytest.mark.parametrize("data_root, existing", [("new/deep/data", None), ("kept", "kept"), ("kept/sub", "kept")])
def test_a_failed_download_leaves_no_empty_folders(monkeypatch, data_root, existing):
    _failing_download(monkeypatch)
    if existing:
        Path(existing).mkdir()
        Path(existing, "unrelated.txt").write_text("x")
    result = run_cli("run", *fast_args(**QUICK), "--dataset", "mnist", "--download", "--data-root", data_root)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "mnist", "no network")
    if existing:
        assert sorted(os.listdir(existing)) == ["unrelated.txt"]
        assert _cwd_entries() == [existing]
    else:
        assert _cwd_entries() == []


@pytest.mark.parametrize("data_root, download", [("f", False), ("f", True), ("f/sub", True), ("f/sub", False)])
def test_a_data_root_that_is_a_file_is_one_line(data_root, download):
    Path("f").write_text("not a folder")
    result = run_cli("run", *fast_args(**QUICK), "--dataset", "mnist", "--data-root", data_root,
                     "--download" if download else "--no-download")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--data-root", "f is not a directory")
    assert _cwd_entries() == ["f"]


def test_a_run_failing_on_its_input_leaves_no_output_folders():
    result = run_cli("run", *fast_args(**QUICK), "--dataset", "mnist", "--data-root", "nothing-here",
                     "--out", "runs/a", "--json", "j/s.json", "--tensorboard", "tb/x")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "mnist files not found")
    assert _cwd_entries() == []
