"""A griffe extension: the API reference shows the public API only, with real default values.

Loaded by mkdocstrings (``extensions:`` in mkdocs.yml). The source keeps its private modules,
helpers and named constants; the reference shows what a caller sees:

- a private base class (``ClientBase`` in ``clients._base``, ``_Result``) disappears from
  "Bases:", its public members and its ``__init__`` are copied onto the public class, and its own
  bases take its place (``Generic[...]`` is dropped). A subscripted base
  (``Client(Methods[httpx.Client])``) is folded too: in the copies, the base's type variables read
  as the subscript's arguments (``http_client: httpx.Client | None``), and a ``self: _Self``
  method returns the public class. The base's own objects are left as they are;
- a method that a decorator of the package turns into another (``@public def detect_faces(...)
  -> Single[FaceResult]``), or that a wrapper makes (``detect_faces = blocking(Methods._x)``),
  shows what a caller gets on that class. The type is worked out from the wrapper's annotations:
  it takes ``Callable[..., Single[T] | Many[T]]`` (a descriptor's ``__init__``, a function's first
  parameter) and gives ``Callable[..., T]`` (the ``__get__`` overload for that class, a
  function's return), so the method returns ``FaceResult``; a ``Coroutine`` makes it async;
- a default that names a module constant (``timeout=protocol.DEFAULT_TIMEOUT``) is shown as the
  constant's value (``timeout=30.0``), so the constant stays the single source of the number; a
  constant that is no literal (``NOT_GIVEN``) is shown by its public name;
- a private type alias in an annotation (``_Photos``) is replaced by what it stands for;
- a name defined in a private module (``ncp_cfr.images._types.ImageSource``) is linked by its
  public path (``ncp_cfr.ImageSource``), or shown as plain text when it has none, so no private
  module path reaches the site;
- a constant documented by ``#:`` comment lines right above it (the Sphinx convention the source
  uses) gets that text as its docstring.

Only what the public API reaches is changed: objects of private modules that no public name
exports keep their source form.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import griffe

PACKAGE = "ncp_cfr"
GENERIC = {"typing.Generic", "typing_extensions.Generic"}
CALLABLE = {"typing.Callable", "collections.abc.Callable"}
AWAITABLE = {
    "typing.Coroutine",
    "collections.abc.Coroutine",
    "typing.Awaitable",
    "collections.abc.Awaitable",
}
TYPE_VAR_FACTORIES = ("TypeVar", "ParamSpec", "TypeVarTuple")

#: Type variable (canonical path) -> what it stands for in a copy.
Bindings = dict[str, Any]


def _is_private(path: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in path.split("."))


def _lookup(collection: griffe.ModulesCollection, path: str) -> griffe.Object | None:
    try:
        obj = collection.get_member(path)
        target = obj.final_target if isinstance(obj, griffe.Alias) else obj
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return target if isinstance(target, griffe.Object) else None


def _path_of(expr: Any) -> str | None:
    if isinstance(expr, (griffe.ExprName, griffe.ExprAttribute)):
        try:
            return str(expr.canonical_path)
        except Exception:  # an unresolvable name: leave it as written
            return None
    return None


def _map(expr: Any, replace: Callable[[Any], Any]) -> Any:
    """``expr`` rebuilt with ``replace(node)`` for each node it returns something for.

    Never changes ``expr``: the same expression objects may be shared with the private source
    objects (copies share the unchanged parts).
    """
    new = replace(expr)
    if new is not None:
        return new
    if isinstance(expr, griffe.ExprName) or not (
        isinstance(expr, griffe.Expr) and dataclasses.is_dataclass(expr)
    ):
        return expr  # a name's ``parent`` is its scope, not part of the expression
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(expr):
        if not field.init:
            continue
        value = getattr(expr, field.name)
        if isinstance(value, (list, tuple)):
            mapped: Any = type(value)(_map(v, replace) for v in value)
            if any(m is not v for m, v in zip(mapped, value, strict=True)):
                changes[field.name] = mapped
        else:
            mapped = _map(value, replace)
            if mapped is not value:
                changes[field.name] = mapped
    return dataclasses.replace(expr, **changes) if changes else expr


class PublicAPI(griffe.Extension):
    """Fold private bases, show constant defaults as values, link public paths only."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        self.collection = loader.modules_collection
        self.public = _public_paths(pkg)
        for obj in _documented(pkg, self._fold_class):
            if isinstance(obj, griffe.Function):
                for param in obj.parameters:
                    param.default = self._publish(self._value_of(param.default))
                    param.annotation = self._publish(self._expand(param.annotation))
                obj.returns = self._publish(self._expand(obj.returns))
            elif isinstance(obj, griffe.Attribute):
                obj.annotation = self._publish(self._expand(obj.annotation))
                obj.value = self._publish(self._value_of(obj.value))
                if obj.docstring is None:
                    text = _comment(obj)
                    if text:
                        obj.docstring = griffe.Docstring(text, parent=obj)
            elif isinstance(obj, griffe.Class):
                obj.bases = [self._publish(base) for base in obj.bases]

    # -- classes ----------------------------------------------------------------------------------

    def _fold_class(self, cls: griffe.Class) -> None:
        self._fold_private_bases(cls)
        for name, member in list(cls.members.items()):
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, griffe.Attribute):
                made = self._wrapped_method(cls, member)
                if made is not None:
                    cls.set_member(name, made)
            elif isinstance(member, griffe.Function):
                self._apply_decorators(member, cls)

    def _fold_private_bases(self, cls: griffe.Class) -> None:
        bases: list[Any] = []
        pending: list[Any] = list(cls.bases)
        seen: set[str] = set()
        copies: dict[str, Any] = {}
        while pending:
            base = pending.pop(0)
            left = base.left if isinstance(base, griffe.ExprSubscript) else base
            path = _path_of(left) or str(left)
            if path in GENERIC:
                continue  # a typing device, not a base a reader inherits anything from
            target = self._class(path) if _is_private(path) else None
            if target is None or path in seen:
                bases.append(base)
                continue
            seen.add(path)
            # A bare generic base (no subscript) binds nothing: its TypeVars stay as written.
            bindings = dict(zip(self._type_params(target), _arguments(base), strict=False))
            for name, member in target.members.items():
                if (name.startswith("_") and name != "__init__") or name in cls.members:
                    continue
                copies.setdefault(name, self._copy(member, cls, bindings))
            pending[:0] = [self._bind(b, bindings) for b in target.bases]
        cls.bases = bases
        if copies:
            # The base's members first, in its order, then the class's own (``close``): the
            # methods a caller came for lead. Rendered through an alias (``ncp_cfr.Client``),
            # members keep this order (``members_order: source`` has no line to go by).
            own = dict(cls.members)
            cls.members.clear()
            for name, copy in copies.items():
                cls.set_member(name, copy)
            cls.members.update(own)

    def _class(self, path: str) -> griffe.Class | None:
        target = _lookup(self.collection, path)
        return target if isinstance(target, griffe.Class) else None

    def _type_var(self, expr: Any) -> str | None:
        """The canonical path of ``expr`` if it names a TypeVar (or ParamSpec)."""
        if not isinstance(expr, griffe.ExprName):
            return None
        path = _path_of(expr)
        target = _lookup(self.collection, path) if path else None
        if not isinstance(target, griffe.Attribute) or not isinstance(
            target.value, griffe.ExprCall
        ):
            return None
        factory = _path_of(target.value.function) or ""
        return path if factory.rsplit(".", 1)[-1] in TYPE_VAR_FACTORIES else None

    def _type_params(self, cls: griffe.Class) -> list[str]:
        """The type variables of a generic class, in order: ``Generic[...]``'s, else as they
        first appear in its bases (Python's own rule)."""
        found: list[str] = []
        for base in cls.bases:
            if not isinstance(base, griffe.ExprSubscript):
                continue
            names = [self._type_var(arg) for arg in _arguments(base)]
            if _path_of(base.left) in GENERIC:
                return [n for n in names if n]
            found.extend(n for n in names if n and n not in found)
        return found

    def _bind(self, expr: Any, bindings: Bindings) -> Any:
        if not bindings:
            return expr

        def replace(node: Any) -> Any:
            path = self._type_var(node)
            return bindings.get(path) if path else None

        return _map(expr, replace)

    def _copy(self, member: Any, cls: griffe.Class, bindings: Bindings) -> Any:
        """``member`` of a private base as a member of ``cls``, with ``bindings`` applied."""
        if isinstance(member, griffe.Alias):
            return griffe.Alias(member.name, member, parent=cls)
        if isinstance(member, griffe.Function):
            params = list(member.parameters)
            if params and params[0].name == "self" and params[0].annotation is not None:
                # ``self: _Self`` ... ``-> _Self``: on the public class, that class.
                self_type = self._type_var(params[0].annotation)
                if self_type:
                    bindings = {**bindings, self_type: griffe.ExprName(cls.name, parent=cls.parent)}
            return _function(member, member.name, cls, bindings, self._bind)
        if isinstance(member, griffe.Attribute):
            copy = griffe.Attribute(
                member.name,
                lineno=cls.lineno,
                endlineno=cls.lineno,
                value=member.value,
                annotation=self._bind(member.annotation, bindings),
                parent=cls,
            )
            copy.labels = set(member.labels)
            text = member.docstring.value if member.docstring else _comment(member)
            if text:
                copy.docstring = _docstring(text, member.docstring, copy)
            return copy
        return griffe.Alias(member.name, member, parent=cls)

    def _wrapped_method(self, cls: griffe.Class, attr: griffe.Attribute) -> griffe.Function | None:
        """``name = wrapper(Base._method)`` as the method it makes, or None if it is not one."""
        call = attr.value
        if not isinstance(call, griffe.ExprCall) or len(call.arguments) != 1:
            return None
        wrapper = _lookup(self.collection, _path_of(call.function) or "")
        method = _lookup(self.collection, _path_of(call.arguments[0]) or "")
        if not isinstance(method, griffe.Function) or not method.path.startswith(PACKAGE + "."):
            return None
        if not isinstance(wrapper, (griffe.Function, griffe.Class)):
            return None
        made = _function(method, attr.name, cls, {}, self._bind, lineno=attr.lineno)
        self._apply_wrapper(made, wrapper, cls)
        return made

    def _apply_decorators(self, function: griffe.Function, cls: griffe.Class) -> None:
        """Give ``function`` the type its package decorators make of it on ``cls``."""
        for decorator in function.decorators:
            if not decorator.callable_path.startswith(PACKAGE + "."):
                continue
            wrapper = _lookup(self.collection, decorator.callable_path)
            if isinstance(wrapper, (griffe.Function, griffe.Class)):
                self._apply_wrapper(function, wrapper, cls)

    def _apply_wrapper(
        self, function: griffe.Function, wrapper: griffe.Function | griffe.Class, cls: griffe.Class
    ) -> None:
        """Set what ``wrapper`` makes ``function`` return when called on a ``cls``.

        Worked out from the wrapper's annotations: it takes a ``Callable[..., PATTERN]`` (a
        function's first parameter, a descriptor class's ``__init__``) and gives a
        ``Callable[..., RESULT]`` (a function's return, the descriptor's ``__get__`` overload for
        an instance of ``cls``). ``function``'s return type matched against PATTERN binds the
        type variables of RESULT; a coroutine RESULT makes the method async.
        """
        if isinstance(wrapper, griffe.Class):
            init, get = wrapper.members.get("__init__"), wrapper.members.get("__get__")
            if not isinstance(init, griffe.Function) or not isinstance(get, griffe.Function):
                return
            takes = [p for p in init.parameters if p.name != "self"][:1]
            gives = get.returns
            for overload in get.overloads or []:
                params = list(overload.parameters)
                if len(params) > 1 and _path_of(params[1].annotation) == cls.path:
                    gives = overload.returns
        else:
            takes, gives = list(wrapper.parameters)[:1], wrapper.returns
        pattern = _callable_result(takes[0].annotation) if takes else None
        result = _callable_result(gives)
        bindings: Bindings = {}
        if pattern is None or result is None:
            return
        if not self._unify(pattern, function.returns, bindings):
            return
        returns = self._bind(result, bindings)
        if isinstance(returns, griffe.ExprSubscript) and _path_of(returns.left) in AWAITABLE:
            returns = _arguments(returns)[-1]
            function.labels.add("async")
        function.returns = returns

    def _unify(self, pattern: Any, value: Any, bindings: Bindings) -> bool:
        """Whether ``value`` matches ``pattern``; binds the pattern's type variables."""
        path = self._type_var(pattern)
        if path is not None:
            if path in bindings:
                return str(bindings[path]) == str(value)
            bindings[path] = value
            return True
        if isinstance(pattern, griffe.ExprBinOp) and pattern.operator == "|":
            for side in (pattern.left, pattern.right):
                trial = dict(bindings)
                if self._unify(side, value, trial):
                    bindings.update(trial)
                    return True
            return False
        if isinstance(pattern, (griffe.ExprName, griffe.ExprAttribute)):
            return _path_of(pattern) == _path_of(value)
        if isinstance(pattern, griffe.Expr):
            if type(pattern) is not type(value) or not dataclasses.is_dataclass(pattern):
                return False
            for field in dataclasses.fields(pattern):
                if not field.init:
                    continue
                mine, theirs = getattr(pattern, field.name), getattr(value, field.name)
                if isinstance(mine, (list, tuple)):
                    if not isinstance(theirs, (list, tuple)) or len(mine) != len(theirs):
                        return False
                    pairs = zip(mine, theirs, strict=True)
                    if not all(self._unify(m, t, bindings) for m, t in pairs):
                        return False
                elif not self._unify(mine, theirs, bindings):
                    return False
            return True
        return str(pattern) == str(value)

    # -- values and names -------------------------------------------------------------------------

    def _value_of(self, default: Any) -> Any:
        for _ in range(5):  # a constant defined as another constant
            path = _path_of(default)
            if path is None or not path.startswith(PACKAGE + "."):
                return default
            target = _lookup(self.collection, path)
            if not isinstance(target, griffe.Attribute) or target.value is None:
                return default
            value = target.value
            if _is_literal(str(value)):
                return str(value)
            if isinstance(value, (griffe.ExprName, griffe.ExprAttribute)):
                default = value
                continue
            # A sentinel (``NOT_GIVEN = NotGiven()``): its name says more than its value.
            return default
        return default

    def _expand(self, expr: Any) -> Any:
        def replace(node: Any) -> Any:
            if not (isinstance(node, griffe.ExprName) and node.name.startswith("_")):
                return None
            if self._type_var(node):
                return node.name.lstrip("_")  # a private TypeVar (``_T``): its public spelling
            target = _lookup(self.collection, _path_of(node) or "")
            if isinstance(target, griffe.Attribute) and isinstance(target.value, griffe.Expr):
                return self._expand(target.value)  # a private type alias: what it stands for
            return None

        return _map(expr, replace)

    def _publish(self, expr: Any) -> Any:
        """``expr`` with every name of a private module replaced by its public path."""

        def replace(node: Any) -> Any:
            if not isinstance(node, (griffe.ExprName, griffe.ExprAttribute)):
                return None
            path = _path_of(node)
            if path is None or not path.startswith(PACKAGE + ".") or not _is_private(path):
                return None
            public = _public_path(self.public, path)
            if public is None:
                return str(node)  # nothing public to link to: the name as written, unlinked
            module, _, name = public.rpartition(".")
            return griffe.ExprName(name, parent=module)

        return _map(expr, replace)


