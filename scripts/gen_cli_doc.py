"""Regenerate docs/cli.md from the live CLI (core options and every plugin's options).

Usage: python scripts/gen_cli_doc.py > docs/cli.md
"""

from __future__ import annotations

import attrs

from stratum.cli import _default_text, _help_text
from stratum.config import CORE_FIELDS
from stratum.options import CORE_GROUPS, flag_name, option_meta
from stratum.plugin_manager import create_plugin_manager

INTRO = """# CLI reference

`stratum` is also reachable as `python -m stratum`. Global options come before the command:

```
stratum [--block-plugin NAME]... [--plugin MODULE_OR_FILE]... [--version] COMMAND ...
```

| global option | meaning |
|---|---|
| `-p, --block-plugin NAME` | do not load plugin NAME (repeatable); also `STRATUM_BLOCK_PLUGINS=a,b` |
| `--plugin MODULE_OR_FILE` | load a local plugin module without packaging it: a dotted module name (importable from `sys.path`) or the path of a `.py` file (repeatable); also `STRATUM_PLUGINS=a,b`. Works for every command (`run`, `list`, `plugins`, `bench`: bench workers load it too); `stratum run --plugin X` is accepted as well, and the plugin's options then appear in `stratum run --plugin X --help`. A file or module that cannot be loaded is one error line, exit 2; `stratum plugins` lists it with origin `local` and its path |
| `--version` | print the version |
| `STRATUM_DISABLE_PLUGIN_AUTOLOAD=1` | environment: load only built-in plugins |
| `STRATUM_DEBUG=1` | environment: print the traceback of an internal error |

Every user error prints one line, `stratum: error: ...`, and exits with code 2. An
interrupted run (SIGINT/SIGTERM) exits with 128 + the signal number after flushing a
checkpoint. Bugs print `stratum: internal error: ...` and exit 1.

## Commands

| command | what it does |
|---|---|
{commands}

## `stratum run`

Options come from three places, lowest precedence first: the defaults below, a TOML file
given with `--config FILE.toml` (keys are the option names, `batch_size` or `batch-size`),
and flags on the command line. An unknown TOML key is an error that suggests the closest
known key. Boolean flags have a `--no-` form.

**Help by group and by component.** `stratum run --help` prints one section per core group
({groups}), then one per component the command line uses: the components chosen by flags
(`--strategy focus --model vgg11`) or by the TOML file of `--config FILE`, the defaults for
every kind not chosen (strategy sgd, model vgg11, dataset digits, initializer he-normal,
optimizer sgd), the components their options name (focus's regressor, features, policy) and
every extension. So `stratum run --strategy focus --optimizer adam --help` lists the options
that run reads, and plain `--help` those of the default run. `stratum run --help-all` lists the
options of every registered component. Help only changes what is listed: every flag below is
accepted whatever help shows, and reaches the component that declares it. `stratum bench
--help` works the same way, its own options first, with the components its axes, fixed
options, `--config` file and `--recipe` select.

### Core options

{core}

### Options declared by plugins

Each plugin component may declare options; they are global flags and TOML keys like the
core ones and reach only the component that declared them. `--help` lists each under its
component(s), or under the `group=` it declares.

| flag | component(s) | meaning |
|---|---|---|
{plugin}

## Shell completion

click's completion completes sub-commands, flags, component names for every name-valued option
(`--strategy`, `--model`, `--dataset`, `--init`, `--optimizer`, `--profile a,b`, plugin options
such as `--regressor`, `--features`, `--policy`; bench's `--strategies sgd,fo`, `--models`, ...),
the choices of options that have them (`--resident`, `--capture-layers`, `--recipe`), and bench's
`--axis KEY=V1,V2` / `--set KEY=VALUE` (option names, then values). Enable it once per shell,
with the `stratum` command on your `PATH` (the names come from the plugins installed then):

| shell | add to | line |
|---|---|---|
| bash | `~/.bashrc` | `eval "$(_STRATUM_COMPLETE=bash_source stratum)"` |
| zsh | `~/.zshrc` | `eval "$(_STRATUM_COMPLETE=zsh_source stratum)"` |
| fish | `~/.config/fish/completions/stratum.fish` | `_STRATUM_COMPLETE=fish_source stratum \\| source` |

Completing runs `stratum` (plugins included) at each Tab; the `*_source` line only prints the
shell's glue, so it can also be written to a file once
(`_STRATUM_COMPLETE=bash_source stratum > ~/.stratum-complete.bash`) and that file sourced.
"""


def row(field):
    meta = option_meta(field)
    flag = flag_name(field)
    if meta["type"] is bool:
        flag = f"{flag} / --no-{flag[2:]}"
    return flag, _help_text(field).replace("|", "\\|")


def main() -> None:
    pm = create_plugin_manager()
    from stratum.cli import cli
    import click

    ctx = click.Context(cli)
    commands = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        commands.append(f"| `stratum {name}` | {(command.get_short_help_str(200) or '').replace('|', '/')} |")
    core = []
    for group in CORE_GROUPS:
        rows = [row(field) for field in CORE_FIELDS.values() if option_meta(field)["group"] == group]
        core.append(f"#### {group}\n\n| flag | meaning |\n|---|---|\n" + "\n".join(f"| `{f}` | {h} |" for f, h in rows))
    owners: dict[str, list[str]] = {}
    fields = {}
    for component in pm.registries.all():
        if component.options is None:
            continue
        for field in attrs.fields(component.options):
            if field.name in CORE_FIELDS:
                continue
            owners.setdefault(field.name, []).append(f"{component.kind} {component.name}")
            fields.setdefault(field.name, field)
    plugin = []
    for name in sorted(fields):
        flag, help_text = row(fields[name])
        who = ", ".join(owners[name][:4]) + (" ..." if len(owners[name]) > 4 else "")
        plugin.append(f"| `{flag}` | {who} | {help_text} |")
    print(INTRO.format(commands="\n".join(commands), core="\n\n".join(core), plugin="\n".join(plugin),
                       groups=", ".join(CORE_GROUPS)))


if __name__ == "__main__":
    main()
