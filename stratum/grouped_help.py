"""Help that lists options by group, and only those of the components a run uses.

``stratum run --help`` and ``stratum bench --help`` print the command's own
options, then one section per core group (:data:`stratum.options.CORE_GROUPS`:
run, data, optimisation, output, reproducibility), then one section per
component ("Strategy focus options"). A plugin option that names a ``group``
of its own is listed under that group instead.

Which components' options are shown follows the command line: the components
chosen by flags (``--strategy focus --model vgg11``), by the TOML file of
``--config FILE``, and the defaults for every kind not chosen (strategy sgd,
model vgg11, dataset digits, ...), plus, transitively, the components their
options name (focus's regressor, features, policy) and every extension. So the
help of ``stratum run --strategy focus --help`` is the help of that run.
``--help-all`` shows the options of every registered component. Help only
changes what is listed: every flag is accepted whatever help shows.

This is the CLI layer (it sits beside :mod:`stratum.cli`), built on click's own
``Command.format_options``; it imports only downwards (config, options, components).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Mapping

import attrs
import click

from .components import KINDS
from .config import CORE_FIELDS, check_names, components_in_use, make_config, plugin_option_fields
from .options import CORE_GROUPS, option_meta

# ctx.meta keys: the option values parsed for help, and whether --help-all was asked for.
HELP_VALUES = "stratum.help_values"
HELP_ALL = "stratum.help_all"
# A bench's choices multiply; past this many combinations help stops looking for more components.
MAX_HELP_COMBINATIONS = 4096


def component_label(components: Iterable) -> str:
    """``"strategy focus"``, or ``"optimizer adam, adamw"`` for several of one kind
    (``"model cnn, mlp, vgg11, vgg13, vgg16 and 3 more"`` past five names;
    ``"strategy focus / extension capture"`` across kinds)."""
    by_kind: dict[str, list[str]] = {}
    for component in components:
        by_kind.setdefault(component.kind, []).append(component.name)
    parts = []
    for kind, names in by_kind.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"{kind.replace('_', ' ')} {shown}")
    return " / ".join(parts)


def option_group(field: attrs.Attribute, owners: list) -> str:
    """The help section of an option field: its declared ``group``, else its owners' label."""
    meta = option_meta(field) or {}
    return meta.get("group") or component_label(owners)


def components_for_choices(choices: Mapping[str, list], registries) -> list:
    """The components runs with ``choices`` would use, each once, grouped by kind.

    ``choices`` maps name-valued options (core or plugin: ``strategy``, ``regressor``
    ...) to the values given for them (one for ``stratum run``, several for a bench
    axis); options not in it take their defaults. Raises
    :class:`~stratum.errors.UnknownNameError` for a name nobody registered and
    :class:`~stratum.errors.ConfigError` for a malformed value.
    """
    plugin_fields = plugin_option_fields(registries.all())
    names = list(choices)
    found: dict[tuple[str, str], tuple[int, Any]] = {}
    combinations = itertools.product(*(choices[name] or [None] for name in names))
    for combination in itertools.islice(combinations, MAX_HELP_COMBINATIONS):
        values = {name: value for name, value in zip(names, combination) if value is not None}
        config = make_config(values, plugin_fields=plugin_fields)
        check_names(config, registries)
        for component in components_in_use(config, registries):
            found.setdefault((component.kind, component.name), (len(found), component))
    ordered = sorted(found.values(), key=lambda item: (KINDS.index(item[1].kind), item[0]))
    return [component for _, component in ordered]


def name_valued(fields: Mapping[str, attrs.Attribute]) -> dict[str, attrs.Attribute]:
    """The fields among ``fields`` whose values name components (declared with ``kind=``)."""
    return {name: field for name, field in fields.items() if (option_meta(field) or {}).get("kind")}


def toml_choices(path, fields: Mapping[str, attrs.Attribute]) -> dict[str, list]:
    """The name-valued options a ``stratum run --config FILE`` TOML sets (others are left to the run)."""
    from .config import load_toml

    wanted = name_valued(fields)
    out = {}
    for key, value in load_toml(path).items():
        name = str(key).replace("-", "_")
        if name in wanted:
            out[name] = [value]
    return out