# --- helpers -------------------------------------------------------------------------------------


def _documented(pkg: griffe.Module, fold: Callable[[griffe.Class], None]) -> Iterator[Any]:
    """Every object the public API reaches, once; each class is folded before its members."""
    seen: set[int] = set()
    pending: list[griffe.Object] = [pkg]
    while pending:
        obj = pending.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, griffe.Class):
            fold(obj)
        yield obj
        if not isinstance(obj, (griffe.Module, griffe.Class)):
            continue
        for name, member in list(obj.members.items()):
            if name.startswith("_") and name != "__init__":
                continue
            try:
                target = member.final_target if isinstance(member, griffe.Alias) else member
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue  # outside the package (``from typing import Any``)
            if isinstance(target, griffe.Module) and _is_private(target.path):
                continue
            if isinstance(target, griffe.Object):
                pending.append(target)


def _public_paths(pkg: griffe.Module) -> dict[str, str]:
    """Private path -> the shortest public path that exports the same object."""
    found: dict[str, str] = {}
    modules = [pkg]
    while modules:
        module = modules.pop(0)
        for name, member in module.members.items():
            if name.startswith("_"):
                continue
            try:
                target = member.final_target if isinstance(member, griffe.Alias) else member
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            if isinstance(target, griffe.Module):
                if not isinstance(member, griffe.Alias) and not _is_private(target.path):
                    modules.append(target)
                continue
            if not isinstance(target, griffe.Object) or not _is_private(target.path):
                continue
            public = f"{module.path}.{name}"
            known = found.get(target.path)
            if known is None or public.count(".") < known.count("."):
                found[target.path] = public
    return found


