"""attrs values to and from JSON-ready data, strictly: the machinery behind the spec's
one writer and one reader (:mod:`dbprofile.spec` holds the format-specific hooks).

A :class:`Converter` walks attrs fields: unstructuring writes each field under its name;
structuring reads a mapping whose keys must be fields (no extras), each value checked
against the field's annotation (``str``, ``int``, ``float``, ``bool``, ``X | None``,
``Literal[...]``, ``tuple[X, ...]``, another attrs class). Where a value's JSON form
differs from its attrs form, a hook (writer, reader) registered by class or field name
takes over; fields named in ``omit_when_empty`` (``omit_when_none``) are left out when
empty (None) and read back as their default. A wrong value raises :class:`Invalid`
naming its key path (``pool.size: must be an integer, got a string``). Cheap: no cattrs
import, annotations resolved once per class.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import attrs

__all__ = ["Converter", "Invalid", "kind_of", "read_table", "read_value"]

_T = TypeVar("_T")
Writer = Callable[[Any], Any]
Reader = Callable[[Any, str], Any]


class Invalid(Exception):
    """A value that is not what the format says, at ``path``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def kind_of(value: Any) -> str:
    """What a JSON value is, for "got ..." (never the value: it may be anything)."""
    names = {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def read_table(data: Any, path: str, allowed: Collection[str] | None) -> Mapping[str, Any]:
    """``data`` as a mapping whose keys are all in ``allowed`` (any, for None)."""
    if not isinstance(data, Mapping):
        raise Invalid(path, f"must be a table, got {kind_of(data)}")
    if allowed is not None:
        unknown = [str(k) for k in data if k not in allowed]
        if unknown:
            unknown.sort()
            raise Invalid(f"{path}.{unknown[0]}" if path else unknown[0], "unknown key")
    return data


def read_value(tp: Any, value: Any, path: str) -> Any:
    """``value`` as a plain type ``tp`` (``str``, ``int``, ``float``, ``bool``, unions with
    None, ``Literal``), or :class:`Invalid`."""
    if get_origin(tp) is Literal:
        options = get_args(tp)
        if value in options:
            return value
        raise Invalid(path, f"must be one of {', '.join(map(repr, options))}, got {value!r}")
    if isinstance(tp, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return read_value(inner[0], value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise Invalid(path, f"must be true or false, got {kind_of(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Invalid(path, f"must be an integer, got {kind_of(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise Invalid(path, "must be a finite number")
            return float(value)
        raise Invalid(path, f"must be a number, got {kind_of(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise Invalid(path, f"must be a string, got {kind_of(value)}")
    raise TypeError(f"read_value cannot read {tp!r}")  # pragma: no cover - a programming error


def _plain_reader(tp: Any) -> Reader:
    """A reader for a plain annotation, decided once (not per value)."""
    if tp in (str, int, bool):
        expected = {str: "a string", int: "an integer", bool: "true or false"}[tp]

        def read_exact(value: Any, path: str) -> Any:
            # bool is an int subclass: an int field never takes True, a bool only a bool
            if type(value) is tp or (tp is int and type(value) is int):
                return value
            raise Invalid(path, f"must be {expected}, got {kind_of(value)}")

        return read_exact
    return lambda value, path: read_value(tp, value, path)


class Converter:
    """Unstructure and structure attrs classes, with hooks (see module doc). Each class's
    reader is planned once: per field, a function chosen from its annotation."""

    def __init__(
        self,
        hooks: Mapping[str, tuple[Writer, Reader]],
        omit_when_empty: frozenset[str] = frozenset(),
        omit_when_none: frozenset[str] = frozenset(),
    ) -> None:
        self.hooks = dict(hooks)
        self.omit_when_empty = omit_when_empty
        self.omit_when_none = omit_when_none
        self._plans: dict[type, tuple[dict[str, Reader], tuple[str, ...]]] = {}

    def unstructure(self, value: Any, name: str = "") -> Any:
        if value is None:
            return None
        hook = self.hooks.get(name) or self.hooks.get(type(value).__name__)
        if hook is not None:
            return hook[0](value)
        if attrs.has(type(value)):
            out = {}
            for f in attrs.fields(type(value)):
                item = getattr(value, f.name)
                if f.name in self.omit_when_empty and not item:
                    continue
                if item is None and f.name in self.omit_when_none:
                    continue
                out[f.name] = self.unstructure(item, f.name)
            return out
        if isinstance(value, tuple):
            return [self.unstructure(v) for v in value]
        return value

    def structure(self, cls: type[_T], data: Any, path: str = "") -> _T:
        """An instance of attrs class ``cls`` from ``data``, or :class:`Invalid`."""
        readers, required = self._plan(cls)
        table = read_table(data, path, readers.keys())
        kwargs = {
            name: readers[name](value, f"{path}.{name}" if path else name)
            for name, value in table.items()
        }
        for name in required:
            if name not in kwargs:
                raise Invalid(f"{path}.{name}" if path else name, "is missing")
        return cls(**kwargs)

    def _plan(self, cls: type) -> tuple[dict[str, Reader], tuple[str, ...]]:
        plan = self._plans.get(cls)
        if plan is None:
            hints = get_type_hints(cls)
            fields = attrs.fields(cls)
            readers = {
                f.name: self.hooks[f.name][1]
                if f.name in self.hooks
                else self._reader(hints[f.name])
                for f in fields
            }
            required = tuple(f.name for f in fields if f.default is attrs.NOTHING)
            plan = self._plans[cls] = (readers, required)
        return plan

    def _reader(self, tp: Any) -> Reader:
        """The function that reads a value of annotation ``tp``."""
        if isinstance(tp, types.UnionType):
            inner = [o for o in get_args(tp) if o is not type(None)]
            if len(inner) == 1 and (attrs.has(inner[0]) or inner[0].__name__ in self.hooks):
                read_inner = self._reader(inner[0])
                return lambda value, path: None if value is None else read_inner(value, path)
            return lambda value, path: read_value(tp, value, path)
        if get_origin(tp) is tuple:
            read_item = self._reader(get_args(tp)[0])

            def read_tuple(value: Any, path: str) -> Any:
                if not isinstance(value, list):
                    raise Invalid(path, f"must be a list, got {kind_of(value)}")
                return tuple(read_item(v, f"{path}[{i}]") for i, v in enumerate(value))

            return read_tuple
        name = getattr(tp, "__name__", "")
        if name in self.hooks:
            return self.hooks[name][1]
        if attrs.has(tp):
            return lambda value, path: self.structure(tp, value, path)
        return _plain_reader(tp)
