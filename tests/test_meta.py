"""Meta-tests: every hook has a test and a docs entry; the README's commands exist."""

from __future__ import annotations

import inspect
import re

import pytest

from stratum import hookspecs
from tests.conftest import REPO

HOOKS = {name: fn for name, fn in vars(hookspecs).items() if name.startswith("stratum_") and callable(fn)}
TEST_SOURCES = {
    path.name: path.read_text()
    for path in (REPO / "tests").rglob("test_*.py")
    if path.name != "test_meta.py"
}


def test_hookspecs_are_found():
    assert len(HOOKS) >= 19


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_test(name):
    users = [file for file, text in TEST_SOURCES.items() if re.search(rf"\b{name}\b", text)]
    assert users, f"no test mentions hook {name}; add one that exercises it"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_is_documented_with_its_signature(name):
    docs = (REPO / "docs" / "hooks.md").read_text()
    heading = f"## `{name}{inspect.signature(HOOKS[name])}`"
    assert heading in docs, f"docs/hooks.md lacks {heading!r} (run scripts/gen_hooks_doc.py)"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_docstring_saying_when_what_and_result(name):
    doc = inspect.getdoc(HOOKS[name]) or ""
    assert len(doc) > 80
    assert "firstresult" in doc.lower()


def test_readme_has_two_commands_and_ci_calls_the_test_one():
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "git status --porcelain" in ci  # CI fails when the suite leaves the checkout dirty
    makefile = (REPO / "Makefile").read_text()
    assert "pytest -n auto" in makefile


def test_plugin_guide_shows_the_tested_example_package_verbatim():
    guide = (REPO / "docs" / "plugin-guide.md").read_text()
    fixture = REPO / "tests" / "fixtures" / "stratum_example_plugin"
    assert (fixture / "pyproject.toml").read_text().rstrip() in guide
    assert (fixture / "stratum_example" / "__init__.py").read_text().rstrip() in guide
    assert (fixture / "stratum_example" / "core.py").read_text().rstrip() in guide
