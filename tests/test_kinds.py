"""The one table of component kinds (stratum.components.KIND_TABLE) and what derives from it;
factories named by "module:attr" strings (LazyFactory)."""

from __future__ import annotations

import itertools
import re
import sys
import textwrap

import attrs
import pytest

import stratum
from stratum import hookspecs
from stratum.bench.spec import NAMED_AXES
from stratum.components import (KIND_ALIASES, KIND_TABLE, KINDS, REGISTRATION_HOOKS, Component, LazyFactory,
                                factory_arity, kinds_markdown)
from stratum.config import CORE_FIELDS, plugin_option_fields
from stratum.errors import PluginError
from stratum.options import option_meta
from stratum.registry import Registries
from tests.conftest import REPO, assert_one_line_error, fast_args, run_cli

_COUNTER = itertools.count()


# ---------------------------------------------------------------------------
# The table and what derives from it
# ---------------------------------------------------------------------------


def test_the_table_has_each_kind_once():
    # Issues 12 and 13 add kinds (augmentation, schedule; logger): the table's rows are counted.
    n = len(KIND_TABLE)
    assert n == 13 and len(set(KINDS)) == n and {"schedule", "augmentation", "logger"} <= set(KINDS)
    assert KINDS == tuple(row.kind for row in KIND_TABLE)
    assert len({row.hook for row in KIND_TABLE}) == n and len({row.helper for row in KIND_TABLE}) == n


def test_every_row_hook_is_a_hookspec_and_every_registration_hookspec_is_a_row():
    register_specs = {name for name in vars(hookspecs) if name.startswith("stratum_register_")}
    rows = {row.hook for row in KIND_TABLE}
    for hook in rows:
        assert callable(getattr(hookspecs, hook, None)), f"{hook} (KIND_TABLE) is not in stratum/hookspecs.py"
    # stratum_register_commands adds CLI commands; it is the one registration hook that is not a kind.
    assert register_specs - rows == {"stratum_register_commands"}
    assert REGISTRATION_HOOKS == {row.hook: row.kind for row in KIND_TABLE}


def test_each_registration_hookspec_docstring_names_its_kind():
    for row in KIND_TABLE:
        doc = " ".join(getattr(hookspecs, row.hook).__doc__.split())
        assert f"``{row.kind}``" in doc, row.hook


def test_every_helper_builds_its_kind_and_is_exported():
    for row in KIND_TABLE:
        helper = getattr(stratum, row.helper)
        assert helper.__name__ == row.helper and row.hook in helper.__doc__
        assert row.helper in stratum.__all__
        component = helper("x-1", print, "a test")
        assert isinstance(component, Component) and component.kind == row.kind


