"""Every option a component declares is one it reads.

A component's options class feeds `stratum run --help` (its section), the bench planner (an
axis over an option no run reads is dropped) and the run summary. A shared options class
that gives a component options it ignores makes all three lie (`--hidden` listed for vgg11,
`--axis width=...` planning identical mlp runs). These tests discover every registered model,
initializer and switching policy, change each declared option away from its default in turn,
and check that what the component builds changes.
"""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from stratum.data import ModelSpec
from stratum.errors import StratumError
from stratum.options import INT_MAX, build, option_meta
from stratum.plugin_manager import create_plugin_manager

PM = create_plugin_manager()
REGISTRIES = PM.registries


def _other_value(field: attrs.Attribute):
    """A valid value of ``field`` different from its default, or ``None`` to skip it."""
    meta = option_meta(field)
    default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
    if meta["kind"]:
        return None  # names another component: covered by that component's own test
    if meta["choices"]:
        return next(c for c in meta["choices"] if c != default)
    if meta["type"] is bool:
        return not default
    if meta["multiple"]:
        return (7,) if tuple(default) != (7,) else (9,)
    if default is None:
        return 0.5
    if meta["type"] is int:
        hi = meta["max"] if meta["max"] is not None else INT_MAX
        return default + 1 if default + 1 <= hi else default - 1
    if meta["type"] is float:
        candidate = default * 0.5 if default else 0.5
        lo, hi = meta["min"], meta["max"]
        if (lo is not None and candidate < lo) or (hi is not None and candidate > hi) or (
                meta["min_exclusive"] and candidate == lo):
            candidate = (default + (hi if hi is not None else default + 1)) / 2
        return candidate
    return None


def _cases(kind: str):
    cases = []
    for component in REGISTRIES[kind]:
        if component.options is None:
            continue
        for field in attrs.fields(component.options):
            if _other_value(field) is not None:
                cases.append(pytest.param(component.name, field.name, id=f"{component.name}-{field.name}"))
    return cases


def _small(component) -> dict:
    """Base values that keep conv models small."""
    names = attrs.fields_dict(component.options)
    base = {}
    if "width" in names:
        base["width"] = 0.25
    if "vcnn_depth" in names:
        base.update(vcnn_depth=2, vcnn_channels=8)
    return base


def _model_fingerprint(component, values: dict):
    """What the model is on a 32x32 RGB input and on an 8x8 grey one (some options, such as the
    VGG pooling rule, only matter on small inputs); ``None`` for a shape the model refuses."""
    prints = []
    for shape in ((3, 32, 32), (1, 8, 8)):
        torch.manual_seed(0)
        try:
            model = component.factory(ModelSpec(shape, 10, "classification"), build(component.options, values))
        except StratumError:
            prints.append(None)
            continue
        state = [(k, tuple(v.shape), round(float(v.double().sum()), 6)) for k, v in model.state_dict().items()]
        prints.append((repr(model), state))
    return prints


@pytest.mark.parametrize("name, option", _cases("model"))
def test_every_model_option_changes_the_model(name, option):
    component = REGISTRIES["model"].get(name)
    base = _small(component)
    field = attrs.fields_dict(component.options)[option]
    other = {**base, option: _other_value(field)}
    if option == "width":
        other[option] = 0.5
    assert _model_fingerprint(component, base) != _model_fingerprint(component, other), (
        f"model {name!r} declares --{option.replace('_', '-')} but does not read it")


def _init_fingerprint(component, values: dict):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 8 * 8, 10))
    component.factory(model, build(component.options, values), torch.Generator().manual_seed(0))
    return [round(float(p.double().sum()), 9) for p in model.parameters()] + [
        round(float(p.double().square().sum()), 9) for p in model.parameters()]


@pytest.mark.parametrize("name, option", _cases("initializer"))
def test_every_initializer_option_changes_the_weights(name, option):
    component = REGISTRIES["initializer"].get(name)
    field = attrs.fields_dict(component.options)[option]
    assert _init_fingerprint(component, {}) != _init_fingerprint(component, {option: _other_value(field)}), (
        f"initializer {name!r} declares --{option.replace('_', '-')} but does not read it")


def _policy_state(component, values: dict):
    policy = component.factory(build(component.options, values))
    return {k: v for k, v in vars(policy).items() if not (isinstance(v, float) and math.isnan(v))}


@pytest.mark.parametrize("name, option", _cases("policy"))
def test_every_policy_option_changes_the_policy(name, option):
    component = REGISTRIES["policy"].get(name)
    field = attrs.fields_dict(component.options)[option]
    assert _policy_state(component, {}) != _policy_state(component, {option: _other_value(field)}), (
        f"policy {name!r} declares --{option.replace('_', '-')} but does not read it")


def test_the_matrices_found_components():
    assert len(_cases("model")) >= 10 and len(_cases("initializer")) >= 3 and len(_cases("policy")) >= 4
