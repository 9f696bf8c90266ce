"""Regenerate docs/hooks.md from stratum/hookspecs.py (docstrings are the source of truth).

Usage: python scripts/gen_hooks_doc.py > docs/hooks.md
"""

from __future__ import annotations

import inspect
import textwrap

from stratum import hookspecs


def hooks():
    for name, fn in vars(hookspecs).items():
        if name.startswith("stratum_") and callable(fn):
            yield name, fn


def main() -> None:
    print("# Hook reference\n")
    print("Generated from `stratum/hookspecs.py` by `python scripts/gen_hooks_doc.py > docs/hooks.md`.")
    print("Implement a hook with `@stratum.hookimpl`; an implementation may take any subset of the arguments.\n")
    module_doc = inspect.getdoc(hookspecs) or ""
    print(module_doc + "\n")
    for name, fn in hooks():
        firstresult = getattr(fn, "stratum_spec", {}).get("firstresult", False)
        print(f"## `{name}{inspect.signature(fn)}`\n")
        print(f"*firstresult: {'yes' if firstresult else 'no'}*\n")
        print(textwrap.dedent(inspect.getdoc(fn) or "") + "\n")


if __name__ == "__main__":
    main()
