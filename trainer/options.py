"""Command-line options generated from config dataclasses: each field declared once.

    add_dataclass_arguments(parser, TrainConfig, rename={"data": "amass-root"})
    cfg = dataclass_from_args(TrainConfig, args)

Every field becomes ``--field-name`` (nested dataclasses: their fields, prefixed with the
field's name where ``prefix_nested`` says so); the help text is the field's docstring (a string
literal right after the field, or its entry in an ``Attributes:`` section of the class
docstring), with the default shown. Types: ``int``, ``float``, ``str``, ``bool``
(``--x/--no-x``), ``Literal[...]`` (choices), ``list[...]`` (several values; none clears it)
and ``X | None`` (``none`` gives ``None``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import operator
import re
import textwrap
import types
import typing
from typing import Any, Literal

_SEP = "."


def field_docs(cls: type) -> dict[str, str]:
    """``{field: first sentence of its documentation}`` from the class source and docstring."""
    docs: dict[str, str] = {}
    doc = inspect.getdoc(cls) or ""
    m = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)+)", doc, re.M)
    if m:  # Google style: "name: text", continuation lines indented further
        name = None
        for line in textwrap.dedent(m.group(1)).splitlines():
            head = re.match(r"^([\w, ]+):\s*(.*)$", line)
            if head and not line.startswith(" "):
                names = [n.strip() for n in head.group(1).split(",")]
                for n in names:
                    docs[n] = head.group(2)
                name = names
            elif name and line.strip():
                for n in name:
                    docs[n] += " " + line.strip()
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return docs
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for a, b in zip(body, body[1:], strict=False):
        if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
                and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)
                and isinstance(b.value.value, str)):
            docs[a.target.id] = " ".join(b.value.value.split())
    return docs


def _unwrap(tp) -> tuple[Any, bool]:
    """``(type without None, optional?)``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return functools.reduce(operator.or_, rest), True
    return tp, False


def _converter(tp, optional: bool):
    base = tp
    if typing.get_origin(tp) is Literal:
        base = type(typing.get_args(tp)[0])

    def convert(text: str):
        if optional and text.lower() == "none":
            return None
        return base(text)

    convert.__name__ = getattr(base, "__name__", "value")  # argparse names it in errors
    return convert


def _default_text(v) -> str:
    if isinstance(v, list | tuple):
        return " ".join(map(str, v)) or "none"
    return str(v)


def add_dataclass_arguments(parser, cls: type, *, rename: dict[str, str] | None = None,
                            required: tuple[str, ...] = (), skip: tuple[str, ...] = (),
                            prefix_nested: tuple[str, ...] = (), _path: str = "",
                            _prefix: str = "") -> None:
    """Add one option per field of dataclass ``cls`` (recursively) to ``parser``.

    Args:
        rename: ``{field path: option name}`` (e.g. ``{"data": "amass-root"}``).
        required: field paths whose options are required (fields without a default are too).
        skip: field paths not offered on the command line (their defaults are used).
        prefix_nested: nested fields whose options carry their name as a prefix
            (``data_term`` -> ``--data-term-head``); other nested fields are flattened.
    """
    rename = rename or {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        path = _path + f.name
        if path in skip:
            continue
        tp = hints[f.name]
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else dataclasses.MISSING)
        if dataclasses.is_dataclass(tp):
            pre = _prefix + (f.name.replace("_", "-") + "-" if path in prefix_nested else "")
            add_dataclass_arguments(parser, tp, rename=rename, required=required, skip=skip,
                                    prefix_nested=prefix_nested, _path=path + _SEP,
                                    _prefix=pre)
            continue
        name = "--" + rename.get(path, _prefix + f.name.replace("_", "-"))
        kw: dict[str, Any] = {"dest": path}
        help_ = docs.get(f.name, "")
        inner, optional = _unwrap(tp)
        if inner is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(inner) in (list, tuple):
            item = typing.get_args(inner)[0]
            kw.update(nargs="*", type=_converter(item, False), metavar=f.name.upper())
        else:
            kw["type"] = _converter(inner, optional)
            if typing.get_origin(inner) is Literal:
                kw["choices"] = list(typing.get_args(inner))
            else:
                kw["metavar"] = "N" if inner in (int, float) else f.name.upper()
        if default is dataclasses.MISSING or path in required:
            kw["required"] = True
            if default is dataclasses.MISSING and typing.get_origin(inner) in (list, tuple):
                kw["nargs"] = "+"
        else:
            kw["default"] = default
            help_ = f"{help_} (default: {_default_text(default)})".strip()
        parser.add_argument(name, help=help_.replace("``", "").replace("%", "%%"), **kw)


def dataclass_from_args(cls: type, args: argparse.Namespace, _path: str = ""):
    """The ``cls`` instance that the options of :func:`add_dataclass_arguments` describe."""
    hints = typing.get_type_hints(cls)
    values = {}
    ns = vars(args)
    for f in dataclasses.fields(cls):
        path = _path + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = dataclass_from_args(hints[f.name], args, path + _SEP)
        elif path in ns:
            v = ns[path]
            values[f.name] = list(v) if isinstance(v, tuple) else v
    return cls(**values)