def test_registries_and_list_follow_the_table_order():
    assert Registries().kinds() == list(KINDS)
    listed = run_cli("list")
    assert listed.exit_code == 0
    headings = [line[:-1] for line in listed.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == list(KINDS)


@pytest.mark.parametrize("alias", sorted(KIND_ALIASES))
def test_list_accepts_every_alias_of_the_table(alias):
    result = run_cli("list", alias)
    assert result.exit_code == 0, result
    assert result.stdout.splitlines()[0] == f"{KIND_ALIASES[alias]}:"


def test_selecting_options_name_their_kind(pm):
    fields = {**plugin_option_fields(pm.registries.all()), **CORE_FIELDS}
    for row in KIND_TABLE:
        if row.selected_by is None:
            assert row.multiple  # every registered one takes part
            continue
        assert (row.selected_by in CORE_FIELDS) == row.core, row.kind
        meta = option_meta(fields[row.selected_by])
        assert meta["kind"] == row.kind and meta["multiple"] == row.multiple, row.kind


def test_bench_named_axes_come_from_the_table():
    expected = {row.axis: row.selected_by for row in KIND_TABLE if row.axis}
    assert {k: v for k, v in NAMED_AXES.items() if k != "seeds"} == expected
    assert NAMED_AXES["seeds"] == "seed"
    help_text = run_cli("bench", "--help").stdout
    for axis in expected:
        assert f"--{axis} " in help_text


def test_bench_optimizers_axis_plans_one_run_per_optimizer():
    result = run_cli("bench", "--optimizers", "sgd,adam", "--seeds", "1", "--dry-run", *fast_args())
    assert result.exit_code == 0, result
    assert "optimizer=sgd" in result.stdout and "optimizer=adam" in result.stdout and "2 runs" in result.stdout


def test_plugin_guide_kinds_table_is_the_generated_one():
    guide = (REPO / "docs" / "plugin-guide.md").read_text()
    assert kinds_markdown() in guide, "docs/plugin-guide.md's kinds table differs from KIND_TABLE (paste kinds_markdown())"


# ---------------------------------------------------------------------------
# LazyFactory
# ---------------------------------------------------------------------------


def test_a_string_factory_becomes_a_lazy_factory_imported_on_first_call(tmp_path, monkeypatch):
    name = f"lazymod{next(_COUNTER)}"
    (tmp_path / f"{name}.py").write_text("CALLS = []\n\ndef make(*args):\n    CALLS.append(args)\n    return 'made'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    component = stratum.regressor("lazy", f"{name}:make", "a lazy one")
    factory = component.factory
    assert isinstance(factory, LazyFactory) and factory.target == f"{name}:make"
    assert name not in sys.modules and factory.loaded is None
    assert factory(1, 2) == "made"
    assert sys.modules[name].CALLS == [(1, 2)] and factory.load() is sys.modules[name].make
    assert attrs.evolve(component, plugin="p").factory == factory  # same target, bound to the plugin


@pytest.mark.parametrize("target", ["nodots", "a.b", "a:b:c", "a.:b", "1a:b", ""])
def test_a_malformed_factory_string_is_refused_at_registration(target):
    with pytest.raises(ValueError, match="package.module:attr"):
        stratum.model("m", target)


def test_a_non_callable_factory_is_refused():
    with pytest.raises(TypeError, match="must be callable"):
        stratum.model("m", 42)


@pytest.mark.parametrize("target, fragment", [
    ("stratum_nosuch_module_xyz:make", "No module named 'stratum_nosuch_module_xyz'"),
    ("stratum.components:no_such_attr", "no_such_attr"),
    ("stratum.components:KINDS", "not callable"),
])
def test_a_lazy_factory_that_cannot_load_raises_plugin_error_naming_the_plugin(target, fragment):
    component = attrs.evolve(stratum.model("m", target), plugin="myplug")
    with pytest.raises(PluginError) as info:
        component.factory(None, None)
    assert info.value.plugin == "myplug"
    assert "model 'm' from plugin 'myplug'" in str(info.value) and fragment in str(info.value)


LAZY_PLUGIN = textwrap.dedent('''
    import attrs

    import stratum


    @attrs.frozen
    class TinyOptions:
        {prefix}_width: int = stratum.option(8, "hidden units.", min=1)


    @stratum.hookimpl
    def stratum_register_models():
        return [
            stratum.model("{prefix}-ok", "{impl}:make", "A model whose code is imported when used.", options=TinyOptions),
            stratum.model("{prefix}-broken", "{prefix}_missing_module:make", "Its module does not exist."),
            stratum.model("{prefix}-boom", "{impl}:explode", "Its factory raises."),
        ]
''')

LAZY_IMPL = textwrap.dedent('''
    from torch import nn


    def make(spec, options):
        n = 1
        for d in spec.input_shape:
            n *= d
        return nn.Sequential(nn.Flatten(), nn.Linear(n, 8), nn.ReLU(), nn.Linear(8, spec.num_outputs))


    def explode(spec, options):
        raise RuntimeError("boom in a lazily imported factory")
''')


@pytest.fixture
def lazy_plugin(tmp_path, monkeypatch):
    prefix = f"lazy{next(_COUNTER)}"
    impl = f"{prefix}_impl"
    (tmp_path / f"{impl}.py").write_text(LAZY_IMPL)
    path = tmp_path / f"{prefix}plug.py"
    path.write_text(LAZY_PLUGIN.format(prefix=prefix, impl=impl))
    monkeypatch.syspath_prepend(str(tmp_path))
    return prefix, impl, path


def test_a_plugin_with_string_factories_lists_without_importing_them_and_runs(lazy_plugin):
    prefix, impl, path = lazy_plugin
    listed = run_cli("--plugin", path, "list")
    assert listed.exit_code == 0 and f"{prefix}-ok" in listed.stdout and f"{prefix}-broken" in listed.stdout
    assert impl not in sys.modules
    ran = run_cli("--plugin", path, "run", *fast_args(model=f"{prefix}-ok", epochs=1, steps_per_epoch=2), "--quiet")
    assert ran.exit_code == 0, ran
    assert impl in sys.modules


def test_a_lazy_factory_whose_module_is_missing_fails_in_one_line_naming_the_plugin(lazy_plugin):
    prefix, impl, path = lazy_plugin
    result = run_cli("--plugin", path, "run", *fast_args(model=f"{prefix}-broken", epochs=1, steps_per_epoch=2), "--quiet")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, f"model '{prefix}-broken' from plugin '{prefix}plug'",
                          f"No module named '{prefix}_missing_module'")
    models = run_cli("--plugin", path, "list", "model")  # the dead-weight check skips it, the rest is listed
    assert models.exit_code == 0
    lines = models.stdout.splitlines()
    line = lines[next(i for i, l in enumerate(lines) if l.strip().startswith(f"{prefix}-broken ")) + 1]
    assert "not checked" in line


def test_a_failure_inside_a_lazy_factory_module_names_the_plugin(lazy_plugin):
    """The factory's module is not the plugin's own module; its failures still name the plugin."""
    prefix, impl, path = lazy_plugin
    result = run_cli("--plugin", path, "run", *fast_args(model=f"{prefix}-boom", epochs=1, steps_per_epoch=2), "--quiet")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, f"model '{prefix}-boom' from plugin '{prefix}plug'",
                          "RuntimeError: boom in a lazily imported factory")


