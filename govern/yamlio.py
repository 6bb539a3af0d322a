"""YAML loading that keeps line numbers, so validation errors can point at ``file:line``.

PyYAML's safe loader drops positions; we compose the node tree once to map a pydantic error location
(``("training", "dp", "target_epsilon")``) back to the line a user must edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from govern.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def duplicate_keys(root: yaml.Node | None) -> list[str]:
    """``line N, a.x: duplicate key 'x' (first at line M)`` for every mapping key given twice, at any depth.

    YAML loaders keep the last value silently; in a policy that can turn ``max_epsilon: 1`` into the
    ``max_epsilon: 8`` written further down. Keys are compared as loaded values (``1`` and ``"1"``
    differ, as they do in the loaded data); ``<<`` merge keys are YAML's own way to override and are
    not duplicates.
    """
    if root is None:
        return []
    constructor = yaml.SafeLoader("")
    problems: list[str] = []
    seen_nodes: set[int] = set()

    def key_of(node: yaml.Node) -> Any:
        try:
            key = constructor.construct_object(node, deep=True)
            hash(key)
            return key
        except Exception:  # noqa: BLE001 - an unhashable or odd key: compare its source text instead
            return (node.tag, getattr(node, "value", None) if isinstance(node, yaml.ScalarNode) else id(node))

    def walk(node: yaml.Node, path: list[str]) -> None:
        if id(node) in seen_nodes:  # aliases (and recursive anchors) are visited once
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = key_of(key_node)
                line = key_node.start_mark.line + 1
                label = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else str(key)
                if key in first:
                    where = ".".join([*path, label])
                    problems.append(f"line {line}, {where}: duplicate key '{label}' (first at line {first[key]}; "
                                    "YAML would silently keep only the last one)")
                else:
                    first[key] = line
                walk(value_node, [*path, label])
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, [*path, str(index)])

    walk(root, [])
    return problems


def read_yaml(path: Path, error_type: type[ConfigError] = ConfigError) -> tuple[Any, yaml.Node | None]:
    """Parse ``path``; return the plain data and the composed node tree (for line lookups).

    Duplicate mapping keys are an error here, for every file read through this function (run configs
    and policies), so no caller can forget the check."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_type(path, ["file not found"]) from None
    except UnicodeDecodeError as exc:
        raise error_type(path, [f"not UTF-8 text (byte {exc.start})"]) from None
    except OSError as exc:
        raise error_type(path, [f"cannot read: {exc.strerror}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error_type(path, [f"{where}YAML syntax error: {problem}"]) from None
    duplicates = duplicate_keys(node)
    if duplicates:
        raise error_type(path, duplicates)
    return data, node


def line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the deepest node that exists along ``loc``."""
    line: int | None = node.start_mark.line + 1 if node is not None else None
    current = node
    for key in loc:
        if isinstance(current, yaml.MappingNode):
            nxt = None
            for k, v in current.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                return line
            current = nxt
        elif isinstance(current, yaml.SequenceNode) and isinstance(key, int) and key < len(current.value):
            current = current.value[key]
            line = current.start_mark.line + 1
        else:
            return line
    return line


def validation_problems(exc: ValidationError, node: yaml.Node | None,
                        schema_command: str = "govern config schema") -> list[str]:
    """Turn a pydantic error into lines like ``line 12, training.dp.target_epsilon: must be > 0``.

    ``schema_command`` is the command that prints the schema of this kind of file: an unknown field in
    a policy must point to ``govern policy schema``, not to the run config's schema."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = ".".join(str(p) for p in loc) or "(top level)"
        line = line_of(node, loc)
        where = f"line {line}, " if line is not None else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown field (check the spelling; see `{schema_command}`)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        problems.append(f"{where}{path}: {msg}")
    return problems


def load_model(
    path: Path, model: type[M], error_type: type[ConfigError] = ConfigError, context: dict[str, Any] | None = None
) -> M:
    """Read a YAML file into a pydantic model with file/line/field error messages."""
    data, node = read_yaml(path, error_type)
    if data is None:
        raise error_type(path, ["file is empty"])
    if not isinstance(data, dict):
        raise error_type(path, ["expected a mapping at the top level"])
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error_type(path, validation_problems(exc, node)) from None
