"""The bench matrix: axes multiply only the runs they apply to; ids are stable; specs parse."""

from __future__ import annotations

import attrs
import pytest

import stratum
from stratum import option
from stratum.bench.matrix import expand, run_id, used_options, validate
from stratum.bench.spec import BenchSpec, seeds_axis, spec_from_toml
from stratum.errors import ConfigError, StratumError
from stratum.plugin_manager import create_plugin_manager

from .conftest import run_cli


@attrs.frozen
class ToyOptions:
    toy_regressor: str = option("toy-a", "toy: which regressor.", kind="regressor")
    toy_rounds: int = option(1, "toy: rounds.", min=1)


@attrs.frozen
class ToyBOptions:
    toy_alpha: float = option(1.0, "toy-b: alpha.", min=0)


class ToyPlugin:
    """A strategy that names a regressor through its own option, and two regressors."""

    @stratum.hookimpl
    def stratum_register_strategies(self):
        return stratum.strategy("toy", lambda run, options: stratum.Strategy(run, options), "toy", options=ToyOptions)

    @stratum.hookimpl
    def stratum_register_regressors(self):
        return [
            stratum.regressor("toy-a", lambda options: None, "a"),
            stratum.regressor("toy-b", lambda options: None, "b", options=ToyBOptions),
        ]


@pytest.fixture
def registries():
    pm = create_plugin_manager()
    pm.register_object(ToyPlugin(), "toy-plugin")
    return pm.registries


def counts(plans):
    out = {}
    for p in plans:
        out[p.strategy] = out.get(p.strategy, 0) + 1
    return out


def test_strategies_times_seeds(registries):
    spec = BenchSpec(axes={"strategy": ["sgd", "toy"], "seed": [0, 1, 2]}, fixed={"model": "mlp", "epochs": 1})
    plans = expand(spec, registries)
    assert len(plans) == 6
    assert len({p.run_id for p in plans}) == 6
    assert [p.label for p in plans] == ["sgd"] * 3 + ["toy"] * 3
    assert plans[0].group == {"strategy": "sgd"} and plans[0].point == {"strategy": "sgd", "seed": 0}


def test_an_axis_multiplies_only_the_strategies_it_applies_to(registries):
    spec = BenchSpec(axes={"strategy": ["sgd", "toy"], "toy_regressor": ["toy-a", "toy-b"], "seed": [0, 1]})
    plans = expand(spec, registries)
    assert counts(plans) == {"sgd": 2, "toy": 4}
    sgd = [p for p in plans if p.strategy == "sgd"]
    assert all("toy_regressor" not in p.values for p in sgd)
    assert {p.label for p in plans} == {"sgd", "toy toy_regressor=toy-a", "toy toy_regressor=toy-b"}


def test_applicability_follows_components_named_by_options(registries):
    # toy_alpha is declared by regressor toy-b only: it multiplies toy runs that select toy-b.
    spec = BenchSpec(axes={"strategy": ["sgd", "toy"], "toy_regressor": ["toy-a", "toy-b"], "toy_alpha": [0.1, 1.0]})
    plans = expand(spec, registries)
    by_label = sorted(p.label for p in plans)
    assert by_label == [
        "sgd", "toy toy_regressor=toy-a", "toy toy_regressor=toy-b toy_alpha=0.1", "toy toy_regressor=toy-b toy_alpha=1.0",
    ]
    assert "toy_alpha" in used_options({"strategy": "toy", "toy_regressor": "toy-b"}, registries)
    assert "toy_alpha" not in used_options({"strategy": "toy"}, registries)


def test_fixed_options_that_do_not_apply_are_dropped_so_ids_stay_canonical(registries):
    with_fixed = expand(BenchSpec(axes={"strategy": ["sgd"]}, fixed={"toy_rounds": 3, "epochs": 2}), registries)
    without = expand(BenchSpec(axes={"strategy": ["sgd"]}, fixed={"epochs": 2}), registries)
    assert with_fixed[0].run_id == without[0].run_id
    assert "toy_rounds" not in with_fixed[0].values


def test_run_ids_ignore_thread_counts_but_not_what_changes_a_run():
    base = {"strategy": "sgd", "seed": 1, "lr": 0.1}
    assert run_id({**base, "threads": 1}) == run_id({**base, "threads": 4}) == run_id(base)
    assert run_id({**base, "lr": 0.2}) != run_id(base)
    assert run_id(dict(reversed(list(base.items())))) == run_id(base)


def test_values_are_coerced_so_cli_strings_and_toml_numbers_agree(registries):
    a = expand(BenchSpec(axes={"lr": ["0.1", "0.2"]}), registries)
    b = expand(BenchSpec(axes={"lr": [0.1, 0.2]}), registries)
    assert [p.run_id for p in a] == [p.run_id for p in b]
    assert a[0].values["lr"] == 0.1


def test_variants_are_listed_not_multiplied(registries):
    spec = BenchSpec(
        variants=[{"name": "plain", "values": {"optimizer": "sgd", "momentum": 0.0}},
                  {"name": "heavy", "values": {"optimizer": "momentum", "momentum": 0.8}}],
        axes={"seed": [0, 1]},
    )
    plans = expand(spec, registries)
    assert [(p.label, p.seed) for p in plans] == [("plain", 0), ("plain", 1), ("heavy", 0), ("heavy", 1)]
    assert plans[2].values["momentum"] == 0.8 and plans[2].group == {"variant": "heavy"}


