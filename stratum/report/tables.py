"""Rendering comparison rows as a table, CSV, JSON or Markdown."""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap

from ..io import json_safe

FORMATS = ("table", "csv", "json", "markdown")


def _num(x, spec: str = ".2f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "never" if x > 0 else "-inf"
    return format(x, spec)


def _ci(pair, spec: str = ".2f") -> str:
    low, high = (pair or [None, None])[:2]
    if low is None and high is None:
        return ""
    return f" [{_num(low, spec)}, {_num(high, spec)}]"


def _ratio(value, outcome) -> str:
    """A speed-up (or an interval end): ``1.33x``; ``n/r`` where this configuration's run did
    not reach the target (never ``0.00x``); ``inf`` where the baseline's did not."""
    from . import stats  # numpy: not at import time (`stratum report --help` stays light)

    if outcome == stats.NOT_REACHED:
        return "n/r"
    if outcome == stats.BASELINE_NOT_REACHED:
        return "inf"
    return "-" if value is None else f"{value:.2f}x"


def ratio_text(value, outcome, ci, ends, with_ci: bool = True) -> str:
    """A paired speed-up and, when it has one, its interval: ``1.33x [n/r, 1.50x]`` (see :func:`_ratio`).
    ``ci``/``ends``: the interval's ends and their outcomes, as :func:`stats.paired_speedup` returns them."""
    text = _ratio(value, outcome)
    if with_ci and any(ends):
        text += f" [{_ratio(ci[0], ends[0])}, {_ratio(ci[1], ends[1])}]"
    return text


def _speedup(r: dict, name: str, with_ci: bool = True) -> str:
    if r["baseline"] == r["label"]:
        return "baseline"
    if r["paired"] is None or r[f"speedup_{name}_outcome"] is None:
        return "-"
    return ratio_text(r[f"speedup_{name}"], r[f"speedup_{name}_outcome"], r[f"speedup_{name}_ci"],
                      r[f"speedup_{name}_ci_outcome"], with_ci)


def _pairs(r: dict) -> str:
    """Paired seeds of the speed-up and what became of them: ``5 (1 n/r, 1 unpaired)``."""
    from . import stats  # numpy: not at import time (`stratum report --help` stays light)

    paired = (r.get("paired") or {}).get("all_in")
    if paired is None:
        return "-"
    counts = paired["counts"]
    notes = [f"{counts[k]} {short}" for k, short in ((stats.NOT_REACHED, "n/r"), (stats.BASELINE_NOT_REACHED, "inf"),
                                                      (stats.NEITHER, "neither")) if counts[k]]
    unpaired = len(paired["unpaired"]["baseline_only"]) + len(paired["unpaired"]["arm_only"])
    if unpaired:
        notes.append(f"{unpaired} unpaired")
    return str(paired["pairs"]) + (f" ({', '.join(notes)})" if notes else "")


def display_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the summary table: per configuration its finished seeds (``!``: fewer
    than :data:`stats.MIN_SEEDS`), median test accuracy at the best validation epoch with its
    interval, median peak, runs reaching the target, median time to it (all-in) and the paired
    speed-up over the baseline with its interval (see :func:`footnotes`)."""
    regression = any(r["task"] == "regression" for r in rows)
    m, spec = ("loss", ".4g") if regression else ("acc", ".2f")
    headers = ["configuration", "seeds", f"test {m} at best val", "best loss" if regression else "peak acc", "reached",
               "TTT s all-in", "speed-up all-in"]
    cells = []
    for r in rows:
        cells.append([
            r["label"], f"{len(r['seeds'])}" + (" !" if r["few_seeds"] else ""),
            _num(r["at_best_val_median"], spec) + _ci(r["at_best_val_ci"], spec), _num(r["peak_median"], spec),
            f"{r['reached']}/{r['runs']}", _num(r["ttt_all_in_median"]), _speedup(r, "all_in"),
        ])
    return headers, cells


def detail_rows(rows: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The detail tables (``--detail``) as ``(name, headers, cells)``: ``accuracy`` (peak with its
    interval; final accuracy: mean, standard deviation and spread = max - min across seeds; failed
    runs) and ``time to target`` (both clocks with intervals, the speed-up excluding the prior, the
    pairs behind the speed-ups)."""
    regression = any(r["task"] == "regression" for r in rows)
    m, spec = ("loss", ".4g") if regression else ("acc", ".2f")
    accuracy = (["configuration", "best loss" if regression else "peak acc", f"final {m} mean", "final std",
                 "final spread", "failed"],
                [[r["label"], _num(r["peak_median"], spec) + _ci(r["peak_ci"], spec), _num(r["final_mean"], spec),
                  _num(r["final_std"], spec), _num(r["final_spread"], spec),
                  str(r["failed"]) + (f" (+{r['diverged']} diverged)" if r["diverged"] else "")] for r in rows])
    time = (["configuration", "TTT s excl. prior", "TTT s all-in", "speed-up excl. prior", "pairs"],
            [[r["label"], _num(r["ttt_excl_prior_median"]) + _ci(r["ttt_excl_prior_ci"]),
              _num(r["ttt_all_in_median"]) + _ci(r["ttt_all_in_ci"]), _speedup(r, "excl_prior"), _pairs(r)]
             for r in rows])
    return [("accuracy", *accuracy), ("time to target", *time)]


def footnotes(rows: list[dict], settings: dict | None = None, *, detail: bool = False) -> list[str]:
    """The lines under the tables: each target and where it comes from, how speed-ups and
    intervals are computed, what ``n/r``, ``inf`` and ``!`` mean (when they appear), unpaired seeds."""
    from . import stats

    settings = {"resamples": 2000, "confidence": 0.95, "seed": 0, **(settings or {})}
    lines = []
    targets: dict = {}
    for r in rows:
        if r["target"] is not None:
            targets.setdefault((r["target"], r["target_source"], r["metric"]), []).append(r["label"])
    for (target, source, metric), labels in targets.items():
        what = "test loss" if metric == "test_loss" else "test acc"
        which = "every configuration" if len(labels) == len(rows) else ", ".join(labels)
        lines.append(f"target {what} {target:.4g} = {source} (for {which})")
    lines.append(f"[low, high] = {settings['confidence']:.0%} confidence interval of the median over seeds: percentile "
                 f"bootstrap (scipy.stats.bootstrap, {settings['resamples']} resamples, seed {settings['seed']}).")
    if any(r["paired"] for r in rows):
        lines.append("speed-up = the median over seeds of (baseline time / this configuration's time) to the target, "
                     "runs paired by seed; " + ("all-in clock, and excluding the prior in the detail table."
                                                if detail else "all-in clock (--detail: also excluding the prior)."))
    outcomes = {o for r in rows for name in stats.CLOCKS
                for o in [r[f"speedup_{name}_outcome"], *r[f"speedup_{name}_ci_outcome"]]}
    if stats.NOT_REACHED in outcomes:
        lines.append("n/r = not reached: this configuration's run (in the median or at the interval's end) never reached "
                     "the target: its speed-up is below every finite one, not a number (never counted as zero).")
    if stats.BASELINE_NOT_REACHED in outcomes:
        lines.append("inf = the baseline's run never reached the target while this configuration's did.")
    few = [r["label"] for r in rows if r["few_seeds"]]
    if few:
        lines.append(f"! fewer than {stats.MIN_SEEDS} finished seeds ({', '.join(few)}): medians and intervals are rough "
                     "(a bootstrap over so few seeds undercovers); run more seeds before drawing conclusions.")
    unpaired = [f"{r['label']} ({_pairs(r)})" for r in rows if r["paired"]
                and (r["paired"]["all_in"]["unpaired"]["baseline_only"] or r["paired"]["all_in"]["unpaired"]["arm_only"])]
    if unpaired:
        lines.append("seeds run by only one of a configuration and its baseline are left out of its speed-up: "
                     + "; ".join(unpaired))
    return lines


def render(rows: list[dict], fmt: str, *, title: str = "stratum report", settings: dict | None = None,
           detail: bool = False) -> str:
    """``rows`` (from :func:`stratum.report.compare.compare`) as ``fmt``: ``json`` (every figure),
    ``csv`` (every number of a row, no per-seed values), ``table`` or ``markdown`` (the summary
    table, the detail table too with ``detail``, then :func:`footnotes`). A table fits in
    :data:`WIDTH` columns. ``settings``: the bootstrap's ``resamples``, ``confidence``, ``seed``."""
    if fmt == "json":
        return json.dumps(json_safe(rows), indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        return _csv(rows)
    tables = [(title, *display_rows(rows))]
    if detail:
        tables += [(f"{title}: {name}", headers, cells) for name, headers, cells in detail_rows(rows)]
    notes = footnotes(rows, settings, detail=detail)
    if fmt == "markdown":
        out = []
        for heading, headers, cells in tables:
            out += [f"**{heading}**", "", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
            out.append("")
        out += [f"- {line}" for line in notes]
        return "\n".join(out) + "\n"
    text = "\n".join(_rich_table(headers, cells, heading, light=True) for heading, headers, cells in tables)
    return text + "\n" + "".join(textwrap.fill(line, WIDTH, subsequent_indent="  ") + "\n" for line in notes)


WIDTH = 100  # columns of a terminal table and its notes


def _rich_table(headers, cells, title, *, light: bool = False) -> str:
    """A terminal table at most :data:`WIDTH` columns wide (cells wrap). ``light``: no vertical rules
    (eight more columns for the numbers)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, header_style="bold", show_lines=False, box=box.SIMPLE_HEAD if light else box.HEAVY_HEAD,
                  pad_edge=not light, show_edge=not light, padding=(0, 1, 0, 0) if light else (0, 1))
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for row in cells:  # as Text: cells such as "[n/r, 1.50x]" are no markup (nor measured as such)
        table.add_row(*map(Text, row))
    buffer = io.StringIO()
    Console(file=buffer, width=WIDTH, highlight=False, markup=False).print(table)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


CSV_COLUMNS = [
    "label", "strategy", "task", "runs", "n_seeds", "few_seeds", "unfinished", "failed", "diverged", "baseline", "metric",
    "target", "target_source", "reached",
    "at_best_val_median", "at_best_val_ci", "at_best_val_mean",
    "ttt_excl_prior_median", "ttt_excl_prior_ci", "ttt_all_in_median", "ttt_all_in_ci",
    "speedup_all_in", "speedup_all_in_outcome", "speedup_all_in_ci", "speedup_all_in_ci_outcome",
    "speedup_excl_prior", "speedup_excl_prior_outcome", "speedup_excl_prior_ci", "speedup_excl_prior_ci_outcome",
    "pairs", "pairs_not_reached", "pairs_baseline_not_reached", "pairs_neither", "unpaired_seeds",
    "peak_median", "peak_ci", "peak_mean", "peak_spread", "peak_std",
    "final_median", "final_mean", "final_spread", "final_std",
    "time_to_peak_median", "time_to_peak_all_in_median", "prior_s_median",
]


def _csv_fields(r: dict) -> dict:
    """A row's CSV cells: the row plus the counts its nested ``paired`` entry holds (the per-seed
    values are in ``--format json`` only)."""
    from . import stats

    paired = (r.get("paired") or {}).get("all_in")
    counts = paired["counts"] if paired else {}
    unpaired = paired["unpaired"] if paired else {}
    return {**r, "n_seeds": len(r["seeds"]), "pairs": paired["pairs"] if paired else None,
            "pairs_not_reached": counts.get(stats.NOT_REACHED), "pairs_baseline_not_reached": counts.get(stats.BASELINE_NOT_REACHED),
            "pairs_neither": counts.get(stats.NEITHER),
            "unpaired_seeds": len(unpaired.get("baseline_only", [])) + len(unpaired.get("arm_only", [])) if paired else None}


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = []
    for col in CSV_COLUMNS:
        if col.endswith(("_ci", "_ci_outcome")):
            header += [col + "_low", col + "_high"]
        else:
            header.append(col)
    writer.writerow(header)
    for r in map(_csv_fields, rows):
        out = []
        for col in CSV_COLUMNS:
            value = r.get(col)
            if col.endswith(("_ci", "_ci_outcome")):
                low, high = (value or [None, None])[:2]
                out += [_csv_value(low), _csv_value(high)]
            else:
                out.append(_csv_value(value))
        writer.writerow(out)
    return buffer.getvalue()


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "inf" if math.isinf(v) and v > 0 else repr(v)
    return str(v)