def _public_path(public: dict[str, str], path: str) -> str | None:
    """The public path of ``path``, or of its longest exported prefix (a class's member)."""
    head, rest = path, ""
    while head:
        if head in public:
            return public[head] + rest
        head, _, last = head.rpartition(".")
        rest = f".{last}{rest}"
    return None


def _arguments(expr: Any) -> list[Any]:
    if not isinstance(expr, griffe.ExprSubscript):
        return []
    if isinstance(expr.slice, griffe.ExprTuple):
        return list(expr.slice.elements)
    return [expr.slice]


def _callable_result(expr: Any) -> Any:
    """``R`` of ``Callable[..., R]``, else None."""
    if isinstance(expr, griffe.ExprSubscript) and _path_of(expr.left) in CALLABLE:
        args = _arguments(expr)
        if len(args) == 2:
            return args[1]
    return None


def _function(
    source: griffe.Function,
    name: str,
    cls: griffe.Class,
    bindings: Bindings,
    bind: Callable[[Any, Bindings], Any],
    lineno: int | None = None,
) -> griffe.Function:
    """A copy of ``source`` named ``name`` on ``cls``; ``source`` itself is left unchanged."""
    parameters = griffe.Parameters(
        *(
            griffe.Parameter(
                p.name,
                annotation=bind(p.annotation, bindings),
                kind=p.kind,
                default=p.default,
                docstring=p.docstring,
            )
            for p in source.parameters
        )
    )
    # A base's members go before the class's own (``members_order: source``).
    line = lineno if lineno is not None else cls.lineno
    copy = griffe.Function(
        name,
        lineno=line,
        endlineno=line,
        parameters=parameters,
        returns=bind(source.returns, bindings),
        decorators=list(source.decorators),
        parent=cls,
    )
    copy.labels = set(source.labels)
    if source.docstring is not None:
        copy.docstring = _docstring(source.docstring.value, source.docstring, copy)
    return copy


def _docstring(text: str, like: griffe.Docstring | None, parent: griffe.Object) -> griffe.Docstring:
    return griffe.Docstring(
        text,
        lineno=like.lineno if like else None,
        endlineno=like.endlineno if like else None,
        parent=parent,
        parser=like.parser if like else None,
        parser_options=like.parser_options if like else None,
    )


def _comment(attr: griffe.Attribute) -> str | None:
    """The ``#:`` comment lines right above ``attr``, if any."""
    if attr.lineno is None or not attr.filepath or isinstance(attr.filepath, list):
        return None
    lines = attr.filepath.read_text(encoding="utf-8").splitlines()
    comment: list[str] = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        comment.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    return "\n".join(comment) or None


def _is_literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return True
