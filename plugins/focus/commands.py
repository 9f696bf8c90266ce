"""``stratum prior build`` and ``stratum prior info``.

``prior build`` takes the same model, data, optimiser and capture flags as
``stratum run`` (generated from the same option declarations), trains an SGD
source run while capturing, and writes one prior file atomically. It refuses to
overwrite an existing file unless ``--force``.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import click

from stratum.errors import PriorError
from stratum.paths import UserPath

EXCLUDED_CORE = {"out", "json", "name", "resume", "strategy", "checkpoint_every", "tensorboard", "log", "profile", "patience"}
SOURCE_KINDS = ("model", "dataset", "initializer", "optimizer")


def _option_fields(pm) -> dict:
    from stratum.config import CORE_FIELDS, plugin_option_fields

    from . import CaptureOptions

    fields = {name: f for name, f in CORE_FIELDS.items() if name not in EXCLUDED_CORE}
    components = [c for c in pm.registries.all() if c.kind in SOURCE_KINDS]
    plugin = plugin_option_fields(components)
    for f in attrs.fields(CaptureOptions):
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


@click.group("prior", help="Build and inspect focus priors (captured parameters and gradients).")
def prior_group():
    pass


@prior_group.command("build", cls=_BuildCommand,
                     help="Train an SGD source run while capturing, and write the prior to --out.")
@click.option("--out", "prior_out", required=True, type=UserPath(dir_okay=False),
              help="Prior file to write (e.g. vgg11-digits.prior.safetensors).")
@click.option("--force", is_flag=True, default=False, help="Overwrite --out if it exists.")
@click.option("--config", "config_file", type=UserPath(dir_okay=False), default=None,
              help="Read options from a TOML file; flags given here win over it.")
@click.pass_context
def build_command(ctx, prior_out, force, config_file, **_kwargs):
    from stratum.cli import explicit_values, get_pm
    from stratum.config import load_toml, make_config

    from . import CaptureOptions
    from .prior import save_prior
    from .source import build_prior
    from .strategy import capture_config_from

    pm = get_pm(ctx)
    core, plugin = _option_fields(pm)
    if prior_out.exists() and not force:
        raise PriorError(f"{prior_out} exists; pass --force to overwrite it")
    if prior_out.exists() and prior_out.is_dir():
        raise PriorError(f"--out {prior_out} is a directory; give a file name")
    values = explicit_values(ctx, list(core) + list(plugin))
    toml_values = load_toml(config_file) if config_file is not None else None
    from stratum.config import plugin_option_fields

    all_plugin = plugin_option_fields(pm.registries.all())
    config = make_config(values, toml_values=toml_values, toml_source=str(config_file or ""), plugin_fields=all_plugin)
    config = attrs.evolve(config, strategy="sgd", quiet=True)
    names = {f.name for f in attrs.fields(CaptureOptions)}
    from stratum.options import build

    capture_options = build(CaptureOptions, {k: v for k, v in config.options.items() if k in names})
    capture = capture_config_from(capture_options, seed=config.seed)
    from stratum.config import check_names

    check_names(config, pm.registries)  # fail on a bad name before announcing anything
    from stratum.paths import probe_output

    probe_output(prior_out, "file", "--out")  # an unwritable destination fails before the source run
    click.echo(f"building prior: sgd on {config.model} / {config.dataset}, seed {config.seed}, {config.epochs} epochs")
    prior, info = build_prior(config, pm, capture)
    prior.metadata["build_s"] = info["seconds"]
    save_prior(prior_out, prior)
    rows = sum(e["rows"] for e in prior.metadata["captured"])
    click.echo(f"wrote {prior_out}: {len(prior.metadata['captured'])} tensors, {rows} rows, "
               f"{info['seconds']:.1f} s (source best val acc {_fmt(info['source_best_val_acc'])})")
    return 0


@prior_group.command("info", help="Print a prior's metadata.")
@click.argument("path", type=UserPath())
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the raw metadata JSON.")
def info_command(path, as_json):
    from .prior import load_prior

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
        f"versions:     " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"layers:       {len(meta['architecture'])} parameterised, {len(meta['captured'])} tensors captured",
    ]
    for entry in meta["captured"]:
        shape = "x".join(map(str, entry["shape"]))
        dead = f", {entry['dead_share']:.1%} of tracked elements dead" if entry.get("dead_share") else ""
        lines.append(f"  {entry['key']:<28} {shape:<14} {entry['rows']:>7} rows (of {entry['offered']} offered{dead})")
    click.echo("\n".join(lines))
    return 0


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
