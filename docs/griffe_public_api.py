"""A griffe extension: the API reference shows the public API only, with real default values.

Loaded by mkdocstrings (``extensions:`` in mkdocs.yml). The source keeps its private helpers and
named constants; the reference shows what a caller sees:

- a private base class (``_ClientBase``, ``_Result``) disappears from "Bases:", its public members
  are shown on the public class as its own, and its own bases take its place;
- a default that names a module constant (``timeout=protocol.DEFAULT_TIMEOUT``) is shown as the
  constant's value (``timeout=30.0``), so the constant stays the single source of the number;
- a private type alias in an annotation (``_Photos``) is replaced by what it stands for;
- a constant documented by ``#:`` comment lines right above it (the Sphinx convention the source
  uses) gets that text as its docstring.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

import griffe

PACKAGE = "ncp_cfr"


def _is_private(path: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in path.split("."))


def _lookup(collection: griffe.ModulesCollection, path: str) -> griffe.Object | None:
    try:
        obj = collection.get_member(path)
        target = obj.final_target if isinstance(obj, griffe.Alias) else obj
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return target if isinstance(target, griffe.Object) else None


def _path_of(expr: Any) -> str | None:
    if isinstance(expr, (griffe.ExprName, griffe.ExprAttribute)):
        try:
            return str(expr.canonical_path)
        except Exception:  # an unresolvable name: leave it as written
            return None
    return None


class PublicAPI(griffe.Extension):
    """Hide private bases and aliases, show constant defaults as values."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        collection = loader.modules_collection
        for obj in _walk(pkg):
            if isinstance(obj, griffe.Class):
                self._flatten_private_bases(obj, collection)
            if isinstance(obj, griffe.Function):
                for param in obj.parameters:
                    param.default = self._value_of(param.default, collection)
                    param.annotation = self._expand(param.annotation, collection)
                obj.returns = self._expand(obj.returns, collection)
            if isinstance(obj, griffe.Attribute):
                if obj.annotation is not None:
                    obj.annotation = self._expand(obj.annotation, collection)
                if obj.docstring is None:
                    _comment_docstring(obj)

    def _flatten_private_bases(
        self, cls: griffe.Class, collection: griffe.ModulesCollection
    ) -> None:
        bases: list[Any] = []
        pending = list(cls.bases)
        seen: set[str] = set()
        while pending:
            base = pending.pop(0)
            path = _path_of(base) or str(base)
            target = _lookup(collection, path) if _is_private(path) else None
            if not isinstance(target, griffe.Class) or path in seen:
                bases.append(base)
                continue
            seen.add(path)
            for name, member in target.members.items():
                if name.startswith("_") or name in cls.members:
                    continue
                cls.set_member(name, griffe.Alias(name, member, parent=cls))
            pending[:0] = list(target.bases)
        cls.bases = bases

    def _value_of(self, default: Any, collection: griffe.ModulesCollection) -> Any:
        for _ in range(5):  # a constant defined as another constant
            path = _path_of(default)
            if path is None or not path.startswith(PACKAGE + "."):
                return default
            target = _lookup(collection, path)
            if not isinstance(target, griffe.Attribute) or target.value is None:
                return default
            value = target.value
            if _is_literal(str(value)):
                return str(value)
            if isinstance(value, (griffe.ExprName, griffe.ExprAttribute)):
                default = value
                continue
            # a private sentinel (``_NOT_GIVEN = object()``): "has a default", as stubs write it
            return "..." if _is_private(path) else default
        return default

    def _expand(self, expr: Any, collection: griffe.ModulesCollection) -> Any:
        if isinstance(expr, griffe.ExprName) and expr.name.startswith("_"):
            target = _lookup(collection, _path_of(expr) or "")
            if isinstance(target, griffe.Attribute) and isinstance(target.value, griffe.ExprCall):
                # a private TypeVar (``_Self``, ``_T``): shown by its public spelling
                return expr.name.lstrip("_")
            if isinstance(target, griffe.Attribute) and isinstance(target.value, griffe.Expr):
                return self._expand(target.value, collection)
            return expr
        if isinstance(expr, griffe.Expr) and dataclasses.is_dataclass(expr):
            for field in dataclasses.fields(expr):
                value = getattr(expr, field.name)
                if isinstance(value, list):
                    new = [self._expand(v, collection) for v in value]
                else:
                    new = self._expand(value, collection)
                if new is not value:
                    object.__setattr__(expr, field.name, new)
        return expr


def _comment_docstring(attr: griffe.Attribute) -> None:
    if attr.lineno is None or not attr.filepath or isinstance(attr.filepath, list):
        return
    lines = attr.filepath.read_text(encoding="utf-8").splitlines()
    comment: list[str] = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        comment.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    if comment:
        attr.docstring = griffe.Docstring("\n".join(comment), parent=attr)


def _is_literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return True


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found: list[griffe.Object] = [obj]
    for member in list(obj.members.values()):
        if isinstance(member, griffe.Alias):
            continue
        if isinstance(member, (griffe.Module, griffe.Class)):
            found.extend(_walk(member))
        else:
            found.append(member)
    return found
