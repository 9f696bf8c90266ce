"""Loading plugins: built-ins via entry points, blocking, autoload off, bad plugins."""

from __future__ import annotations

import textwrap
import warnings

import pytest

import stratum
from stratum.engine import Trainer
from stratum.errors import DuplicateNameError, PluginHookError
from stratum.plugin_manager import PluginWarning, create_plugin_manager
from tests.conftest import assert_one_line_error, run_cli

BUILTINS = {"sgd", "zoo", "data", "optimizers"}


def test_builtins_load_through_entry_points(pm):
    for name in BUILTINS:
        record = pm.records[name]
        assert record.origin == "builtin" and record.status == "loaded"
        assert record.module.startswith("stratum_plugins.")


def _fake_distribution(tmp_path, monkeypatch, *, module_source: str, dist="stratum-fake", ep_name="fake"):
    """A real installed distribution (dist-info on sys.path) declaring a stratum entry point."""
    site = tmp_path / "site"
    site.mkdir()
    module = f"fake_stratum_{abs(hash(str(tmp_path))):x}"  # unique: sys.modules caches by name
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[stratum]\n{ep_name} = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_plugin_that_fails_to_import_warns_once_and_the_rest_load(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, monkeypatch, module_source="raise ImportError('needs libfoo')")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = create_plugin_manager()
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert len(messages) == 1
    assert "'fake'" in messages[0] and "stratum-fake" in messages[0] and "needs libfoo" in messages[0]
    assert pm.records["fake"].status == "failed"
    assert "sgd" in pm.registries["strategy"]


def test_plugin_whose_registration_raises_warns_and_the_rest_load(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, monkeypatch, module_source="""
        import stratum
        @stratum.hookimpl
        def stratum_register_models():
            raise RuntimeError("broken registration")
    """)
    pm = create_plugin_manager()
    with pytest.warns(PluginWarning, match="'fake'.*broken registration"):
        registries = pm.registries
    assert "vgg11" in registries["model"]
    assert pm.records["fake"].status == "failed"


def test_autoload_can_be_disabled_by_environment(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, monkeypatch, module_source="""
        import stratum
        @stratum.hookimpl
        def stratum_register_strategies():
            from stratum_plugins.sgd import SGDStrategy
            return stratum.strategy("fake-sgd", SGDStrategy, "a third-party strategy")
    """)
    assert "fake-sgd" in create_plugin_manager().registries["strategy"]
    monkeypatch.setenv("STRATUM_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = create_plugin_manager()
    assert "fake-sgd" not in pm.registries["strategy"]
    assert pm.records["fake"].status == "skipped"
    assert "sgd" in pm.registries["strategy"]  # built-ins still load


def test_block_option_and_environment(monkeypatch):
    pm = create_plugin_manager(block=["zoo"])
    assert pm.records["zoo"].status == "blocked"
    assert not {"vgg11", "mlp", "lenet300"} & set(pm.registries["model"].names())
    monkeypatch.setenv("STRATUM_BLOCK_PLUGINS", "optimizers, data")
    pm = create_plugin_manager()
    assert pm.records["optimizers"].status == "blocked" and pm.records["data"].status == "blocked"


def test_block_from_the_cli():
    result = run_cli("--block-plugin", "zoo", "list", "model")
    assert result.exit_code == 0
    assert "vgg11" not in result.stdout and "lenet300" not in result.stdout
    # The zoo's own flags (e.g. --hidden) vanish with it, so use core flags only.
    result = run_cli("-p", "zoo", "run", "--model", "mlp", "--epochs", "1")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "unknown model 'mlp'")


def test_duplicate_registration_is_a_clear_error_unless_override(pm):
    class Dup:
        @stratum.hookimpl
        def stratum_register_strategies(self):
            return stratum.strategy("sgd", lambda run, options: None, "impostor")

    pm.register_object(Dup(), name="dup")
    with pytest.raises(DuplicateNameError, match="'dup' registers strategy 'sgd'"):
        pm.registries

    class Override:
        @stratum.hookimpl
        def stratum_register_strategies(self):
            from stratum_plugins.sgd import SGDStrategy
            return stratum.strategy("sgd", SGDStrategy, "replacement", override=True)

    pm2 = create_plugin_manager()
    pm2.register_object(Override(), name="override")
    assert pm2.registries["strategy"].get("sgd").plugin == "override"


class _Exploding:
    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        raise ValueError("boom at epoch end")


def test_plugin_raising_in_a_lifecycle_hook_is_named(pm, make_cfg):
    pm.register_object(_Exploding(), name="exploder")
    with pytest.raises(PluginHookError) as info:
        Trainer(pm).run(make_cfg())
    assert info.value.plugin == "exploder"
    assert info.value.hook == "stratum_epoch_end"
    assert "boom at epoch end" in str(info.value)


def test_every_registration_hook_result_is_attributed_to_its_plugin(pm):
    for component in pm.registries.all():
        assert component.plugin in pm.records
