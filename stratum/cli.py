"""The ``stratum`` command line (also ``python -m stratum``).

Every user error ends as one line on stderr, ``stratum: error: ...``, and exit
code 2. ``run``'s flags are generated from :class:`~stratum.config.RunConfig`
and from the options classes of the registered components, so a plugin's
options appear in ``stratum run --help`` without touching this file.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import attrs
import click
from click.core import ParameterSource

from .version import __version__
from .components import KIND_ALIASES, KINDS
from .config import CORE_FIELDS, check_outputs, load_toml, make_config, plugin_option_fields
from .errors import OutputError, RunInterrupted, StratumError
from .paths import DESTINATION_ERRNOS, UserPath
from .options import describe_bounds, flag_name, option_meta
from .plugin_manager import create_plugin_manager, show_warnings_as_lines
from .registry import unknown_name_message

DEBUG_ENV = "STRATUM_DEBUG"


# ---------------------------------------------------------------------------
# Turning option fields into click options
# ---------------------------------------------------------------------------


def _default_text(field) -> str:
    default = field.default
    if isinstance(default, attrs.Factory):
        default = default.factory()
    if default is None:
        return "none"
    if isinstance(default, tuple):
        return ",".join(map(str, default)) if default else "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def _help_text(field) -> str:
    meta = option_meta(field)
    parts = [meta["help"]]
    bounds = describe_bounds(meta, implicit=False)
    if bounds:
        parts.append(f"Must be {bounds}.")
    if meta["choices"]:
        parts.append(f"One of: {', '.join(meta['choices'])}.")
    if meta["kind"]:
        parts.append(f"See `stratum list {meta['kind']}`.")
    parts.append(f"[default: {_default_text(field)}]")
    return " ".join(parts)


def click_option(field) -> click.Option:
    meta = option_meta(field)
    flag = flag_name(field)
    if meta["type"] is bool:
        negative = "--no-" + flag[2:]
        return click.Option([f"{flag}/{negative}", field.name], default=None, help=_help_text(field))
    return click.Option(
        [flag, field.name], type=click.STRING, multiple=meta["multiple"], default=None,
        metavar=(meta["type"].__name__.upper() if meta["type"] is not str else "TEXT") + (",..." if meta["multiple"] else ""),
        help=_help_text(field),
        shell_complete=option_completer(meta),
    )


# ---------------------------------------------------------------------------
# Shell completion (click's own: `eval "$(_STRATUM_COMPLETE=bash_source stratum)"`, see docs/cli.md)
# ---------------------------------------------------------------------------


def complete_values(candidates, incomplete: str, *, listed: bool = False) -> list:
    """click completion items: the ``candidates`` starting with ``incomplete``.

    ``listed`` completes the last item of a comma-separated list (``sgd,fo`` -> ``sgd,focus``),
    for options that take several names in one value.
    """
    from click.shell_completion import CompletionItem

    head, tail = "", incomplete
    if listed and "," in incomplete:
        head, tail = incomplete.rsplit(",", 1)
        head += ","
    return [CompletionItem(head + value) for value in candidates if str(value).startswith(tail)]


def _complete_plugin_names(incomplete: str) -> list:
    """Completion of ``--block-plugin NAME``: the entry-point names of the installed plugins
    (read from the package metadata; nothing is imported)."""
    import importlib.metadata as md

    from .plugin_manager import ENTRY_POINT_GROUP

    try:
        names = sorted({ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)})
    except Exception:  # completion never fails loudly
        return []
    return complete_values(names, incomplete)


def component_names(ctx: click.Context, kind: str) -> list[str]:
    """The names registered for ``kind`` in this invocation's plugin manager (none if plugins fail)."""
    try:
        return sorted(component.name for component in get_pm(ctx).registries[kind])
    except Exception:  # completion never fails loudly: no candidates instead
        return []


def option_completer(meta: dict):
    """A click ``shell_complete`` callback for an option: component names for a name-valued
    option (``kind=``), its choices for one with ``choices=``; ``None`` for any other."""
    if meta.get("kind"):
        kind, listed = meta["kind"], bool(meta.get("multiple"))
        return lambda ctx, param, incomplete: complete_values(component_names(ctx, kind), incomplete, listed=listed)
    if meta.get("choices"):
        choices, listed = meta["choices"], bool(meta.get("multiple"))
        return lambda ctx, param, incomplete: complete_values(choices, incomplete, listed=listed)
    return None


def explicit_values(ctx: click.Context, names) -> dict:
    """Values the user actually gave on the command line (not click defaults)."""
    values = {}
    for name in names:
        source = ctx.get_parameter_source(name)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            value = ctx.params[name]
            if isinstance(value, tuple) and not value:
                continue
            values[name] = list(value) if isinstance(value, tuple) else value
    return values


