"""The run configuration: core options, plugin options, TOML loading.

Precedence, lowest first: field defaults < ``--config FILE.toml`` < flags given
on the command line. Core options live on :class:`RunConfig`; options declared
by plugin components live in ``RunConfig.options`` (only the ones actually set)
and reach their component through :func:`options_for`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs

from .errors import ConfigError
from .options import build, coerce, flag_name, option, option_meta
from .registry import closest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@attrs.frozen
class RunConfig:
    """Everything that decides a run. Each field is a ``stratum run`` flag and a TOML key."""

    strategy: str = option("sgd", "Training strategy: how parameters move.", kind="strategy")
    model: str = option("vgg11", "Model architecture from the zoo.", kind="model")
    dataset: str = option("digits", "Data set (digits is offline and the default).", kind="dataset")
    init: str = option("he-normal", "Weight initialiser.", kind="initializer")
    optimizer: str = option("sgd", "Optimiser that applies updates.", kind="optimizer")
    epochs: int = option(20, "Maximum number of epochs.", min=1)
    batch_size: int = option(32, "Mini-batch size.", min=1)
    lr: float = option(0.01, "Learning rate.", min=0, min_exclusive=True)
    momentum: float = option(0.9, "Momentum (sgd-family optimisers).", min=0, max=1, max_exclusive=True)
    nesterov: bool = option(False, "Use Nesterov momentum (needs momentum > 0).")
    weight_decay: float = option(0.0, "L2 weight decay.", min=0)
    seed: int = option(0, "Seed for initialisation, shuffling and everything random.", min=0)
    deterministic: bool = option(False, "Use deterministic kernels (slower; needed for bit-exact resume).")
    device: str = option("auto", "cpu, cuda, cuda:N, or auto (cuda when available).", pattern=r"auto|cpu|cuda(:\d+)?")
    threads: int = option(0, "torch intra-op threads (0 = torch's default).", min=0)
    val_fraction: float = option(0.1, "Share of the training data held out for validation.", min=0, max=0.9, min_exclusive=True)
    split_seed: int = option(0, "Seed of the train/validation split (fixed across run seeds).", min=0)
    patience: int = option(0, "Early stopping: epochs without a validation gain before stopping (0 = off).", min=0)
    steps_per_epoch: int = option(0, "Cap on training steps per epoch (0 = a full pass).", min=0)
    eval_batch_size: int = option(1024, "Batch size for validation and test evaluation.", min=1)
    data_root: Path = option(Path("data"), "Where file-backed data sets live.")
    download: bool = option(False, "Allow torchvision data sets to download missing files.")
    resident: str = option("auto", "Keep data as device tensors: auto (when small), always, never (DataLoader).", choices=("auto", "always", "never"))
    loader_workers: int = option(0, "DataLoader worker processes when data is not resident.", min=0)
    profile: tuple = option((), "Profiler to attach (repeatable or comma-separated).", type=str, multiple=True, kind="profiler")
    out: Path | None = option(None, "Run directory for checkpoints and the summary.", type=Path)
    json: Path | None = option(None, "Write the run summary JSON here.", type=Path)
    name: str | None = option(None, "Run name (a sub-directory of --out): letters, digits, _ . - (at most 100, starting with a letter or digit).",
                              type=str, pattern=r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
    checkpoint_every: int = option(1, "Write a checkpoint every N epochs (needs --out).", min=1)
    resume: bool = option(False, "Resume from the checkpoint in the run directory.")
    quiet: bool = option(False, "Print only the final result table.")
    tensorboard: Path | None = option(None, "Also log scalars to this TensorBoard directory.", type=Path)
    # Options declared by plugin components, exactly as set by the user.
    options: dict = attrs.field(factory=dict, repr=False)

    def to_dict(self) -> dict:
        data = attrs.asdict(self, recurse=False)
        out = {}
        for key, value in data.items():
            if key == "options":
                continue
            out[key] = _jsonable(value)
        out.update({k: _jsonable(v) for k, v in sorted(self.options.items())})
        return out

    def fingerprint(self) -> str:
        """A hash of what decides the trajectory, for matching checkpoints to configs."""
        data = self.to_dict()
        for key in NON_TRAJECTORY_KEYS:
            data.pop(key, None)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def run_dir(self) -> Path | None:
        from .paths import safe_join

        if self.out is None:
            return None
        return safe_join(self.out, self.name) if self.name else self.out


# Keys that change presentation or bookkeeping, not where the parameters go.
NON_TRAJECTORY_KEYS = (
    "epochs", "out", "json", "name", "quiet", "resume", "profile", "tensorboard",
    "threads", "checkpoint_every", "patience", "data_root", "download", "loader_workers",
    "eval_batch_size", "resident", "device",
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


CORE_FIELDS = {f.name: f for f in attrs.fields(RunConfig) if option_meta(f) is not None}


def plugin_option_fields(components: Iterable) -> dict[str, attrs.Attribute]:
    """Plugin-declared option fields by name; the first declaration of a name wins."""
    fields: dict[str, attrs.Attribute] = {}
    for component in components:
        if component.options is None:
            continue
        for f in attrs.fields(component.options):
            if f.name in CORE_FIELDS or f.name in fields:
                continue
            fields[f.name] = f
    return fields


def load_toml(path: Path) -> dict:
    """Read a TOML file into a dict, with one-line errors."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a TOML file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


