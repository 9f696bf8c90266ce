"""Search spaces: ``--param NAME=SPEC`` parsed and checked against the run options.

A spec is one of:

* ``log:LO:HI``: a number drawn log-uniformly from [LO, HI] (LO > 0);
* ``LO:HI`` or ``LO:HI:STEP``: a number drawn uniformly from [LO, HI] (on a grid of STEP);
* ``int:LO:HI`` or ``int:LO:HI:STEP``: an integer in [LO, HI] (STEP apart);
* ``A,B,C``: one of the listed values (any option type but lists).

Whether a range gives integers or floats is the option's own type (``--param epochs=2:6``
draws integers, ``--param momentum=0:1`` floats); ``int:`` says so explicitly and is refused
for an option that is not an integer. Every bound and listed value goes through the option's
own validator (:func:`stratum.options.coerce`) before any trial runs. This module is plain
data and imports neither torch nor Optuna: :meth:`Param.suggest` imports nothing either, it
calls the ``trial`` it is given (``optuna.trial.Trial.suggest_float`` and friends).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ..errors import ConfigError
from ..options import coerce, option_meta
from ..registry import closest

# Run options that a search would make meaningless or that the tuner sets itself.
NOT_TUNABLE = ("seed", "json", "out", "name", "resume", "quiet", "threads", "tensorboard")

# The space a bare name means in ``stratum bench --tune lr``: half-decades of the learning
# rate around the SGD defaults of the zoo (explicit values, so every sampler takes it).
DEFAULT_SPACES = {"lr": "0.001,0.003,0.01,0.03,0.1,0.3"}


@attrs.frozen
class Param:
    """One searched option: ``kind`` is ``"float"``, ``"int"`` or ``"categorical"``.

    ``low``/``high``/``step``/``log`` describe a range; ``choices`` the listed values,
    each already coerced to the option's type (JSON-safe). ``spec`` is the text given.
    """

    name: str
    spec: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The value for this trial, from ``trial.suggest_float`` / ``suggest_int`` /
        ``suggest_categorical`` (Optuna's define-by-run API)."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    @property
    def grid(self) -> list | None:
        """The values a grid search visits: the listed ones; ``None`` for a range."""
        return list(self.choices) if self.kind == "categorical" else None

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "step": self.step,
                "log": self.log, "choices": list(self.choices)}


def split_assignment(text: str, flag: str) -> tuple[str, str]:
    """``"lr=log:1e-3:1e-1"`` -> ``("lr", "log:1e-3:1e-1")``; ``-`` in the name read as ``_``."""
    if "=" not in text:
        raise ConfigError(f"{flag} expects NAME=SPEC (e.g. lr=log:1e-3:1e-1), got {text!r}")
    name, spec = text.split("=", 1)
    name = name.strip().replace("-", "_")
    if not name or not spec.strip():
        raise ConfigError(f"{flag} expects NAME=SPEC (e.g. lr=log:1e-3:1e-1), got {text!r}")
    return name, spec.strip()


def _number(text: str, kind: str, where: str) -> float | int:
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        what = "an integer" if kind == "int" else "a number"
        raise ConfigError(f"{where}: {text!r} is not {what}") from None


def parse_param(name: str, spec: str, fields: dict, *, flag: str = "--param", registries=None) -> Param:
    """One ``NAME=SPEC`` against the run options ``fields`` (name -> option field).

    Raises :class:`ConfigError` for an unknown option (naming the closest one), an option the
    tuner cannot search (the seed, outputs, list options), a malformed spec, bounds out of order
    or outside the option's own bounds, and a listed value the option refuses (with ``registries``,
    a component name nobody registered, with the closest one).
    """
    where = f"{flag} {name}={spec}"
    field = fields.get(name)
    if field is None:
        hint = closest(name, [n for n in fields if n not in NOT_TUNABLE])
        raise ConfigError(f"{flag}: unknown run option {name!r}" + (f"; did you mean {hint!r}?" if hint else ""))
    if name in NOT_TUNABLE:
        raise ConfigError(f"{flag}: {name!r} cannot be tuned (the tuner sets it: seeds are --seeds, outputs are its own)")
    meta = option_meta(field)
    if meta["multiple"]:
        raise ConfigError(f"{flag}: {name!r} takes a list of values; the tuner searches single-valued options only")
    type_ = meta["type"]
    parts = spec.split(":")
    if len(parts) == 1:  # A,B,C
        raw = [v.strip() for v in spec.split(",")]
        if any(not v for v in raw):
            raise ConfigError(f"{where}: an empty value in the list")
        choices = tuple(_jsonable(coerce(field, v, where)) for v in raw)
        if meta["kind"] and registries is not None:
            from ..errors import StratumError

            for choice in choices:
                try:
                    registries[meta["kind"]].get(choice)
                except StratumError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
        if len(set(map(json.dumps, choices))) != len(choices):
            raise ConfigError(f"{where}: a value repeats")
        if len(choices) < 2:
            raise ConfigError(f"{where}: one value is no search; give a range (LO:HI, log:LO:HI) or two values or more")
        return Param(name, spec, "categorical", choices=choices)
    log = parts[0] == "log"
    forced_int = parts[0] == "int"
    if log or forced_int:
        parts = parts[1:]
    if not 2 <= len(parts) <= 3 or (log and len(parts) != 2):
        raise ConfigError(f"{where}: expected log:LO:HI, LO:HI[:STEP], int:LO:HI[:STEP] or A,B,C")
    if type_ not in (int, float):
        raise ConfigError(f"{where}: {name!r} is not a number; list its values instead (A,B,C)")
    if forced_int and type_ is not int:
        raise ConfigError(f"{where}: {name!r} takes a number, not an integer; drop 'int:'")
    kind = "int" if type_ is int else "float"
    low, high = (_number(p, kind, where) for p in parts[:2])
    step = _number(parts[2], kind, where) if len(parts) == 3 else None
    low, high = coerce(field, low, where), coerce(field, high, where)  # the option's own bounds
    if not low < high:
        raise ConfigError(f"{where}: LO must be below HI")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs LO > 0")
    if step is not None and not 0 < step <= high - low:
        raise ConfigError(f"{where}: STEP must be > 0 and at most HI - LO")
    return Param(name, spec, kind, low=low, high=high, step=step, log=log)


def _jsonable(value: Any) -> Any:
    return str(value) if not isinstance(value, (str, int, float, bool)) and value is not None else value


def parse_space(texts, fields: dict, *, flag: str = "--param", defaults: bool = False, registries=None) -> list[Param]:
    """Every ``NAME=SPEC`` of ``texts`` (``defaults``: a bare ``NAME`` takes its
    :data:`DEFAULT_SPACES` entry). Raises :class:`ConfigError` for a name given twice, or
    for any spec :func:`parse_param` refuses."""
    params: list[Param] = []
    for text in texts:
        if defaults and "=" not in text:
            name = text.strip().replace("-", "_")
            if name not in DEFAULT_SPACES:
                raise ConfigError(f"{flag} {name}: give its space, {flag} {name}=SPEC (only "
                                  f"{', '.join(DEFAULT_SPACES)} has a default)")
            text = f"{name}={DEFAULT_SPACES[name]}"
        name, spec = split_assignment(text, flag)
        if any(p.name == name for p in params):
            raise ConfigError(f"{flag} {name} is given twice")
        params.append(parse_param(name, spec, fields, flag=flag, registries=registries))
    if not params:
        raise ConfigError(f"nothing to tune: give {flag} NAME=SPEC (e.g. {flag} lr=log:1e-3:1e-1)")
    return params


def check_read(params: list[Param], base: dict, registries, *, flag: str = "--param") -> None:
    """Refuse, in one line, a searched option that no component of the run reads (``--width``
    with ``--model mlp``), trying every listed value of the other searched options (so
    ``optimizer=sgd,momentum`` and ``momentum=0.8:0.99`` go together)."""
    from ..bench.matrix import applies, dropped_axis_warning

    variants = [dict(base)]
    for p in params:
        if p.kind == "categorical":
            variants = [{**v, p.name: c} for v in variants for c in p.choices]
    for p in params:
        if not any(applies(p.name, v, registries) for v in variants):
            reason = dropped_axis_warning(p.name, registries).split("(", 1)[-1].rstrip(")")
            raise ConfigError(f"{flag} {p.name}: no component of this run reads it ({reason})")


def space_key(params: list[Param]) -> str:
    """A canonical text of the space: a study keeps it and refuses another."""
    return json.dumps([p.to_dict() for p in params], sort_keys=True)
