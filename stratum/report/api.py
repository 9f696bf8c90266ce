"""Building a report from a results store: numbers, tables, plots."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs

from ..store import ResultsStoreError, Store
from ..registry import closest
from .compare import check_baseline, compare, group_rows, group_values
from .tables import FORMATS, _num, render


@attrs.define
class Report:
    bench: str
    recipe: str | None
    groups: list
    rows: list  # comparison rows
    records: list  # raw store rows
    settings: dict = attrs.field(factory=dict)  # how the intervals were computed (see statistics())
    spec: dict = attrs.field(factory=dict)  # the bench's stored spec (settings: a --tune bench's chosen values)


def load(db: Path, bench: str | None = None) -> tuple[str, str | None, list[dict], dict]:
    store = Store(db, create=False)
    try:
        benches = store.benches()
        if not benches:
            raise ResultsStoreError(f"{db} holds no bench results yet")
        if bench is None:
            info = benches[-1]
        else:
            info = next((b for b in benches if b["name"] == bench), None)
            if info is None:
                names = [b["name"] for b in benches]
                hint = closest(bench, names)
                raise ResultsStoreError(f"no bench named {bench!r} in {db}" + (f"; did you mean {hint!r}?" if hint else "")
                                        + f" (benches: {', '.join(names)})")
        rows = store.bench_rows(info["name"])
    finally:
        store.close()
    return info["name"], info.get("recipe"), rows, info["spec"]


def build_report(db: Path, *, bench: str | None = None, baseline: str | None = None, target: float | None = None,
                 target_fraction: float = 0.99, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Report:
    name, recipe, records, spec = load(db, bench)
    groups = group_rows(records)
    # A baseline the user named must exist (the default strategy=sgd may simply be absent).
    check_baseline(baseline, [g.label for g in groups], lambda key: group_values(groups, key))
    if baseline is None:  # a recipe may name its own baseline (optimizers: variant=SGD)
        baseline = (spec.get("settings") or {}).get("baseline")
    rows = compare(groups, baseline=baseline, target=target, target_fraction=target_fraction,
                   resamples=resamples, confidence=confidence, seed=seed)
    return Report(name, recipe, groups, rows, records, statistics(resamples=resamples, confidence=confidence, seed=seed,
                                                                  target_fraction=target_fraction, target=target),
                  spec)


def statistics(**settings) -> dict:
    """What a report's numbers mean (the ``statistics`` entry of ``report --format json``): the
    bootstrap's ``resamples``, ``confidence`` and ``seed``, its method, the seed count below which a
    configuration is marked, and the target settings."""
    from . import stats

    return {"bootstrap": "scipy.stats.bootstrap", "method": stats.CI_METHOD, "statistic": "median",
            "speedup": "median over seeds of baseline time / configuration time to the target, paired by seed",
            "min_seeds": stats.MIN_SEEDS, **settings}


def render_study(report: Report, fmt: str, registries=None) -> str | None:
    """The tables after the comparison: a ``--tune`` bench's tuned values (:mod:`.tuned`), then its
    recipe's study; ``None`` when there is neither."""
    from .tuned import render_tuned

    tuned, text = render_tuned(report.spec, fmt), _recipe_study(report, fmt, registries)
    if fmt == "json" and tuned:
        import json

        return json.dumps({**(json.loads(text) if text else {}), "tuned": json.loads(tuned)}, indent=2) + "\n"
    return (tuned + ("\n" if tuned and text and fmt != "csv" else "") + (text or "")) or None


def _recipe_study(report: Report, fmt: str, registries=None) -> str | None:
    from .studies import study

    result = study(report.recipe, report.groups, registries)
    if result is None or not result[2]:
        return None
    title, headers, rows = result
    if fmt == "json":
        import json

        from ..io import json_safe

        return json.dumps(json_safe({"study": report.recipe, "title": title, "rows": rows}), indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=headers, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    cells = [[_cell(r.get(h)) for h in headers] for r in rows]
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines) + "\n" + _tuned_toml(report.recipe, rows)
    from .tables import _rich_table

    return _rich_table(headers, cells, title) + _tuned_toml(report.recipe, rows)


def tuned_toml(report: Report, registries=None) -> str | None:
    """The bench TOML of the values a tuning bench chose (``baselines-tune``: ``[bench] recipe =
    "baselines"`` plus one ``[[variant]]`` with its ``lr`` each), for ``stratum bench --config FILE``.
    ``None`` for a bench of another recipe, or until every variant has a decided value."""
    if report.recipe != "baselines-tune":
        return None
    from .studies import study

    result = study(report.recipe, report.groups, registries)
    return _chosen_toml(report.recipe, result[2]) if result is not None and result[2] else None


def _chosen_toml(recipe: str | None, rows: list[dict]) -> str | None:
    """:func:`~.studies.chosen_lrs_toml` of a ``baselines-tune`` study's rows; ``None`` for other recipes."""
    if recipe != "baselines-tune":
        return None
    from .studies import chosen_lrs_toml

    return chosen_lrs_toml(rows)


def _tuned_toml(recipe: str | None, rows: list[dict]) -> str:
    """After the ``baselines-tune`` table: the bench TOML of the chosen rates, to save and pass to
    ``stratum bench --config FILE`` (empty for other recipes, or until every variant is decided)."""
    text = _chosen_toml(recipe, rows)
    if text is None:
        return ""
    return "\n# the chosen rates: save as a .toml file and run `stratum bench --config FILE`\n" + text


def _cell(v) -> str:
    if isinstance(v, float):
        return _num(v, ".4g")
    return "-" if v is None else str(v)


def failures(report: Report) -> list[dict]:
    return [r for r in report.records if r["status"] != "done"]


def bench_report(db: Path, *, bench: str | None = None, baseline: str | None = None, plot_dir: Path | None = None,
                 show_table: bool = True, fmt: str = "table", stream=None, registries=None) -> Report:
    """What ``stratum bench`` prints when it finishes."""
    stream = stream or sys.stdout
    report = build_report(db, bench=bench, baseline=baseline)
    if show_table:
        stream.write(render(report.rows, fmt, title=f"stratum report: bench {report.bench!r}", settings=report.settings))
        study = render_study(report, fmt, registries)
        if study:
            stream.write(study)
    if plot_dir is not None:
        from .plots import write_all

        for path in write_all(report.groups, plot_dir):
            print(f"wrote {path}", file=stream)
    stream.flush()
    return report


__all__ = ["FORMATS", "Report", "bench_report", "build_report", "load", "render", "render_study"]
