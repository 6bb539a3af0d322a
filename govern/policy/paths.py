"""Check the evidence paths a CEL rule names against the evidence JSON Schema.

CEL resolves ``evidence.training.epsilom`` only at evaluation time, and a missing key is "not evaluable
yet" after a stage and an ``error`` at the final decision: a typo in a rule parses, lints and then
blocks every run, after hours of training. The evidence models forbid unknown fields, so their JSON
Schema is a complete list of what a rule can address; ``lint_policy`` walks every rule's syntax tree
and reports each path that leaves it, naming the fields that do exist.

Only what the schema can decide is reported: a map with free keys (``training.epsilon.<accountant>``),
a value of any type, or an expression the walker cannot type (``map`` results, arithmetic) ends the
check for that path instead of guessing.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

import lark

#: CEL macros that bind a variable to each element of the list they are called on.
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})

#: Where a rule author finds the evidence fields.
EVIDENCE_SCHEMA_COMMAND = "govern policy schema --evidence"


@lru_cache(maxsize=1)
def evidence_json_schema() -> dict[str, Any]:
    """JSON Schema of the evidence document CEL rules see as ``evidence`` (``govern policy schema --evidence``)."""
    from govern.evidence import Evidence

    schema = Evidence.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "govern evidence document (bound to `evidence` in CEL rules)"
    return schema


class _Shape:
    """A JSON Schema node reached by a path (``evidence.training``), with ``$ref`` and nullability resolved."""

    def __init__(self, schema: dict[str, Any], path: str, defs: dict[str, Any]) -> None:
        self.path = path
        self.defs = defs
        self.schema = self._resolve(schema)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.defs[schema["$ref"].rsplit("/", 1)[-1]]
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            concrete = [self._resolve(o) for o in options if o.get("type") != "null"]
            if len(concrete) == 1:
                return concrete[0]
            return {}  # a union the walker does not narrow: any value
        return schema

    def _child(self, schema: dict[str, Any], path: str) -> _Shape:
        return _Shape(schema, path, self.defs)

    def field(self, name: str) -> tuple[_Shape | None, str | None]:
        """(shape of ``.name``, None) or (None, problem)."""
        s = self.schema
        kind = s.get("type")
        if kind == "object" or "properties" in s or "additionalProperties" in s:
            props: dict[str, Any] = s.get("properties", {})
            if name in props:
                return self._child(props[name], f"{self.path}.{name}"), None
            extra = s.get("additionalProperties", not props)
            if isinstance(extra, dict):
                return (self._child(extra, f"{self.path}.{name}") if extra else None), None
            if extra:
                return None, None
            close = difflib.get_close_matches(name, list(props), n=1)
            names = list(props)
            hint = (f"did you mean '{close[0]}'?" if close else
                    f"fields of {self.path}: {', '.join(names[:12])}{', …' if len(names) > 12 else ''}")
            return None, (f"{self.path}.{name}: the evidence has no field '{name}' ({hint}; "
                          f"see `{EVIDENCE_SCHEMA_COMMAND}`)")
        if kind in ("string", "number", "integer", "boolean", "array"):
            noun = {"array": "a list", "integer": "a number"}.get(kind, f"a {kind}")
            return None, (f"{self.path}.{name}: {self.path} is {noun}, it has no field '{name}' "
                          f"(see `{EVIDENCE_SCHEMA_COMMAND}`)")
        return None, None

    def items(self) -> _Shape | None:
        if self.schema.get("type") == "array" and isinstance(self.schema.get("items"), dict):
            return self._child(self.schema["items"], f"{self.path}[]")
        return None


class _Walker:
    def __init__(self, root: _Shape) -> None:
        self.root = root
        self.problems: list[str] = []

    def report(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def visit(self, node: Any, scope: dict[str, _Shape | None]) -> None:
        if not isinstance(node, lark.Tree):
            return
        if node.data in ("member_dot", "member_index", "member_dot_arg", "primary"):
            self.shape(node, scope)
            return
        for child in node.children:
            self.visit(child, scope)

    def shape(self, node: Any, scope: dict[str, _Shape | None]) -> _Shape | None:
        """The schema shape ``node`` evaluates to, if the walker can tell; reports unknown fields on the way."""
        if not isinstance(node, lark.Tree):
            return None
        if node.data == "member" and len(node.children) == 1:
            return self.shape(node.children[0], scope)
        if node.data == "primary":
            child = node.children[0]
            if isinstance(child, lark.Tree) and child.data == "ident":
                name = str(child.children[0])
                if name == "evidence":
                    return self.root
                return scope.get(name)
            self.visit(child, scope)
            return None
        if node.data == "member_dot":
            base = self.shape(node.children[0], scope)
            if base is None:
                return None
            found, problem = base.field(str(node.children[1]))
            if problem:
                self.report(problem)
            return found
        if node.data == "member_index":
            base = self.shape(node.children[0], scope)
            index = node.children[1]
            self.visit(index, scope)
            if base is None:
                return None
            key = _string_literal(index)
            if key is not None:
                found, problem = base.field(key)
                if problem:
                    self.report(problem)
                return found
            return base.items()
        if node.data == "member_dot_arg":
            base = self.shape(node.children[0], scope)
            method = str(node.children[1])
            args = node.children[2].children if len(node.children) > 2 and isinstance(node.children[2], lark.Tree) \
                else []
            var = _bare_ident(args[0]) if args else None
            if method in _MACROS and var is not None:
                inner = {**scope, var: base.items() if base is not None else None}
                for arg in args[1:]:
                    self.visit(arg, inner)
            else:
                for arg in args:
                    self.visit(arg, scope)
            return None
        for child in node.children:
            self.visit(child, scope)
        return None


def _descend(node: Any) -> Any:
    """The single node under a chain of one-child wrappers (expr → conditionalor → … → member)."""
    while isinstance(node, lark.Tree) and len(node.children) == 1 and isinstance(node.children[0], lark.Tree):
        node = node.children[0]
    return node


def _bare_ident(node: Any) -> str | None:
    inner = _descend(node)
    if isinstance(inner, lark.Tree) and inner.data == "ident":
        return str(inner.children[0])
    return None


def _string_literal(node: Any) -> str | None:
    inner = _descend(node)
    if isinstance(inner, lark.Tree) and inner.data == "literal":
        token = str(inner.children[0])
        if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
            return token[1:-1]
    return None


def unknown_evidence_paths(expression: str) -> list[str]:
    """Every ``evidence.…`` path in a CEL expression that the evidence schema does not have (one line each).

    An expression that does not parse returns nothing here: the compiler reports it."""
    import celpy

    try:
        tree = celpy.Environment().compile(expression)
    except Exception:  # noqa: BLE001 - syntax errors are the compiler's to report
        return []
    schema = evidence_json_schema()
    walker = _Walker(_Shape(schema, "evidence", schema.get("$defs", {})))
    walker.visit(tree, {})
    return walker.problems