def test_each_registration_hookspec_states_the_factory_call_of_the_table():
    """The hookspecs' docstrings (docs/hooks.md) say how a factory is called; they must say what
    KIND_TABLE says (a strategy factory documented as factory(run) sent plugin authors wrong)."""
    from stratum import hookspecs

    for row in KIND_TABLE:
        doc = " ".join(getattr(hookspecs, row.hook).__doc__.split())
        assert f"``{row.factory_call}``" in doc or f"``{row.factory_call.replace(', ', ',')}``" in doc, (row.hook, row.factory_call)


@pytest.mark.parametrize("row", KIND_TABLE, ids=lambda row: row.kind)
def test_a_factory_that_cannot_take_the_kinds_arguments_is_refused_at_registration(row):
    """A plain factory with the wrong signature disables its plugin with one warning naming the
    call stratum makes, instead of a TypeError deep in a run; one that takes the arguments is fine."""
    from stratum.plugin_manager import PluginWarning, StratumPluginManager

    helper = getattr(stratum, row.helper)

    class Wrong:
        @stratum.hookimpl(specname=row.hook)
        def register(self):
            return helper("wrong-arity", lambda a, b, c, d: None)

    class Right:
        @stratum.hookimpl(specname=row.hook)
        def register(self):
            return helper("right-arity", lambda *args: None)

    pm = StratumPluginManager()
    pm.register_object(Wrong(), "wrongsig")
    pm.register_object(Right(), "rightsig")
    expected = f"stratum calls a {row.kind.replace('_', ' ')} factory as {row.factory_call}"
    with pytest.warns(PluginWarning, match=re.escape(expected)):
        registries = pm.registries
    assert "wrong-arity" not in registries[row.kind] and "right-arity" in registries[row.kind]


@pytest.mark.parametrize("row", KIND_TABLE, ids=lambda row: row.kind)
def test_a_lazy_factory_with_the_wrong_signature_fails_in_one_line_when_used(row):
    component = getattr(stratum, row.helper)("lazy-arity", "os:getcwd")
    with pytest.raises(PluginError, match=re.escape(f"stratum calls a {row.kind.replace('_', ' ')} factory as {row.factory_call}")):
        component.factory(*range(factory_arity(row.kind)))
