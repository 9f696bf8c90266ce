"""The "tuned values" table of a ``stratum bench --tune`` bench: what each arm's tuning chose.

The bench stores it in its settings (``spec["settings"]["tuned"]``: arm label ->
``{"values", "value", "trial", "trials", "study"}``, and ``spec["settings"]["tune"]``: the
searched options, the tuning seeds and the objective); see :mod:`stratum.tune.arms`.
"""

from __future__ import annotations

import io
import json


def tuned_rows(spec: dict) -> tuple[list[str], list[dict], dict]:
    """``(headers, rows, tune settings)`` of the table; no rows for a bench without ``--tune``."""
    settings = spec.get("settings") or {}
    tuned = settings.get("tuned") if isinstance(settings, dict) else None
    if not isinstance(tuned, dict) or not tuned:
        return [], [], {}
    tune = settings.get("tune") if isinstance(settings.get("tune"), dict) else {}
    names = list(dict.fromkeys(k for arm in tuned.values() if isinstance(arm, dict)
                               for k in (arm.get("values") or {})))
    objective = tune.get("objective", "objective")
    headers = ["arm", *names, f"{objective} (tuning seeds)", "trials", "best trial", "study"]
    rows = []
    for label, arm in tuned.items():
        if not isinstance(arm, dict):
            continue
        values = arm.get("values") or {}
        rows.append({"arm": label, **{n: values.get(n) for n in names}, headers[-4]: arm.get("value"),
                     "trials": arm.get("trials"), "best trial": arm.get("trial"), "study": arm.get("study")})
    return headers, rows, tune


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_tuned(spec: dict, fmt: str) -> str:
    """The table in ``fmt`` (``table``, ``markdown``, ``csv``; ``json`` gives an object); ``""``
    when the bench tuned nothing."""
    headers, rows, tune = tuned_rows(spec)
    if not rows:
        return ""
    seeds = ",".join(map(str, tune.get("seeds") or []))
    title = f"tuned values (chosen on seeds {seeds}, never evaluation seeds; searched: {', '.join(tune.get('params') or [])})"
    if fmt == "json":
        return json.dumps({"title": title, "rows": rows}, indent=2, allow_nan=False) + "\n"
    cells = [[_cell(row.get(h)) for h in headers] for row in rows]
    if fmt == "csv":
        import csv

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(cells)
        return buffer.getvalue()
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells]) + "\n"
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for header in headers:
        table.add_column(header)
    for row in cells:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=140, highlight=False).print(table)
    return buffer.getvalue()