def test_identical_runs_collapse(registries):
    spec = BenchSpec(variants=[{"name": "a", "values": {"lr": 0.1}}, {"name": "b", "values": {"lr": 0.1}}])
    assert len(expand(spec, registries)) == 1


def test_axis_applying_nowhere_warns(registries):
    messages = []
    plans = expand(BenchSpec(axes={"strategy": ["sgd"], "toy_rounds": [1, 2]}), registries, warn=messages.append)
    assert len(plans) == 1
    assert "toy_rounds" in messages[0]


@pytest.mark.parametrize("spec, fragment", [
    (BenchSpec(axes={"nonsense": [1]}), "unknown run option 'nonsense'"),
    (BenchSpec(fixed={"json": "x.json"}), "managed by the bench"),
    (BenchSpec(axes={"lr": ["-1"]}), "--lr must be > 0"),
])
def test_bad_options_are_one_line_errors(registries, spec, fragment):
    with pytest.raises(ConfigError) as info:
        validate(expand(spec, registries), registries)
    assert fragment in str(info.value)


def test_validate_names_unknown_components(registries):
    plans = expand(BenchSpec(axes={"strategy": ["sgd", "fcus"]}), registries)
    with pytest.raises(StratumError, match="unknown strategy 'fcus'"):
        validate(plans, registries)
    plans = expand(BenchSpec(axes={"strategy": ["toy"], "toy_regressor": ["nope"]}), registries)
    with pytest.raises(StratumError, match="unknown regressor 'nope'"):
        validate(plans, registries)


@pytest.mark.parametrize("value, expected", [(3, [0, 1, 2]), ("3", [0, 1, 2]), ("0,4,7", [0, 4, 7]),
                                             ("2-4", [2, 3, 4]), ([5, 6], [5, 6])])
def test_seed_axis_forms(value, expected):
    assert seeds_axis(value, "test") == expected


@pytest.mark.parametrize("value", [0, "x", "4-2", "1,1", -1, True])
def test_bad_seed_axes(value):
    with pytest.raises(ConfigError):
        seeds_axis(value, "test")


def test_toml_spec(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text(
        '[bench]\nname = "mine"\nstrategies = ["sgd"]\nseeds = 2\nworkers = 3\n'
        '[axes]\nlr = [0.01, 0.1]\n[run]\nepochs = 4\nhidden = [16]\n'
        '[[variant]]\nname = "v1"\nmomentum = 0.0\n'
    )
    spec = spec_from_toml(path)
    assert spec.name == "mine"
    assert spec.axes == {"strategy": ["sgd"], "seed": [0, 1], "lr": [0.01, 0.1]}
    assert spec.fixed == {"epochs": 4, "hidden": [16]}
    assert spec.settings == {"workers": 3}
    assert spec.variants == [{"name": "v1", "values": {"momentum": 0.0}}]


@pytest.mark.parametrize("text, fragment", [
    ("[bench]\nstrategy = 'sgd'\n", "unknown key 'strategy' in [bench]"),
    ("[benchh]\n", "unknown table"),
    ("[[variant]]\nlr = 0.1\n", "needs a name"),
    ("[bench\n", "malformed TOML"),
])
def test_bad_toml_specs(tmp_path, text, fragment):
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        spec_from_toml(path)


def test_merge_later_wins_and_fixed_replaces_axis():
    recipe = BenchSpec(axes={"strategy": ["sgd", "focus"], "seed": [0, 1, 2]}, fixed={"epochs": 10})
    cli = BenchSpec(axes={"seed": [0]}, fixed={"strategy": "sgd", "epochs": 2})
    merged = recipe.merged(cli)
    assert merged.axes == {"seed": [0]}
    assert merged.fixed == {"epochs": 2, "strategy": "sgd"}


def test_cli_dry_run_lists_the_matrix():
    result = run_cli("bench", "--strategies", "sgd", "--seeds", "3", "--axis", "lr=0.01,0.1", "--model", "mlp", "--dry-run")
    assert result.exit_code == 0, result
    assert result.stdout.strip().endswith("6 runs")
    assert "sgd lr=0.01" in result.stdout


def test_cli_rejects_an_option_given_as_axis_and_fixed():
    result = run_cli("bench", "--seeds", "2", "--axis", "lr=0.1,0.2", "--lr", "0.3", "--dry-run")
    assert result.exit_code == 2
    assert "both as an axis and as a fixed value" in result.stderr


def test_cli_needs_something_to_bench():
    result = run_cli("bench", "--dry-run")
    assert result.exit_code == 2 and "nothing to bench" in result.stderr


def test_absurd_matrices_are_refused_early(registries):
    with pytest.raises(ConfigError, match="more than a bench can hold"):
        seeds_axis(10**9, "--seeds")
    with pytest.raises(ConfigError, match="exceed"):
        expand(BenchSpec(axes={"seed": list(range(1000)), "lr": [0.1 * (i + 1) for i in range(200)]}), registries)
