"""``stratum prior build``, ``stratum prior merge`` and ``stratum prior info``.

``prior build`` takes the same model, data, optimiser and capture flags as
``stratum run`` (generated from the same option declarations), trains an SGD
source run while capturing, and writes one prior file atomically. It refuses to
overwrite an existing file unless ``--force``. ``--kind nowcast`` captures nowcast
windows (``--nowcast-every/-window/-horizon``) instead of per-step gradients.
Several source runs go into one prior with ``--source-seeds 0,1,2`` and/or repeated
``--source model=vgg11,dataset=synthetic`` (each ``--source`` is one run: these
options over the command's own; every source runs once per seed). ``prior merge``
combines priors of one kind and geometry (:func:`.prior.merge_priors`).
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import click

from stratum.errors import ConfigError, PriorError
from stratum.paths import UserPath

from .choices import PRIOR_KINDS

EXCLUDED_CORE = {"out", "json", "name", "resume", "strategy", "checkpoint_every", "tensorboard", "log", "profile", "patience"}
SOURCE_KINDS = ("model", "dataset", "initializer", "optimizer")


def _option_fields(pm) -> dict:
    from stratum.config import CORE_FIELDS, plugin_option_fields

    from . import CaptureOptions, NowcastGeometryOptions

    fields = {name: f for name, f in CORE_FIELDS.items() if name not in EXCLUDED_CORE}
    components = [c for c in pm.registries.all() if c.kind in SOURCE_KINDS]
    plugin = plugin_option_fields(components)
    for f in attrs.fields(CaptureOptions) + attrs.fields(NowcastGeometryOptions):
        plugin.setdefault(f.name, f)
    return fields, plugin


class _BuildCommand(click.Command):
    """Adds the run/capture flags lazily, once the plugin manager exists."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        if not getattr(self, "_extended", False):
            from stratum.cli import click_option, get_pm

            core, plugin = _option_fields(get_pm(ctx))
            extra = [click_option(f) for f in list(core.values()) + list(plugin.values())]
            self.params = self.params + extra
            self._extended = True
            params = super().get_params(ctx)
        return params


@click.group("prior", help="Build, merge and inspect priors: focus (captured parameters and gradients) and nowcast (checkpoint windows).")
def prior_group():
    pass


@prior_group.command("build", cls=_BuildCommand,
                     help="Train SGD source runs while capturing, and write the prior to --out.")
@click.option("--out", "prior_out", required=True, type=UserPath(dir_okay=False),
              help="Prior file to write (e.g. vgg11-digits.prior.safetensors).")
@click.option("--force", is_flag=True, default=False, help="Overwrite --out if it exists.")
@click.option("--config", "config_file", type=UserPath(dir_okay=False), default=None,
              help="Read options from a TOML file; flags given here win over it.")
@click.option("--kind", "prior_kind", type=click.Choice(PRIOR_KINDS), default="focus", show_default=True,
              help="focus: per-step gradient rows (strategy focus); nowcast: checkpoint windows (strategy nowcast).")
@click.option("--source-seeds", default=None, metavar="SEEDS",
              help="Run every source once per seed (0,1,2 or 0-4) instead of once with --seed.")
@click.option("--source", "sources", multiple=True, metavar="KEY=VALUE,...",
              help="One source run: these options over the command's (e.g. model=vgg11,dataset=synthetic). Repeatable.")
