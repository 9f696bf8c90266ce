"""The bad-input census: how many bad inputs get one clear line and exit code 2.

Each case is a real ``python -m stratum ...`` process with one bad input: an
unknown name, an invalid or out-of-range value (every integer and float option,
core and plugin, is discovered from the registries and tried with several bad
values), a missing, corrupt or mis-shaped file, an unwritable destination, an
impossible combination. A case is *handled* when the process exits with code 2
and prints exactly one stderr line, ``stratum: error: ...`` (warnings about
plugins aside), with no traceback, within the time limit. Anything else (exit
0 or 1, several lines, a hang) is counted and listed.

    python benchmarks/bad_inputs.py --workers 2 [--json out.json] [--only SUBSTRING]

Runs in a temporary directory (also the working directory and HOME of every
case), so nothing is written anywhere else. Cases that accept the bad input
train for at most a few steps (``--epochs 1 --steps-per-epoch 2`` is added
where the case does not set them).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness

TIMEOUT_S = 90
FAST = ["--model", "mlp", "--hidden", "16", "--epochs", "1", "--steps-per-epoch", "2", "--threads", "1"]
HUGE = ["4294967297", "9223372036854775808", "18446744073709551616", "1" + "0" * 40]  # beyond 64 bits: 2 and 3


def _fast_without(flags: set[str]) -> list[str]:
    out, skip = [], False
    for i, item in enumerate(FAST):
        if skip:
            skip = False
            continue
        if item in flags:
            skip = True
            continue
        out.append(item)
    return out


def run_case(args: list[str], flags_given: set[str]) -> list[str]:
    """``stratum run`` with the fast settings, minus the ones the case sets itself."""
    return ["run", *_fast_without(flags_given), *args]


def option_cases() -> list[tuple[str, str, list[str]]]:
    """Out-of-range and ill-typed values for every numeric option, discovered from the registries."""
    from stratum.config import CORE_FIELDS, plugin_option_fields
    from stratum.options import flag_name, option_meta

    pm = harness.plugin_manager()
    fields = {**CORE_FIELDS, **plugin_option_fields(pm.registries.all())}
    cases = []
    for name, field in sorted(fields.items()):
        meta = option_meta(field)
        flag = flag_name(field)
        kind = meta["type"]
        if kind is int:
            # one past each declared bound (every int option has one since issue 10), and non-integers
            values = ["abc", "1.5", str(int(meta["max"]) + 1 if meta["max"] is not None else 2**63)]
            if meta["min"] is not None:
                values.append(str(int(meta["min"]) - 1))
        elif kind is float:
            values = ["abc", "nan", "inf", "1e400"]
            if meta["min"] is not None:
                values.append(repr(float(meta["min"]) - 1.0))
            if meta["max"] is not None:
                values.append(repr(float(meta["max"]) + 1.0))
        elif meta["choices"]:
            values = ["no-such-choice"]
        elif meta["kind"]:
            values = ["no-such-" + meta["kind"].replace("_", "-")]
        else:
            continue
        for value in values:
            cases.append((f"option {flag}={value}", "invalid value", run_case([flag, value], {flag})))
    return cases


def file_setup(tmp: Path) -> dict[str, Path]:
    """Bad files, written once; each case names the ones it uses."""
    files = {}
    (tmp / "afile").write_text("x")
    files["afile"] = tmp / "afile"
    files["adir"] = tmp / "adir"
    files["adir"].mkdir()
    files["garbage"] = tmp / "garbage.bin"
    files["garbage"].write_bytes(os.urandom(512))
    files["empty"] = tmp / "empty.bin"
    files["empty"].write_bytes(b"")
    files["bad_toml"] = tmp / "bad.toml"
    files["bad_toml"].write_text("epochs = = 3\n")
    files["latin1_toml"] = tmp / "latin1.toml"
    files["latin1_toml"].write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    files["trunc_ckpt_dir"] = tmp / "trunc-run"
    files["trunc_ckpt_dir"].mkdir()
    (files["trunc_ckpt_dir"] / "checkpoint.pt").write_bytes(b"PK\x03\x04" + os.urandom(100))
    # results stores: not a store, summary not JSON, a table without a column
    db = tmp / "notjson.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE junk (a)")
    con.commit()
    con.close()
    files["foreign_db"] = db
    return files


def static_cases(files: dict[str, Path], tmp: Path) -> list[tuple[str, str, list[str]]]:
    f = {k: str(v) for k, v in files.items()}
    long_name = "n" * 300
    c: list[tuple[str, str, list[str]]] = []
    add = lambda name, cls, args: c.append((name, cls, args))  # noqa: E731
    # unknown names
    for kind in ("strategy", "model", "dataset", "init", "optimizer", "profile"):
        add(f"unknown --{kind}", "unknown name", run_case([f"--{kind}", "nosuch"], {f"--{kind}"}))
    add("unknown list kind", "unknown name", ["list", "nosuchkind"])
    add("unknown command", "unknown name", ["nosuchcommand"])
    add("unknown flag", "unknown name", run_case(["--no-such-flag", "1"], set()))
    add("-p unknown plugin", "unknown name", ["-p", "nosuchplugin", "list"])
    add("focus unknown regressor", "unknown name", run_case(["--strategy", "focus", "--regressor", "nosuch"], set()))
    add("focus unknown policy", "unknown name", run_case(["--strategy", "focus", "--policy", "nosuch"], set()))
    add("bench unknown strategy", "unknown name", ["bench", "--strategies", "sgd,nosuch", "--seeds", "1", "--db", f"{tmp}/b1.sqlite", "--dry-run"])
    add("bench unknown model", "unknown name", ["bench", "--models", "nosuch", "--seeds", "1", "--db", f"{tmp}/b2.sqlite", "--dry-run"])
    add("bench unknown axis key", "unknown name", ["bench", "--axis", "nosuch=1,2", "--seeds", "1", "--db", f"{tmp}/b3.sqlite", "--dry-run"])
    add("bench unknown recipe", "unknown name", ["bench", "--recipe", "nosuch", "--dry-run"])
    # combinations
    add("nesterov without momentum", "combination", run_case(["--nesterov", "--momentum", "0"], {"--momentum"}))
    add("resume without out", "combination", run_case(["--resume"], set()))
    add("batch norm, batch size 1", "combination", run_case(["--batch-norm", "--batch-size", "1"], set()))
    add("bench seeds huge", "invalid value", ["bench", "--seeds", "0,9223372036854775808", "--db", f"{tmp}/b4.sqlite", "--dry-run"])
    add("bench seeds garbage", "invalid value", ["bench", "--seeds", "a-b", "--db", f"{tmp}/b5.sqlite", "--dry-run"])
    add("bench workers 0", "invalid value", ["bench", "--workers", "0", "--db", f"{tmp}/b6.sqlite", "--dry-run"])
    add("bench axis no values", "invalid value", ["bench", "--axis", "lr=", "--db", f"{tmp}/b7.sqlite", "--dry-run"])
    add("bench axis bad value", "invalid value", ["bench", "--axis", "lr=abc", "--db", f"{tmp}/b8.sqlite", "--dry-run"])
    # config files
    add("--config missing", "file", run_case(["--config", f"{tmp}/missing.toml"], set()))
    add("--config directory", "file", run_case(["--config", f["adir"]], set()))
    add("--config malformed", "file", run_case(["--config", f["bad_toml"]], set()))
    add("--config not UTF-8", "file", run_case(["--config", f["latin1_toml"]], set()))
    add("--config garbage", "file", run_case(["--config", f["garbage"]], set()))
    for key, value in (("epochs", "'three'"), ("lr", "[1]"), ("seed", "-1"), ("model", "3"), ("threads", "4294967297"),
                       ("split_seed", "18446744073709551616"), ("profile", "{a = 1}"), ("nosuchkey", "1"),
                       ("batch_size", "true"), ("hidden", "'x'"), ("width", "'wide'"), ("out", "[]")):
        path = tmp / f"cfg-{key}.toml"
        path.write_text(f"{key} = {value}\n")
        add(f"TOML {key} = {value}", "file", run_case(["--config", str(path)], set()))
    for key, value in (("workers", "'four'"), ("seeds", "'x-y'"), ("strategies", "3"), ("nosuch", "1")):
        path = tmp / f"bench-{key}.toml"
        path.write_text(f"[bench]\n{key} = {value}\n")
        add(f"bench TOML {key} = {value}", "file", ["bench", "--config", str(path), "--db", f"{tmp}/bt-{key}.sqlite", "--dry-run"])
    path = tmp / "bench-variant.toml"
    path.write_text("[[variant]]\nname = 3\nstrategy = 'sgd'\n")
    add("bench TOML variant name not a string", "file", ["bench", "--config", str(path), "--db", f"{tmp}/bv.sqlite", "--dry-run"])
    # checkpoints and priors
    add("--resume corrupt checkpoint", "file", run_case(["--out", f["trunc_ckpt_dir"], "--resume"], set()))
    for what in ("garbage", "empty", "adir", "afile"):
        add(f"prior info {what}", "file", ["prior", "info", f[what]])
        add(f"run --prior {what}", "file", run_case(["--strategy", "focus", "--prior", f[what]], set()))
    add("prior info missing", "file", ["prior", "info", f"{tmp}/nosuch.prior"])
    # results stores
    for what in ("garbage", "empty", "adir", "foreign_db"):
        add(f"report {what}", "file", ["report", f[what]])
    add("report missing", "file", ["report", f"{tmp}/nosuch.sqlite"])
    add("bench --db :memory:", "destination", ["bench", "--db", ":memory:", "--seeds", "1", "--epochs", "1", "--model", "mlp", "--steps-per-epoch", "1"])
    add("bench --db garbage", "file", ["bench", "--db", f["garbage"], "--seeds", "1", "--model", "mlp", "--epochs", "1", "--steps-per-epoch", "1"])
    # destinations
    add("--json into a directory", "destination", run_case(["--json", f["adir"]], set()))
    add("--json under a regular file", "destination", run_case(["--json", f"{f['afile']}/s.json"], set()))
    add("--json name too long", "destination", run_case(["--json", f"{tmp}/{long_name}.json"], set()))
    add("--out is a regular file", "destination", run_case(["--out", f["afile"]], set()))
    add("--out under a regular file", "destination", run_case(["--out", f"{f['afile']}/r"], set()))
    add("--out name too long", "destination", run_case(["--out", f"{tmp}/{long_name}"], set()))
    add("--name escapes", "destination", run_case(["--out", f"{tmp}/o", "--name", "../x"], set()))
    add("--tensorboard under a regular file", "destination", run_case(["--tensorboard", f"{f['afile']}/tb"], set()))
    add("--capture-out under a regular file", "destination",
        run_case(["--strategy", "focus", "--capture-out", f"{f['afile']}/c"], set()))
    add("bench --db under a regular file", "destination", ["bench", "--db", f"{f['afile']}/b.sqlite", "--seeds", "1", "--model", "mlp", "--epochs", "1", "--steps-per-epoch", "1"])
    add("bench --db is a directory", "destination", ["bench", "--db", f["adir"], "--seeds", "1", "--dry-run"])
    add("prior build --out under a regular file", "destination", ["prior", "build", "--out", f"{f['afile']}/p.prior", *FAST])
    add("prior build --out is a directory", "destination", ["prior", "build", "--out", f["adir"], *FAST])
    add("--data-root is a regular file", "destination", run_case(["--dataset", "mnist", "--data-root", f["afile"]], set()))
    add("missing mnist without download", "file", run_case(["--dataset", "mnist", "--data-root", f"{tmp}/nodata"], set()))
    add("missing cifar10 with download (no network)", "file", run_case(["--dataset", "cifar10", "--data-root", f"{tmp}/nodata2", "--download"], set()))
    return c


def report_cases(tmp: Path) -> list[tuple[str, str, list[str]]]:
    """report options on a real (tiny) store: made by one bench run first."""
    db = tmp / "real.sqlite"
    done = subprocess.run([sys.executable, "-m", "stratum", "bench", "--db", str(db), "--seeds", "2", *FAST, "--quiet",
                           "--no-report"], capture_output=True, text=True, cwd=tmp, env=_env(tmp))
    if done.returncode != 0:
        return [("report setup (bench)", "setup", ["bench", "--db", str(db), "--seeds", "2", *FAST])]
    d = str(db)
    c = []
    for target in ("nan", "inf", "-1", "-inf", "abc"):
        c.append((f"report --target {target}", "invalid value", ["report", d, "--target", target]))
    for baseline in ("strategy=nosuch", "nosuchkey=1", "no-such-label"):
        c.append((f"report --baseline {baseline}", "unknown name", ["report", d, "--baseline", baseline]))
    c.append(("report --bench nosuch", "unknown name", ["report", d, "--bench", "nosuch"]))
    c.append(("report --plot under a regular file", "destination", ["report", d, "--plot", f"{tmp}/afile/plots"]))
    c.append(("report --output into a directory", "destination", ["report", d, "--output", f"{tmp}/adir"]))
    c.append(("report --tensorboard under a regular file", "destination", ["report", d, "--tensorboard", f"{tmp}/afile/tb"]))
    c.append(("report --bootstrap 0", "invalid value", ["report", d, "--bootstrap", "0"]))
    c.append(("report --confidence 1.5", "invalid value", ["report", d, "--confidence", "1.5"]))
    c.append(("report --seed huge", "invalid value", ["report", d, "--seed", HUGE[2]]))
    c.append(("report --format nosuch", "invalid value", ["report", d, "--format", "nosuch"]))
    # a store whose summary_json is not JSON (copy of the real one, then damaged)
    broken = tmp / "broken-summary.sqlite"
    broken.write_bytes(db.read_bytes())
    con = sqlite3.connect(broken)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
        if "summary_json" in cols:
            con.execute(f"UPDATE {table} SET summary_json = '{{not json'")
    con.commit()
    con.close()
    c.append(("report store with summary_json not JSON", "file", ["report", str(broken)]))
    return c


def _env(tmp: Path) -> dict:
    return {**os.environ, "HOME": str(tmp), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def judge(done) -> tuple[bool, str]:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and "plugin warning" not in ln]
    if done.returncode != 2:
        return False, f"exit {done.returncode}"
    if "Traceback" in done.stderr:
        return False, "traceback"
    if len(lines) != 1:
        return False, f"{len(lines)} stderr lines"
    if not lines[0].startswith("stratum: error: "):
        return False, "not a 'stratum: error:' line"
    return True, lines[0]


def execute(case, tmp: Path) -> dict:
    name, cls, args = case
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "stratum", *map(str, args)], capture_output=True, text=True,
                              cwd=tmp, env=_env(tmp), timeout=TIMEOUT_S)
        ok, detail = judge(done)
        stderr = done.stderr
    except subprocess.TimeoutExpired:
        ok, detail, stderr = False, f"no end within {TIMEOUT_S} s", ""
    return {"case": name, "class": cls, "args": list(map(str, args)), "handled": ok, "detail": detail,
            "stderr_tail": stderr[-400:], "seconds": round(time.perf_counter() - t0, 2)}


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, threads=None)
    parser.add_argument("--workers", type=int, default=2, help="cases run at the same time")
    parser.add_argument("--only", default=None, help="Only cases whose name contains this.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        cases = static_cases(file_setup(tmp), tmp) + option_cases() + report_cases(tmp)
        if args.only:
            cases = [c for c in cases if args.only in c[0]]
        print(f"{len(cases)} cases", flush=True)

        def one(case):
            result = execute(case, tmp)
            mark = "ok " if result["handled"] else "BAD"
            print(f"{mark} {result['seconds']:6.1f}s  {result['case']}: {result['detail'][:150]}", flush=True)
            return result

        with ThreadPoolExecutor(args.workers) as pool:
            results = list(pool.map(one, cases))
    handled = sum(r["handled"] for r in results)
    by_class: dict[str, list[int]] = {}
    for r in results:
        by_class.setdefault(r["class"], [0, 0])
        by_class[r["class"]][0] += r["handled"]
        by_class[r["class"]][1] += 1
    for r in results:
        if not r["handled"]:
            print(f"NOT HANDLED  {r['case']}: {r['detail']}  | {r['stderr_tail'].strip().splitlines()[-1:] }")
    for cls, (ok, n) in sorted(by_class.items()):
        print(f"{cls:<14} {ok}/{n}")
    print(f"handled {handled} of {len(results)} bad inputs with one line and exit 2")
    return harness.finish(args, {"handled": handled, "total": len(results), "cases": results})


if __name__ == "__main__":
    main()
