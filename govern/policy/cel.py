"""Custom policy rules in CEL (the expression language of Kubernetes admission policies).

We use cel-python rather than an expression language of our own: CEL is non-Turing-complete, has no
side effects and is already familiar to platform teams. The evidence document is bound as ``evidence``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

# cel-python logs every evaluation at INFO through its own loggers; keep user output clean.
os.environ.setdefault("CEL_LOG_LEVEL", "WARNING")

import celpy  # noqa: E402
from celpy.celparser import CELParseError  # noqa: E402

from govern.policy.schema import Policy  # noqa: E402

_ENV = celpy.Environment()


class CelOutcome:
    """Result of one expression: ``value`` (bool) or ``missing`` (a referenced key is absent)
    or ``error`` (type error, non-boolean result...)."""

    def __init__(self, value: bool | None = None, missing: str | None = None, error: str | None = None) -> None:
        self.value = value
        self.missing = missing
        self.error = error


@lru_cache(maxsize=512)
def _program(expression: str) -> Any:
    return _ENV.program(_ENV.compile(expression))


def compile_rules(policy: Policy) -> Iterator[tuple[int, str, str]]:
    """Yield (index, rule id, message) for every custom rule whose expression does not compile."""
    for index, rule in enumerate(policy.rules):
        try:
            _program(rule.expression)
        except CELParseError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
            yield index, rule.id, f"CEL syntax error: {first}"
        except Exception as exc:  # noqa: BLE001 - cel-python raises several types at compile time
            yield index, rule.id, f"CEL error: {exc}"


def evaluate_expression(expression: str, document: dict[str, Any]) -> CelOutcome:
    program = _program(expression)
    try:
        result = program.evaluate({"evidence": celpy.json_to_cel(document)})
    except celpy.CELEvalError as exc:
        text = str(exc.args[0]) if exc.args else str(exc)
        if "no such member" in text or "no such key" in text:
            return CelOutcome(missing=text)
        return CelOutcome(error=text)
    except Exception as exc:  # noqa: BLE001 - report any evaluation failure as a rule error, never crash
        return CelOutcome(error=f"{type(exc).__name__}: {exc}")
    if isinstance(result, celpy.CELEvalError):
        text = str(result.args[0]) if result.args else str(result)
        if "no such member" in text or "no such key" in text:
            return CelOutcome(missing=text)
        return CelOutcome(error=text)
    if isinstance(result, (celpy.celtypes.BoolType, bool)):
        return CelOutcome(value=bool(result))
    return CelOutcome(error=f"expression must be boolean, got {type(result).__name__}")