def normalise_keys(values: Mapping[str, Any], known: Iterable[str], source: str) -> dict:
    """Accept ``batch-size`` and ``batch_size``; reject unknown keys with a suggestion."""
    known = set(known)
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            hint = closest(name, known)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            raise ConfigError(f"unknown key {key!r} in {source}{suggestion}")
        if isinstance(value, dict):
            raise ConfigError(f"{source}: key {key!r} must be a value, not a table")
        out[name] = value
    return out


def make_config(
    values: Mapping[str, Any] | None = None,
    *,
    toml_values: Mapping[str, Any] | None = None,
    toml_source: str = "config file",
    plugin_fields: Mapping[str, attrs.Attribute] | None = None,
) -> RunConfig:
    """Merge defaults < TOML < explicit values into a validated :class:`RunConfig`."""
    plugin_fields = dict(plugin_fields or {})
    known = set(CORE_FIELDS) | set(plugin_fields)
    merged_core: dict[str, Any] = {}
    merged_plugin: dict[str, Any] = {}
    layers = []
    if toml_values:
        layers.append((normalise_keys(toml_values, known, toml_source), toml_source))
    if values:
        layers.append((normalise_keys(values, known, "options"), ""))
    for layer, source in layers:
        for key, value in layer.items():
            if key in CORE_FIELDS:
                merged_core[key] = coerce(CORE_FIELDS[key], value, source)
            else:
                field = plugin_fields[key]
                value = coerce(field, value, source)
                if value is not None:
                    _check_plugin_value(field, value)
                merged_plugin[key] = value
    try:
        return RunConfig(**merged_core, options=merged_plugin)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _check_plugin_value(field: attrs.Attribute, value: Any) -> None:
    if field.validator is not None:
        field.validator(None, field, value)


def options_for(component, config: RunConfig):
    """Build a component's options instance from the options the user set."""
    if component.options is None:
        return None
    names = {f.name for f in attrs.fields(component.options)}
    given = {k: v for k, v in config.options.items() if k in names}
    return build(component.options, given)


def check_names(config: RunConfig, registries) -> None:
    """Every name-valued option must name a registered component."""
    for field in attrs.fields(RunConfig):
        meta = option_meta(field)
        if not meta or not meta["kind"]:
            continue
        value = getattr(config, field.name)
        for name in (value if meta["multiple"] else (value,)):
            registries[meta["kind"]].get(name)


def describe_fields() -> list[tuple[str, str, Any]]:
    """(flag, help, default) for docs."""
    rows = []
    for field in attrs.fields(RunConfig):
        meta = option_meta(field)
        if meta is None:
            continue
        rows.append((flag_name(field), meta["help"], field.default))
    return rows
