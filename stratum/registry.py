"""Named registries that fail helpfully."""

from __future__ import annotations

import difflib
from typing import Iterator

from .components import KINDS, Component
from .errors import DuplicateNameError, UnknownNameError


def closest(name: str, candidates) -> str | None:
    """The candidate most similar to ``name``, or ``None`` when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: str, available) -> str:
    available = sorted(available)
    message = f"unknown {kind.replace('_', ' ')} {name!r}"
    suggestion = closest(name, available)
    if suggestion:
        message += f"; did you mean {suggestion!r}?"
    message += f" (available: {', '.join(available) if available else 'none'})"
    return message


class Registry:
    """Components of one kind, by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Component] = {}
        # name -> plugins whose registrations were replaced through ``override``
        self.overridden: dict[str, list[str]] = {}

    def add(self, component: Component) -> None:
        if component.kind != self.kind:
            raise ValueError(f"{component.kind} {component.name!r} added to the {self.kind} registry")
        existing = self._items.get(component.name)
        if existing is not None:
            if not component.override:
                raise DuplicateNameError(
                    f"plugin {component.plugin!r} registers {self.kind} {component.name!r}, "
                    f"which plugin {existing.plugin!r} already registered "
                    "(set override=True on the component to replace it)"
                )
            self.overridden.setdefault(component.name, []).append(existing.plugin)
        self._items[component.name] = component

    def get(self, name: str) -> Component:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._items)) from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._items.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)


class Registries:
    """One :class:`Registry` per component kind."""

    def __init__(self):
        self._by_kind = {kind: Registry(kind) for kind in KINDS}

    def __getitem__(self, kind: str) -> Registry:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise UnknownNameError(unknown_name_message("component kind", kind, self._by_kind)) from None

    def __getattr__(self, kind: str) -> Registry:
        # registries.strategy, registries.model, ...
        by_kind = self.__dict__.get("_by_kind", {})
        if kind in by_kind:
            return by_kind[kind]
        raise AttributeError(kind)

    def kinds(self):
        return list(self._by_kind)

    def all(self) -> Iterator[Component]:
        for registry in self._by_kind.values():
            yield from registry

    def get(self, kind: str, name: str) -> Component:
        return self[kind].get(name)

    def collision(self, components, describe=repr) -> str | None:
        """Why ``components`` (all from one plugin) cannot join these registries, or ``None``.

        A collision is a name already registered in the same kind, by another plugin or by
        the same one, without ``override=True``. The message names both plugins (through
        ``describe(plugin_name)``) and the ``-p NAME`` ways out.
        """
        seen: dict[tuple[str, str], Component] = {}
        for component in components:
            key = (component.kind, component.name)
            existing = seen.get(key)
            if existing is None and component.name in self[component.kind] and not component.override:
                existing = self[component.kind].get(component.name)
            if existing is not None:
                new = component.plugin
                ways_out = "" if existing.plugin == new else f"; -p {existing.plugin} would let {new!r} provide it"
                return (
                    f"{describe(new)} registers {component.kind} {component.name!r}, which "
                    f"{describe(existing.plugin)} already registered (set override=True on the component "
                    f"to replace it{ways_out})"
                )
            seen[key] = component
        return None
