"""Rendering comparison rows as a table, CSV, JSON or Markdown."""

from __future__ import annotations

import csv
import io
import json
import math

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


def display_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the human-readable table.

    TTT = time to target (median seconds); speed-up = baseline median TTT /
    this configuration's; spread = max - min across seeds; peak = median.
    """
    regression = any(r["task"] == "regression" for r in rows)
    m, spec = ("loss", ".4g") if regression else ("acc", ".2f")
    headers = [
        "configuration", "runs", f"target {m}", "reached",
        "TTT s excl. prior [95% CI]", "TTT s all-in [95% CI]",
        "speed-up all-in [95% CI]", "speed-up excl.",
        "best loss" if regression else "peak acc", f"final {m} mean", "final spread", "final std", "failed",
    ]
    cells = []
    for r in rows:
        speed = "baseline" if r["baseline"] == r["label"] else _num(r["speedup_all_in"], ".2f") + "x" * (r["speedup_all_in"] is not None)
        speed_ci = "" if r["baseline"] == r["label"] else _ci(r["speedup_all_in_ci"])
        excl = "" if r["baseline"] == r["label"] else _num(r["speedup_excl_prior"], ".2f") + "x" * (r["speedup_excl_prior"] is not None)
        cells.append([
            r["label"], str(r["runs"]), _num(r["target"], spec), f"{r['reached']}/{r['runs']}",
            _num(r["ttt_excl_prior_median"]) + _ci(r["ttt_excl_prior_ci"]),
            _num(r["ttt_all_in_median"]) + _ci(r["ttt_all_in_ci"]),
            speed + speed_ci, excl,
            _num(r["peak_median"], spec), _num(r["final_mean"], spec),
            _num(r["final_spread"], spec), _num(r["final_std"], spec),
            str(r["failed"]) + (f" (+{r['diverged']} diverged)" if r["diverged"] else ""),
        ])
    return headers, cells


def render(rows: list[dict], fmt: str, *, title: str = "stratum report") -> str:
    if fmt == "json":
        return json.dumps(json_safe(rows), indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        return _csv(rows)
    headers, cells = display_rows(rows)
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    return _rich_table(headers, cells, title)


def _rich_table(headers, cells, title) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, header_style="bold", show_lines=False)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for row in cells:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=200, highlight=False, markup=False).print(table)
    return buffer.getvalue()


CSV_COLUMNS = [
    "label", "strategy", "task", "runs", "unfinished", "failed", "diverged", "baseline", "metric", "target",
    "target_source", "reached",
    "ttt_excl_prior_median", "ttt_excl_prior_ci", "ttt_all_in_median", "ttt_all_in_ci",
    "speedup_all_in", "speedup_all_in_ci", "speedup_excl_prior", "speedup_excl_prior_ci",
    "peak_median", "peak_ci", "peak_mean", "peak_spread", "peak_std",
    "final_median", "final_mean", "final_spread", "final_std",
    "time_to_peak_median", "time_to_peak_all_in_median", "prior_s_median",
]


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = []
    for col in CSV_COLUMNS:
        if col.endswith("_ci"):
            header += [col + "_low", col + "_high"]
        else:
            header.append(col)
    writer.writerow(header)
    for r in rows:
        out = []
        for col in CSV_COLUMNS:
            value = r.get(col)
            if col.endswith("_ci"):
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
