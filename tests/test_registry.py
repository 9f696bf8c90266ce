"""Registries: helpful failures, duplicates, overrides."""

from __future__ import annotations

import pytest

import stratum
from stratum.errors import DuplicateNameError, UnknownNameError
from stratum.registry import Registries, Registry


def _strategy(name, **kw):
    return stratum.strategy(name, lambda run, options: None, f"{name} strategy", **kw)


def test_unknown_name_lists_available_and_suggests_closest(pm):
    with pytest.raises(UnknownNameError) as info:
        pm.registries.get("strategy", "sdg")
    message = str(info.value)
    assert "unknown strategy 'sdg'" in message
    assert "did you mean 'sgd'?" in message
    assert "available:" in message and "sgd" in message


def test_unknown_name_without_close_match_has_no_suggestion(pm):
    with pytest.raises(UnknownNameError) as info:
        pm.registries.get("model", "zzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert "vgg11" in str(info.value)


def test_unknown_kind_is_helpful():
    with pytest.raises(UnknownNameError, match="did you mean 'model'"):
        Registries()["modle"]


def test_duplicate_name_is_an_error_naming_both_plugins():
    registry = Registry("strategy")
    registry.add(stratum.Component("strategy", "sgd", print, plugin="first"))
    with pytest.raises(DuplicateNameError) as info:
        registry.add(stratum.Component("strategy", "sgd", print, plugin="second"))
    assert "'second'" in str(info.value) and "'first'" in str(info.value) and "override" in str(info.value)


def test_override_replaces_and_is_recorded():
    registry = Registry("strategy")
    registry.add(stratum.Component("strategy", "sgd", print, plugin="first"))
    registry.add(stratum.Component("strategy", "sgd", repr, plugin="second", override=True))
    assert registry.get("sgd").factory is repr
    assert registry.overridden == {"sgd": ["first"]}


def test_component_names_and_options_are_validated():
    with pytest.raises(ValueError):
        stratum.Component("strategy", "Bad Name", print)
    with pytest.raises(ValueError):
        stratum.Component("gizmo", "x", print)

    import attrs

    @attrs.frozen
    class NoDefault:
        x: int

    with pytest.raises(TypeError, match="need defaults"):
        stratum.Component("strategy", "x", print, options=NoDefault)
