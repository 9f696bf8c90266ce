"""The on-disk prior: one safetensors file whose header carries the metadata JSON.

Layout: tensor ``"{layer}:{kind}/{column}"`` for every captured tensor (``kind``
``w`` or ``b``; columns ``w``, ``grad``, ``delta``, ``ema_disp``, ``layer_rms``,
``step``, and ``w_center`` when the capture recorded centred averages; a *nowcast*
prior, whose capture configuration has a ``nowcast`` entry, has ``w``, ``delta``,
``layer_rms``, ``position``, ``disp`` and ``step``), and in the safetensors header (``__metadata__``) one entry
``stratum_prior`` holding the JSON metadata: format, architecture signature
(every parameterised layer with its parameter shapes), captured tensors and
their row counts, model and model options, dataset, split, seed, epochs and
steps, optimiser settings, capture configuration, stratum/torch versions.

Safety: safetensors is a flat header plus raw bytes; loading it runs no code.
Writing goes through :func:`stratum.io.atomic_write_bytes` (temp file, fsync,
rename): a crash leaves the old prior or the new one, never a torn file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import torch

from stratum.errors import PriorError
from stratum.io import atomic_write_bytes
from stratum.schema import ANY, Fields, Float, Int, ListOf, MapOf, Optional, Str, check

FORMAT = "stratum-prior/1"
METADATA_KEY = "stratum_prior"
COLUMNS = ("w", "grad", "delta", "ema_disp", "layer_rms", "step", "w_center", "position", "disp")
SOURCE_PREFIX = "src"  # a multi-source nowcast prior keys each source's tensors "src{i}/{layer}:{kind}"
REQUIRED_META = ("format", "architecture", "captured", "model", "dataset", "seed", "capture", "optimizer", "versions")

# Every metadata field a prior may hold, with its type (see stratum.schema). A prior whose
# metadata parses but breaks this is refused with one line naming the file and the field.
CAPTURE_SCHEMA = Fields(
    required={
        "layers": Str(("auto", "conv", "all")), "every": Int(1), "max_samples": Int(1), "track": Int(1),
        "dtype": Str(("float32", "float16", "bfloat16", "float64")),
        "trajectory": Fields(required={"window": Int(1), "ema_decays": ListOf(Float(0))}),
    },
    optional={"seed": Int(0), "center": Int(0),
              "nowcast": Fields(required={"every": Int(1), "window": Int(2), "horizon": Int(1)})},
)
SOURCE_SCHEMA = Fields(
    required={"model": str, "dataset": str, "seed": Int(0)},
    optional={"model_options": MapOf(ANY), "epochs": Int(0), "steps": Int(0), "lr": Float(0), "rows": Int(0),
              "parameters": Int(0), "source_best_val_acc": Optional(Float())},
)
METADATA_SCHEMA = Fields(
    required={
        "format": Str((FORMAT,)),
        "architecture": ListOf(Fields(required={"layer": str, "params": MapOf(ListOf(Int(0)))},
                                      optional={"type": str})),
        "captured": ListOf(Fields(required={"key": str, "shape": ListOf(Int(0)), "rows": Int(0)},
                                  optional={"offered": Int(0), "dead_share": Optional(Float(0)),
                                            "dead_rows": Int(0)})),
        "model": str,
        "dataset": str,
        "seed": Int(0),
        "capture": CAPTURE_SCHEMA,
        "optimizer": Fields(required={"lr": Float(0)},
                            optional={"name": str, "momentum": Float(0), "nesterov": bool, "weight_decay": Float(0),
                                      "batch_size": Int(1)}),
        "versions": MapOf(str),
    },
    optional={
        "created": str,
        "model_options": MapOf(ANY),
        "split": Fields(optional={"val_fraction": Float(0), "split_seed": Int(0), "source": str}),
        "strategy": str,
        "epochs": Int(0),
        "steps": Int(0),
        "source_best_val_acc": Optional(Float()),
        "source_diverged": Optional(bool),
        "init": str,
        "capture_report": MapOf(Optional(Float())),
        "build_s": Float(0),
        # share of tracked elements that never moved (left out of the prior; issue 15)
        "dead_share": Optional(Float(0)),
        # the source runs whose rows the prior holds (several after --source-seeds/--source or prior merge)
        "sources": ListOf(SOURCE_SCHEMA),
    },
)


@attrs.define(eq=False)
class Prior:
    metadata: dict
    tensors: dict  # key "layer:kind" -> {column: tensor}

    @property
    def source_lr(self) -> float:
        return float(self.metadata["optimizer"]["lr"])

    @property
    def kind(self) -> str:
        return prior_kind(self.metadata)


def prior_kind(metadata: dict) -> str:
    """``nowcast`` for a prior of nowcast windows (its capture has nowcast geometry), else ``focus``."""
    return "nowcast" if metadata["capture"].get("nowcast") else "focus"


def sources_of(metadata: dict) -> list[dict]:
    """The source runs of a prior: its ``sources`` list, or the one run a single-source prior describes."""
    if metadata.get("sources"):
        return [dict(s) for s in metadata["sources"]]
    entry = {"model": metadata["model"], "dataset": metadata["dataset"], "seed": metadata["seed"],
             "model_options": dict(metadata.get("model_options", {})), "lr": metadata["optimizer"]["lr"],
             "rows": sum(e["rows"] for e in metadata["captured"]),
             "parameters": sum(math.prod(shape) for layer in metadata["architecture"] for shape in layer["params"].values())}
    for name in ("epochs", "steps", "source_best_val_acc"):
        if name in metadata:
            entry[name] = metadata[name]
    return [entry]


def check_focus_prior(metadata: dict, label) -> None:
    """Refuse, in one line, a nowcast prior given to strategy focus."""
    if prior_kind(metadata) == "nowcast":
        raise PriorError(f"prior {label} is a nowcast prior (checkpoint windows, no gradients); "
                         "strategy focus needs a focus prior: use it with --strategy nowcast")


def save_prior(path: Path, prior: Prior) -> None:
    """Write ``prior`` to ``path`` atomically; PriorError for non-finite values, OutputError when unwritable."""
    from safetensors.torch import save

    flat = {}
    for key, columns in prior.tensors.items():
        for column, tensor in columns.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise PriorError(f"refusing to write a prior with non-finite values in {key}/{column}")
            flat[f"{key}/{column}"] = tensor.detach().cpu().contiguous()
    header = {METADATA_KEY: json.dumps(prior.metadata, sort_keys=True, allow_nan=False)}
    atomic_write_bytes(Path(path), save(flat, metadata=header), "prior")


def load_prior(path: Path) -> Prior:
    """Read and validate a prior; any problem is one :class:`PriorError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.exists():
        raise PriorError(f"prior not found: {path}")
    if path.is_dir():
        raise PriorError(f"prior path is a directory, not a prior file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PriorError(f"cannot read prior {path}: {exc.strerror}") from None
    metadata = read_metadata_bytes(raw, path)
    try:
        flat = load(raw)
    except (SafetensorError, ValueError, RuntimeError, OSError, OverflowError) as exc:
        raise PriorError(f"prior {path} is corrupt or truncated ({type(exc).__name__})") from None
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in flat.items():
        key, _, column = name.rpartition("/")
        if not key or column not in COLUMNS:
            raise PriorError(f"prior {path} is corrupt: unexpected tensor {name!r}")
        tensors.setdefault(key, {})[column] = tensor
    _validate(path, metadata, tensors)
    return Prior(metadata, tensors)


def read_metadata(path: Path) -> dict:
    """Only the metadata (for ``stratum prior info``), with the same checks on the header."""
    path = Path(path)
    if not path.exists():
        raise PriorError(f"prior not found: {path}")
    if path.is_dir():
        raise PriorError(f"prior path is a directory, not a prior file: {path}")
    return read_metadata_bytes(path.read_bytes(), path)


def read_metadata_bytes(raw: bytes, path: Path) -> dict:
    # safetensors: 8-byte little-endian header length, then a JSON header.
    if len(raw) < 8:
        raise PriorError(f"prior {path} is corrupt or truncated (file of {len(raw)} bytes)")
    n = int.from_bytes(raw[:8], "little")
    if n <= 0 or 8 + n > len(raw):
        raise PriorError(f"prior {path} is corrupt or truncated (header length {n} exceeds the file)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
        text = header["__metadata__"][METADATA_KEY]
        metadata = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise PriorError(f"prior {path} is not a stratum prior (no readable '{METADATA_KEY}' metadata)") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise PriorError(f"prior {path} has format {metadata.get('format') if isinstance(metadata, dict) else None!r}, expected {FORMAT!r}")
    missing = [k for k in REQUIRED_META if k not in metadata]
    if missing:
        raise PriorError(f"prior {path} metadata lacks {', '.join(missing)}")
    check(metadata, METADATA_SCHEMA, f"prior {path} metadata", PriorError)
    return metadata


def _validate(path: Path, metadata: dict, tensors: dict) -> None:
    declared = {entry["key"]: entry for entry in metadata["captured"]}
    if set(declared) != set(tensors):
        missing = sorted(set(declared) - set(tensors))
        what = f"tensors for {missing[0]} are missing" if missing else "it holds tensors its metadata does not list"
        raise PriorError(f"prior {path} is corrupt: {what}")
    for key, columns in tensors.items():
        rows = {len(t) for t in columns.values()}
        target = "disp" if prior_kind(metadata) == "nowcast" else "grad"
        if len(rows) != 1 or target not in columns or "w" not in columns:
            raise PriorError(f"prior {path} is corrupt: columns of {key} disagree")
        if declared[key]["rows"] != len(columns["w"]):
            raise PriorError(f"prior {path} is corrupt: metadata field 'captured' says {declared[key]['rows']} rows "
                             f"for {key}, its tensors hold {len(columns['w'])}")
        for column, tensor in columns.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise PriorError(f"prior {path} is corrupt: non-finite values in {key}/{column}")
    if not isinstance(metadata["optimizer"].get("lr"), (int, float)) or not math.isfinite(metadata["optimizer"]["lr"]):
        raise PriorError(f"prior {path} metadata has no valid source learning rate")


# ---------------------------------------------------------------------------
# Architecture matching
# ---------------------------------------------------------------------------


def _shape_text(params: dict) -> str:
    return ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in sorted(params.items())) or "no parameters"


def check_architecture(prior_signature: list[dict], model_signature: list[dict], prior_path="the prior") -> None:
    """Raise :class:`PriorError` naming the first layer where the two signatures differ."""
    for i in range(max(len(prior_signature), len(model_signature))):
        a = prior_signature[i] if i < len(prior_signature) else None
        b = model_signature[i] if i < len(model_signature) else None
        if a is None:
            raise PriorError(f"prior {prior_path} does not match this model: layer {b['layer']!r} ({_shape_text(b['params'])}) is not in the prior")
        if b is None:
            raise PriorError(f"prior {prior_path} does not match this model: prior layer {a['layer']!r} ({_shape_text(a['params'])}) is not in this model")
        if a["layer"] != b["layer"] or a["params"] != b["params"]:
            raise PriorError(
                f"prior {prior_path} does not match this model: first differing layer {b['layer']!r}: "
                f"prior has {a['layer']!r} with {_shape_text(a['params'])}, this model has {_shape_text(b['params'])}"
            )


# ---------------------------------------------------------------------------
# Several sources in one prior
# ---------------------------------------------------------------------------


def _geometry(metadata: dict) -> dict:
    """What must agree for rows of two priors to mean the same thing (capture geometry and kind)."""
    cap = metadata["capture"]
    if prior_kind(metadata) == "nowcast":
        return {"kind": "nowcast", "nowcast": cap["nowcast"]}
    return {"kind": "focus", "trajectory": cap["trajectory"], "center": cap.get("center", 0),
            "lr": metadata["optimizer"]["lr"]}


def _describe_geometry(geometry: dict) -> str:
    if geometry["kind"] == "nowcast":
        n = geometry["nowcast"]
        return f"nowcast every {n['every']}, window {n['window']}, horizon {n['horizon']}"
    t = geometry["trajectory"]
    return (f"focus window {t['window']}, ema {t['ema_decays']}, center {geometry['center']}, "
            f"source lr {geometry['lr']}")


def _unprefixed(key: str) -> str:
    head, sep, rest = key.partition("/")
    return rest if sep and head.startswith(SOURCE_PREFIX) and head[len(SOURCE_PREFIX):].isdigit() else key


def merge_priors(priors: list[tuple[str, Prior]]) -> Prior:
    """One prior holding the rows of every ``(label, prior)`` given, in order.

    All must be of one kind with one capture geometry (nowcast: ``every``/``window``/
    ``horizon``; focus: trajectory window, EMA decays, centred-average width and source
    learning rate), else :class:`PriorError` names the first that differs. Focus priors
    must also share the architecture (their library is per tensor); their rows are
    concatenated per tensor. Nowcast priors may come from any architectures: each
    source's tensors are kept under ``src{i}/`` (the nowcast library pools them). The
    metadata is the first prior's, with ``sources`` listing every source run.
    """
    if not priors:
        raise PriorError("nothing to merge")
    first_label, first = priors[0]
    geometry = _geometry(first.metadata)
    for label, prior in priors[1:]:
        other = _geometry(prior.metadata)
        if other != geometry:
            raise PriorError(f"cannot merge prior {label} ({_describe_geometry(other)}) with {first_label} "
                             f"({_describe_geometry(geometry)})")
        if geometry["kind"] == "focus":
            try:
                check_architecture(first.metadata["architecture"], prior.metadata["architecture"], label)
            except PriorError as exc:
                raise PriorError(f"focus priors merge only across runs of one architecture: {exc}") from None
    tensors: dict = {}
    captured: dict = {}
    sources: list[dict] = []
    for label, prior in priors:
        offset = len(sources)
        sources += sources_of(prior.metadata)
        shapes = {e["key"]: e for e in prior.metadata["captured"]}
        for key, columns in prior.tensors.items():
            if geometry["kind"] == "nowcast":
                head = key.partition("/")[0]
                index = offset + (int(head[len(SOURCE_PREFIX):]) if _unprefixed(key) != key else 0)
                new_key = f"{SOURCE_PREFIX}{index}/{_unprefixed(key)}"
            else:
                new_key = key
            entry = captured.setdefault(new_key, {"key": new_key, "shape": shapes[key]["shape"], "rows": 0, "offered": 0})
            entry["rows"] += len(columns["w"])
            entry["offered"] += shapes[key].get("offered", len(columns["w"]))
            if new_key in tensors:
                tensors[new_key] = {name: torch.cat([tensors[new_key][name], t]) for name, t in columns.items()}
            else:
                tensors[new_key] = dict(columns)
    metadata = json.loads(json.dumps(first.metadata))
    metadata["captured"] = sorted(captured.values(), key=lambda e: e["key"])
    metadata["sources"] = sources
    shares = [p.metadata.get("dead_share") for _, p in priors if p.metadata.get("dead_share") is not None]
    metadata["dead_share"] = sum(shares) / len(shares) if shares else None
    return Prior(metadata, tensors)