def config_from_cli(ctx: click.Context, pm, config_file: Path | None):
    plugin_fields = plugin_option_fields(pm.registries.all())
    names = list(CORE_FIELDS) + list(plugin_fields)
    toml_values = load_toml(config_file) if config_file is not None else None
    return make_config(
        explicit_values(ctx, names), toml_values=toml_values,
        toml_source=str(config_file) if config_file else "", plugin_fields=plugin_fields,
    )


# ---------------------------------------------------------------------------
# The group
# ---------------------------------------------------------------------------


class StratumGroup(click.Group):
    """Loads plugins lazily (after ``--block-plugin`` is parsed) and owns error reporting."""

    def get_command(self, ctx, name):
        builder = _COMMAND_BUILDERS.get(name)
        if builder is not None:
            return builder(ctx)
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        return plugin_commands(ctx).get(name)

    def resolve_command(self, ctx, args):
        # `stratum run --plugin X`: the plugin's options become flags of `run`, so the plugin
        # must load before `run` is built; read its --plugin values off the raw arguments.
        if args and args[0] == "run":
            ctx.ensure_object(dict)
            ctx.obj["run_plugins"] = _scan_option(args[1:], "--plugin")
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_COMMAND_BUILDERS) | set(plugin_commands(ctx)))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        show_warnings_as_lines()
        code = 0
        try:
            result = super().main(args=args, prog_name=prog_name or "stratum", complete_var=complete_var,
                                  standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare `stratum` (or group): its help, as asked
            click.echo(exc.ctx.get_help())
            code = 0
        except (SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # user errors: one line, exit 2; a bug: one line, exit 1
            code = report_error(exc)
        if standalone_mode:
            sys.exit(code)
        return code


def report_error(exc: BaseException, where: str = "") -> int:
    """Print the one stderr line for ``exc`` and return the exit code it calls for.

    ``where`` (e.g. ``"rank 1: "`` under torchrun) goes in front of the message.
    A :class:`StratumError` is the user's to fix (its own exit code, 2 as a
    rule); anything else is a bug, reported as an internal error with exit 1
    (the traceback too when ``STRATUM_DEBUG`` is set). Raises nothing.
    """
    if isinstance(exc, click.exceptions.Abort):
        click.echo(f"stratum: {where}aborted", err=True)
        return 130
    if isinstance(exc, click.ClickException):
        click.echo(f"stratum: error: {where}{_one_line(exc.format_message())}", err=True)
        return 2
    if isinstance(exc, RunInterrupted):
        click.echo(f"stratum: {where}{exc}", err=True)
        return exc.exit_code
    if isinstance(exc, StratumError):
        click.echo(f"stratum: error: {where}{_one_line(str(exc))}", err=True)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        click.echo(f"stratum: {where}interrupted", err=True)
        return 130
    if isinstance(exc, OSError) and exc.errno in DESTINATION_ERRNOS and getattr(exc, "filename", None):
        # A path that could not be written or read by code outside stratum.io: one line, exit 2.
        name = exc.filename
        name = os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)
        click.echo(f"stratum: error: {where}{_one_line(f'{name}: {exc.strerror or type(exc).__name__}')}", err=True)
        return 2
    if os.environ.get(DEBUG_ENV):  # a bug: say so in one line, show the traceback on request
        traceback.print_exception(exc)
    click.echo(
        f"stratum: internal error: {where}{type(exc).__name__}: {_one_line(str(exc))} "
        f"(set {DEBUG_ENV}=1 for the traceback)", err=True,
    )
    return 1


def _scan_option(args, flag: str) -> list[str]:
    """The values of a repeatable ``flag`` among raw arguments (``--flag V`` or ``--flag=V``),
    up to ``--``."""
    values = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            break
        if arg == flag and index + 1 < len(args):
            values.append(args[index + 1])
            index += 2
            continue
        if arg.startswith(flag + "="):
            values.append(arg[len(flag) + 1:])
        index += 1
    return values


def _one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(cls=StratumGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--block-plugin", "-p", "block_plugin", multiple=True, metavar="NAME",
              help="Do not load this plugin (repeatable). Also: STRATUM_BLOCK_PLUGINS=a,b.",
              shell_complete=lambda ctx, param, incomplete: _complete_plugin_names(incomplete))
@click.option("--plugin", "plugin", multiple=True, metavar="MODULE_OR_FILE",
              help="Load a local plugin module without packaging it: a dotted module name or a path to a .py "
                   "file (repeatable; also accepted after `run`). Also: STRATUM_PLUGINS=a,b.")
@click.version_option(__version__, prog_name="stratum")
@click.pass_context
def cli(ctx, block_plugin, plugin):
    """stratum: pluggable training strategies for PyTorch, compared honestly.

    Third-party plugins load from the 'stratum' entry-point group; set
    STRATUM_DISABLE_PLUGIN_AUTOLOAD=1 to load only the built-ins.
    """
    ctx.ensure_object(dict)


def get_pm(ctx: click.Context):
    """The plugin manager of this invocation, created once."""
    root = ctx.find_root()
    root.ensure_object(dict)
    if "pm" not in root.obj:
        block = root.params.get("block_plugin", ()) or ()
        plugins = [*(root.params.get("plugin", ()) or ()), *root.obj.get("run_plugins", ())]
        root.obj["pm"] = create_plugin_manager(block=block, plugins=plugins)
    return root.obj["pm"]


def plugin_commands(ctx: click.Context) -> dict[str, click.Command]:
    """Sub-commands contributed through ``stratum_register_commands``.

    A plugin whose commands cannot be added (its hook raises, or a name exists) is
    disabled with one warning instead of taking the whole CLI down.
    """
    root = ctx.find_root()
    root.ensure_object(dict)
    if "plugin_commands" not in root.obj:
        reserved = set(_COMMAND_BUILDERS) | set(click.Group.list_commands(cli, ctx))
        root.obj["plugin_commands"] = get_pm(ctx).commands(reserved)
    return root.obj["plugin_commands"]


# ---------------------------------------------------------------------------
# stratum run
# ---------------------------------------------------------------------------


def build_run_command(ctx: click.Context) -> click.Command:
    pm = get_pm(ctx)
    params = [
        click.Option(["--config", "config_file"], type=UserPath(dir_okay=False), default=None,
                     help="Read options from a TOML file; flags given here win over it."),
        click.Option(["--plugin", "plugin"], multiple=True, metavar="MODULE_OR_FILE",
                     help="Load a local plugin module (a dotted module name or a .py file; repeatable); "
                          "its options become flags of this command. Same as `stratum --plugin`."),
    ]
    params += [click_option(f) for f in CORE_FIELDS.values()]
    params += [click_option(f) for f in plugin_option_fields(pm.registries.all()).values()]
    return _grouped_run_command(pm, params)


def _grouped_run_command(pm, params) -> click.Command:
    """``stratum run`` with help grouped by core group and component (see :mod:`stratum.grouped_help`)."""
    from .grouped_help import GroupedCommand, run_choices, run_fields

    return GroupedCommand(
        "run", params=params, callback=_run_callback,
        help="Train one model with one strategy and print the result.",
        context_settings={"max_content_width": 100},
        fields=run_fields(pm.registries), registries=lambda: pm.registries, choices=run_choices,
        own_title="Run options",
    )


@click.pass_context
def _run_callback(ctx, config_file, **_kwargs):
    from .deadweights import warning_text
    from .display import ConsoleDisplay, print_result
    from .engine import Trainer
    from .results import write_summary

    from . import distributed

    pm = get_pm(ctx)
    config = config_from_cli(ctx, pm, config_file)
    check_outputs(config, plugin_option_fields(pm.registries.all()))  # before joining a process group
    distributed.init_from_environment(config.device)  # under torchrun: join the process group
    try:
        main = distributed.is_main_process()
        display = ConsoleDisplay(quiet=config.quiet or not main)
        unread = [line for line in (deprecation_line(config),) if line] + _unread_option_lines(config, pm)
        trainer = Trainer(pm, extra_plugins=[("display", display)], handle_signals=True)
        try:
            summary = trainer.run(config)
        except OutputError as exc:
            if exc.finished_result is not None and main:
                print_result(exc.finished_result)  # a failed final write never hides a finished result
            raise
        if main:  # rank 0 reports and writes: the finished result first, so a failed write never hides it
            print_result(summary)
            dead = warning_text(summary["model"], summary.get("dead_parameters"))
            if dead:
                click.echo(f"stratum: warning: {dead}", err=True)
            if summary.get("diverged"):
                click.echo(f"stratum: warning: the run diverged (non-finite loss) at epoch {summary['epochs_run']}", err=True)
            for line in unread:  # after the result, like the other warnings: a failed run shows one error line
                click.echo(line, err=True)
            write_summary(summary, json_path=config.json, run_dir=config.run_dir())
        distributed.shutdown()
        return 0
    except BaseException as exc:
        # Under torchrun a failing rank must not wait for its peers (they may sit in an
        # all-reduce it will never join): print its line, then leave at once.
        distributed.fail_fast(exc, report_error)
        raise


def deprecation_line(config) -> str | None:
    """The one warning line for a deprecated option the user set (``--tensorboard DIR``), or ``None``."""
    if config.is_set("tensorboard") and config.tensorboard is not None:
        return ("stratum: warning: --tensorboard DIR is deprecated; use --log tensorboard --tensorboard-dir DIR "
                "(TOML: log = [\"tensorboard\"], tensorboard-dir = \"DIR\")")
    return None


def _unread_option_lines(config, pm) -> list[str]:
    """One warning line per plugin option given that no component of this run reads
    (``--width`` with ``--model mlp``); the run leaves it out (:func:`stratum.config.resolve_config`)."""
    from .config import readers_text, unread_options

    lines = []
    for name, readers in unread_options(config, pm.registries).items():
        flag = "--" + name.replace("_", "-")
        who = readers_text(readers)
        lines.append(f"stratum: warning: {flag} is ignored: no component of this run reads it"
                     + (f" (only {who} read it)" if who else ""))
    return lines


# ---------------------------------------------------------------------------
# stratum list / plugins
# ---------------------------------------------------------------------------

def build_list_command(ctx) -> click.Command:
    @click.command("list", help="List registered components (all kinds, or one KIND) with plugin and description. "
                                "`stratum list model` also states each model's dead weights on each data set's input "
                                "shape (this builds the models, so it imports torch).")
    @click.argument("kind", required=False,
                    shell_complete=lambda ctx, param, incomplete: complete_values(KINDS, incomplete))
    @click.pass_context
    def list_cmd(ctx, kind):
        pm = get_pm(ctx)
        if kind is not None:
            if kind not in KIND_ALIASES:
                raise StratumError(unknown_name_message("component kind", kind, KINDS))
            kinds = [KIND_ALIASES[kind]]
        else:
            kinds = list(KINDS)
        for k in kinds:
            registry = pm.registries[k]
            click.echo(f"{k}:")
            if not len(registry):
                click.echo("  (none)")
            width = max((len(c.name) for c in registry), default=0)
            pwidth = max((len(c.plugin) for c in registry), default=0)
            shapes = {}
            if kind is not None and k == "model":  # only when asked for models: it imports torch
                from .deadweights import dataset_shapes, describe_for_list, model_on_shapes

                shapes = dataset_shapes(pm.registries)
            for component in registry:
                plugin = f"[{component.plugin}]"
                click.echo(f"  {component.name:<{width}}  {plugin:<{pwidth + 2}}  {component.summary_line()}")
                if shapes:  # structurally dead weights on each data set's input (stratum.deadweights)
                    click.echo(f"  {'':<{width}}  {'':<{pwidth + 2}}  {describe_for_list(model_on_shapes(component, shapes))}")
        return 0

    return list_cmd


def build_plugins_command(ctx) -> click.Command:
    @click.command("plugins", help="Show loaded plugins: where each came from and its version.")
    @click.pass_context
    def plugins_cmd(ctx):
        pm = get_pm(ctx)
        pm.registries  # registration failures update the records
        rows = sorted(pm.records.values(), key=lambda r: (r.origin != "builtin", r.name))
        width = max([len(r.name) for r in rows] + [len("plugin")])
        owidth = max([len(r.origin) for r in rows] + [len("origin")])
        click.echo(f"{'plugin':<{width}}  {'origin':<{owidth}}  {'version':<8}  {'status':<8}  module")
        for r in rows:
            detail = f"  ({r.detail})" if r.detail else ""
            click.echo(f"{r.name:<{width}}  {r.origin:<{owidth}}  {r.version:<8}  {r.status:<8}  {r.module}{detail}")
        heavy = [r for r in rows if r.heavy_imports]
        for r in heavy:
            click.echo(f"note: plugin {r.name!r} imports {', '.join(r.heavy_imports)} when it loads, so every stratum "
                       "command (even --help) waits for it; docs/plugin-guide.md, 'Keeping registration light', says how "
                       "to defer it")
        return 0

    return plugins_cmd


def _lazy_builder(module: str, attr: str):
    """A command builder imported on first use (keeps `stratum run` start-up lean)."""

    def build(ctx):
        import importlib

        return getattr(importlib.import_module(module), attr)(ctx)

    return build


_COMMAND_BUILDERS = {
    "run": build_run_command,
    "list": build_list_command,
    "plugins": build_plugins_command,
    "bench": _lazy_builder("stratum.bench.cli", "build_bench_command"),
    "report": _lazy_builder("stratum.report.cli", "build_report_command"),
    "tune": _lazy_builder("stratum.tune.cli", "build_tune_command"),
}


def register_command(name: str, builder) -> None:
    """Add a sub-command built lazily from the click context (used by later core modules)."""
    _COMMAND_BUILDERS[name] = builder


def main(argv=None):
    cli.main(args=argv, prog_name="stratum")


if __name__ == "__main__":  # pragma: no cover
    main()
