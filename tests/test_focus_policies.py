"""Switching policies on scripted validation-accuracy histories."""

from __future__ import annotations

import pytest

from stratum_plugins.focus.policies import (
    FixedPolicy,
    GuardedPolicy,
    NeverPolicy,
    OncePolicy,
    PlateauPolicy,
    replay,
)

S, F = "sgd", "focus"


def test_plateau_switches_when_the_gain_is_below_one_point():
    modes = replay(PlateauPolicy(1.0), [50, 60, 60.5, 70, 70.2, 69])
    # e1: no previous epoch; e2: +10 keep; e3: +0.5 -> focus; e4: +9.5 keep; e5: +0.2 -> sgd
    assert modes == [S, S, S, F, F, S]


def test_plateau_threshold_is_configurable():
    assert replay(PlateauPolicy(5.0), [50, 54, 60, 61]) == [S, S, F, F]
    assert replay(PlateauPolicy(0.0), [50, 50, 49.9, 60]) == [S, S, S, F]


def test_fixed_never_once():
    assert replay(FixedPolicy(2), [10, 20, 30, 40, 50, 60]) == [S, S, F, F, S, S]
    assert replay(NeverPolicy(), [10, 10, 10, 10]) == [S, S, S, S]
    assert replay(OncePolicy(3), [10, 20, 30, 30, 30, 30]) == [S, S, S, F, F, F]


def test_guarded_rolls_back_focus_epochs_that_lower_validation_accuracy():
    rolled = []
    modes = replay(GuardedPolicy(1.0), [50, 60, 60.5, 55, 61, 61.2, 70], on_rollback=rolled.append)
    # e3 +0.5 -> focus; e4 focus drops to 55 -> rollback, sgd; e5 compared with e3 (e4 no longer exists):
    # +0.5 -> focus; e6 focus +0.2 (not lower) -> plain plateau switch back to sgd
    assert modes == [S, S, S, F, S, F, S]
    assert rolled == [4]


def test_guarded_tolerance():
    rolled = []
    modes = replay(GuardedPolicy(1.0, tolerance=1.0), [50, 50.5, 50.0, 50.2, 48.0], on_rollback=rolled.append)
    assert modes == [S, S, F, S, F]
    assert rolled == [5]  # focus e3 lost 0.5 (tolerated, plain switch); focus e5 lost 2.2 (rolled back)


def test_policies_read_validation_only():
    history = [{"epoch": 1, "mode": S, "val_acc": 50, "test_acc": 0}, {"epoch": 2, "mode": S, "val_acc": 60, "test_acc": 99}]
    assert PlateauPolicy(1.0).decide(history, S) is None  # a +10 val gain keeps sgd whatever test says
    history[-1]["val_acc"] = 50.5
    assert PlateauPolicy(1.0).decide(history, S).to == F


@pytest.mark.parametrize("name", ["plateau", "fixed", "never", "once", "guarded"])
def test_every_policy_is_registered_with_options(pm, name):
    component = pm.registries.get("policy", name)
    assert component.plugin == "focus" and component.options is not None