@click.pass_context
def build_command(ctx, prior_out, force, config_file, prior_kind, source_seeds, sources, **_kwargs):
    from stratum.cli import explicit_values, get_pm
    from stratum.config import check_names, load_toml, make_config, plugin_option_fields
    from stratum.options import build
    from stratum.paths import probe_output

    from . import CaptureOptions, NowcastCaptureOptions, NowcastGeometryOptions
    from .prior import merge_priors, save_prior
    from .source import build_prior

    pm = get_pm(ctx)
    core, plugin = _option_fields(pm)
    if prior_out.exists() and not force:
        raise PriorError(f"{prior_out} exists; pass --force to overwrite it")
    if prior_out.exists() and prior_out.is_dir():
        raise PriorError(f"--out {prior_out} is a directory; give a file name")
    values = explicit_values(ctx, list(core) + list(plugin))
    toml_values = load_toml(config_file) if config_file is not None else None
    all_plugin = plugin_option_fields(pm.registries.all())
    all_plugin.update({f.name: f for f in attrs.fields(NowcastGeometryOptions)})
    options_class = CaptureOptions if prior_kind == "focus" else NowcastCaptureOptions
    names = {f.name for f in attrs.fields(options_class)}
    other = {f.name for f in attrs.fields(CaptureOptions if prior_kind == "nowcast" else NowcastGeometryOptions)}
    configs = []  # every source run, checked before any trains
    for overrides in [_source_overrides(text) for text in sources] or [{}]:
        where = f"--source {_source_text(overrides)}" if overrides else "options"
        config = make_config({**values, **overrides}, toml_values=toml_values, toml_source=str(config_file or ""),
                             plugin_fields=all_plugin, values_source=where)
        ignored = sorted((other - names) & set(config.explicit or ()))
        if ignored:  # a geometry option of the other kind (flag, TOML key or --source) would be silently ignored
            raise ConfigError(f"{'--' + ignored[0].replace('_', '-')} does not apply to --kind {prior_kind} priors "
                              f"({'--nowcast-every/-window/-horizon' if prior_kind == 'nowcast' else '--capture-*'} "
                              "set their geometry)")
        config = attrs.evolve(config, strategy="sgd", quiet=True)
        check_names(config, pm.registries)  # fail on a bad name before announcing anything
        for seed in _seeds(source_seeds, config.seed):
            configs.append(attrs.evolve(config, seed=seed))
    probe_output(prior_out, "file", "--out")  # an unwritable destination fails before the source runs
    priors = []
    seconds = 0.0
    for config in configs:
        capture_options = build(options_class, {k: v for k, v in config.options.items() if k in names})
        capture = _capture_config(prior_kind, capture_options, config.seed)
        click.echo(f"building {prior_kind} prior: sgd on {config.model} / {config.dataset}, seed {config.seed}, "
                   f"{config.epochs} epochs")
        prior, info = build_prior(config, pm, capture)
        prior.metadata["build_s"] = info["seconds"]
        seconds += info["seconds"]
        priors.append((f"source {len(priors) + 1}", prior))
    prior = priors[0][1] if len(priors) == 1 else merge_priors(priors)
    prior.metadata["build_s"] = seconds
    save_prior(prior_out, prior)
    rows = sum(e["rows"] for e in prior.metadata["captured"])
    best = [p.metadata.get("source_best_val_acc") for _, p in priors]
    click.echo(f"wrote {prior_out}: {len(priors)} source run(s), {len(prior.metadata['captured'])} tensors, {rows} rows, "
               f"{seconds:.1f} s (source best val acc {', '.join(_fmt(b) for b in best)})")
    return 0


def _capture_config(kind: str, options, seed: int):
    if kind == "nowcast":
        from .nowcast_strategy import nowcast_capture_config

        return nowcast_capture_config(options, seed)
    from .strategy import capture_config_from

    return capture_config_from(options, seed=seed)


def _source_overrides(text: str) -> dict:
    """``model=vgg11,dataset=synthetic,hidden=16,16`` -> options; a part without ``=`` continues the value before it."""
    values: dict = {}
    key = None
    for part in text.split(","):
        if "=" in part:
            key, _, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if not key:
                raise ConfigError(f"--source expects KEY=VALUE,..., got {text!r}")
            values[key] = value.strip()
        elif key is None:
            raise ConfigError(f"--source expects KEY=VALUE,..., got {text!r}")
        elif part.strip():
            values[key] += "," + part.strip()
    if not values:
        raise ConfigError(f"--source expects KEY=VALUE,..., got {text!r}")
    for forbidden in ("seed", "strategy"):
        if forbidden in values:
            raise ConfigError(f"--source cannot set {forbidden} (use --source-seeds; source runs are sgd)")
    return values