def _show_all_help(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    ctx.meta[HELP_ALL] = True
    click.echo(ctx.get_help(), color=ctx.color)
    ctx.exit()


def help_all_option() -> click.Option:
    """``--help-all``: the help with the options of every registered component."""
    return click.Option(["--help-all"], is_flag=True, expose_value=False, is_eager=True, callback=_show_all_help,
                        help="Show the options of every registered component, not only of those chosen.")


class GroupedCommand(click.Command):
    """A click command whose help lists options by core group and by component.

    ``fields`` maps parameter names to the option fields behind them (core and
    plugin); parameters not in it are the command's own, listed first under
    ``own_title``. ``registries`` gives the registered components (a callable, so the
    plugins load only when help is asked for). ``choices(values, fields)`` turns the
    option values parsed from the command line (click's parser, by parameter name)
    into the name-valued options chosen, each with a list of values; see
    :func:`components_for_choices`.
    """

    def __init__(self, *args, fields: Mapping[str, attrs.Attribute], registries: Callable[[], Any],
                 choices: Callable[[dict, Mapping[str, attrs.Attribute]], dict], own_title: str = "Options", **kwargs):
        super().__init__(*args, **kwargs)
        self.params.append(help_all_option())
        self.option_fields = dict(fields)
        self.registries = registries
        self.choices = choices
        self.own_title = own_title

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Keep what the command line chose, parsed by click, for the help to follow."""
        asked = {*ctx.help_option_names, "--help-all"}
        if not ctx.resilient_parsing and any(arg in asked for arg in args):
            try:
                values, _, _ = self.make_parser(ctx).parse_args(args=list(args))
            except click.UsageError:  # the real parse below reports it
                values = {}
            ctx.meta[HELP_VALUES] = values
        return super().parse_args(ctx, args)

    def shown_components(self, ctx: click.Context) -> tuple[list, bool]:
        """(components whose options help lists, whether that is every registered one)."""
        registries = self.registries()
        if ctx.meta.get(HELP_ALL):
            return list(registries.all()), True
        values = {k: v for k, v in ctx.meta.get(HELP_VALUES, {}).items() if v is not None}
        return components_for_choices(self.choices(values, self.option_fields), registries), False

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        components, everything = self.shown_components(ctx)
        ctx.meta["stratum.help_shown"] = components
        if everything:
            note = ("Listing the options of every registered component (--help-all). Every flag is accepted "
                    "whichever components a run uses; each reaches only the component that declares it.")
        else:
            hidden = self._hidden_flags(components)
            note = (f"Listing the core options and those of the components this command line uses: "
                    f"{component_label(components)} (kinds not chosen by flags or --config FILE take their defaults). "
                    f"To see the options of others, choose them (e.g. `--strategy focus --help`) "
                    f"or use --help-all ({hidden} more option{'' if hidden == 1 else 's'}); "
                    "every flag is accepted either way.")
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(note)

    def _hidden_flags(self, components: list) -> int:
        shown = {f.name for c in components if c.options is not None for f in attrs.fields(c.options)}
        return sum(1 for name in self.option_fields if name not in CORE_FIELDS and name not in shown)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """One section for the command's own options, one per core group, one per component group."""
        components = ctx.meta.get("stratum.help_shown")
        if components is None:
            components, _ = self.shown_components(ctx)
        owners: dict[str, list] = {}
        for component in components:
            if component.options is not None:
                for field in attrs.fields(component.options):
                    owners.setdefault(field.name, []).append(component)
        position = {(c.kind, c.name): index for index, c in enumerate(components)}
        sections: dict[str, list[tuple[str, str]]] = {self.own_title: []}
        sections.update({f"{group.capitalize()} options": [] for group in CORE_GROUPS})
        order: dict[str, int] = {}  # component sections follow the components' order
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            field = self.option_fields.get(param.name)
            if field is None:
                title = self.own_title
            elif param.name in CORE_FIELDS:
                title = f"{(option_meta(field)['group'] or 'run').capitalize()} options"
            elif param.name in owners:
                group = option_group(field, owners[param.name])
                title = f"{group[:1].upper()}{group[1:]} options"
                first = min(position[(c.kind, c.name)] for c in owners[param.name])
                order[title] = min(order.get(title, first), first)
            else:
                continue  # an option of a component this command line does not use
            sections.setdefault(title, []).append(record)
        titles = sorted(sections, key=lambda t: (t in order, order.get(t, 0)))  # stable: own, core, components
        for title in titles:
            rows = sections[title]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def run_choices(values: dict, fields: Mapping[str, attrs.Attribute]) -> dict[str, list]:
    """What a ``stratum run`` command line chooses: its ``--config`` TOML, then its flags."""
    wanted = name_valued(fields)
    chosen = toml_choices(values["config_file"], fields) if values.get("config_file") else {}
    for name in wanted:
        value = values.get(name)
        if value is not None and value != []:
            chosen[name] = [value]
    return chosen


def run_fields(registries) -> dict[str, attrs.Attribute]:
    """Every option field of ``stratum run``: the core ones, then the plugins'."""
    return {**CORE_FIELDS, **plugin_option_fields(registries.all())}