def _source_text(overrides: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items())


def _seeds(text: str | None, default: int) -> list[int]:
    if text is None:
        return [default]
    from stratum.bench.spec import seeds_axis

    return seeds_axis(text, "--source-seeds")


@prior_group.command("merge", help="Combine priors of one kind and geometry into one (their sources are listed).")
@click.argument("paths", nargs=-1, required=True, type=UserPath(dir_okay=False))
@click.option("-o", "--out", "prior_out", required=True, type=UserPath(dir_okay=False), help="Prior file to write.")
@click.option("--force", is_flag=True, default=False, help="Overwrite --out if it exists.")
def merge_command(paths, prior_out, force):
    from stratum.paths import probe_output

    from .prior import load_prior, merge_priors, save_prior

    if len(paths) < 2:
        raise PriorError("prior merge needs at least two priors")
    if prior_out.exists() and not force:
        raise PriorError(f"{prior_out} exists; pass --force to overwrite it")
    priors = [(str(p), load_prior(p)) for p in paths]
    merged = merge_priors(priors)
    probe_output(prior_out, "file", "--out")
    save_prior(prior_out, merged)
    rows = sum(e["rows"] for e in merged.metadata["captured"])
    click.echo(f"wrote {prior_out}: {len(merged.metadata['sources'])} source runs from {len(paths)} priors, "
               f"{len(merged.metadata['captured'])} tensors, {rows} rows")
    return 0


@prior_group.command("info", help="Print a prior's metadata.")
@click.argument("path", type=UserPath())
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the raw metadata JSON.")
def info_command(path, as_json):
    from .prior import load_prior, sources_of

    prior = load_prior(path)  # full validation, not only the header
    meta = prior.metadata
    if as_json:
        click.echo(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    opt = meta["optimizer"]
    cap = meta["capture"]
    lines = [
        f"prior:        {path}",
        f"format:       {meta['format']}",
        f"model:        {meta['model']} {meta.get('model_options', {})}",
        f"dataset:      {meta['dataset']} ({meta.get('split', {}).get('source', '?')}, "
        f"val_fraction {meta.get('split', {}).get('val_fraction')}, split_seed {meta.get('split', {}).get('split_seed')})",
        f"source run:   seed {meta['seed']}, {meta.get('epochs')} epochs, {meta.get('steps')} steps, "
        f"best val acc {_fmt(meta.get('source_best_val_acc'))}",
        f"optimizer:    {opt['name']} lr {opt['lr']} momentum {opt.get('momentum')} batch {opt.get('batch_size')}",
        f"capture:      layers {cap['layers']}, every {cap['every']}, max {cap['max_samples']} rows/tensor, "
        f"track {cap['track']}, {cap['dtype']}, window {cap['trajectory']['window']}, ema {cap['trajectory']['ema_decays']}",
        f"kind:         {prior.kind}" + (f" (every {cap['nowcast']['every']}, window {cap['nowcast']['window']}, "
                                         f"horizon {cap['nowcast']['horizon']})" if prior.kind == "nowcast" else ""),
        f"versions:     " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"layers:       {len(meta['architecture'])} parameterised, {len(meta['captured'])} tensors captured",
    ]
    sources = sources_of(meta)
    lines.append(f"sources:      {len(sources)} run(s)")
    for i, src in enumerate(sources):
        lines.append(f"  {i}: {src['model']} {src.get('model_options', {})} on {src['dataset']}, seed {src['seed']}, "
                     f"{src.get('epochs')} epochs, {src.get('parameters')} parameters, {src.get('rows')} rows")
    for entry in meta["captured"]:
        shape = "x".join(map(str, entry["shape"]))
        dead = f", {entry['dead_share']:.1%} of tracked elements dead" if entry.get("dead_share") else ""
        lines.append(f"  {entry['key']:<28} {shape:<14} {entry['rows']:>7} rows (of {entry.get('offered', '?')} offered{dead})")
    click.echo("\n".join(lines))
    return 0


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
