"""Custom policy rules in CEL (the expression language of Kubernetes admission policies).

We use cel-python rather than an expression language of our own: CEL is non-Turing-complete, has no
side effects and is already familiar to platform teams. The evidence document is bound as ``evidence``.

Non-Turing-complete is not the same as cheap: three nested ``all`` over 100-element lists are 10⁶
evaluations (minutes in cel-python, which has no cost model), and a ``reduce`` that doubles a list is
exponential. Kubernetes bounds CEL with a cost budget; we do the same here. :class:`_BudgetedEvaluator`
charges one unit per AST node evaluated plus the length of every list, map or string a node produces
(so building big values costs what it weighs), and stops the rule the moment the budget or the
wall-clock backstop is exceeded. The cost is deterministic — the same rule over the same evidence
costs the same on any machine — so a decision replayed years later by ``govern check`` does not flip
because the machine is slower; the timeout only catches what the cost model cannot see.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

# cel-python logs every evaluation at INFO through its own loggers; keep user output clean.
os.environ.setdefault("CEL_LOG_LEVEL", "WARNING")

import celpy  # noqa: E402
import lark  # noqa: E402
from celpy.adapter import json_to_cel  # noqa: E402
from celpy.celparser import CELParseError  # noqa: E402
from celpy.evaluation import Activation, CELEvalError, Evaluator  # noqa: E402

from govern.policy.schema import Policy, RuleLimits  # noqa: E402

_DEFAULT_LIMITS = RuleLimits()

#: How often (in cost units) the wall clock is read: often enough to stop within a few ms of the
#: deadline, rare enough that ``time.monotonic`` is not a measurable part of a rule's cost.
_CLOCK_EVERY = 256


class BudgetExceeded(Exception):  # noqa: N818 - reads as the event it reports
    """Raised inside the evaluator to abandon a rule. Deliberately not a ``CELEvalError``: CEL's
    ``exists``/``all`` swallow evaluation errors for short-circuiting and would carry on iterating."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Budget:
    __slots__ = ("deadline", "last", "max_cost", "spent", "timeout_s")

    def __init__(self, max_cost: int, timeout_s: float) -> None:
        self.max_cost = max_cost
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.spent = 0
        self.last: object = None  # the last value charged by size (pass-through nodes return it again)

    def charge(self, units: int) -> None:
        before = self.spent
        self.spent += units
        if self.spent > self.max_cost:
            raise BudgetExceeded(f"cost {self.spent:,} over the budget of {self.max_cost:,}")
        if before // _CLOCK_EVERY != self.spent // _CLOCK_EVERY and time.monotonic() > self.deadline:
            raise BudgetExceeded(f"ran past its {self.timeout_s:g} s timeout (cost so far {self.spent:,})")

    def charge_value(self, value: object) -> None:
        # The grammar's pass-through levels (expr → conditionalor → ... → primary) hand the same object
        # up; charge its size once, where it is produced.
        if value is self.last:
            self.charge(1)
            return
        if isinstance(value, (list, dict, str, bytes)):
            self.last = value
            self.charge(1 + len(value))
        else:
            self.charge(1)


class _BudgetedEvaluator(Evaluator):
    """cel-python's interpreter with every node visit charged to a shared :class:`_Budget`.

    ``visit`` is how macros evaluate their bodies; ``visit_children`` is how every other node reaches its
    operands. Nested macro evaluators share the parent's budget through ``sub_evaluator``.
    """

    def __init__(self, ast: lark.Tree[Any], activation: Activation, budget: _Budget) -> None:
        super().__init__(ast, activation)
        self.budget = budget

    def sub_evaluator(self, ast: lark.Tree[Any]) -> Evaluator:
        return _BudgetedEvaluator(ast, activation=self.activation, budget=self.budget)

    def visit(self, tree: lark.Tree[Any]) -> Any:
        value = super().visit(tree)
        self.budget.charge_value(value)
        return value

    def visit_children(self, tree: lark.Tree[Any]) -> list[Any]:
        values = super().visit_children(tree)
        for child, value in zip(tree.children, values, strict=True):
            if isinstance(child, lark.Tree):
                self.budget.charge_value(value)
        return values


class _BudgetedRunner(celpy.InterpretedRunner):
    def evaluate_within(self, context: dict[str, Any], budget: _Budget) -> Any:
        return _BudgetedEvaluator(self.ast, activation=self.new_activation(), budget=budget).evaluate(context)


_ENV = celpy.Environment(runner_class=_BudgetedRunner)


class CelOutcome:
    """Result of one expression: ``value`` (bool) or ``missing`` (a referenced key is absent)
    or ``error`` (type error, non-boolean result...) or ``exceeded`` (stopped by its budget)."""

    def __init__(self, value: bool | None = None, missing: str | None = None, error: str | None = None,
                 exceeded: str | None = None, cost: int = 0) -> None:
        self.value = value
        self.missing = missing
        self.error = error
        self.exceeded = exceeded
        self.cost = cost


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


def cel_document(document: dict[str, Any]) -> Any:
    """The evidence document as CEL values; convert once per evaluation, not once per rule."""
    return json_to_cel(document)


def evaluate_expression(expression: str, document: dict[str, Any] | None = None, *,
                        max_cost: int = _DEFAULT_LIMITS.max_cost, timeout_s: float = _DEFAULT_LIMITS.timeout_s,
                        cel_evidence: Any = None) -> CelOutcome:
    """Evaluate one rule within ``max_cost`` units and ``timeout_s`` seconds (see the module docstring)."""
    program = _program(expression)
    if cel_evidence is None:
        cel_evidence = cel_document(document or {})
    budget = _Budget(max_cost, timeout_s)
    try:
        result = program.evaluate_within({"evidence": cel_evidence}, budget)
    except BudgetExceeded as exc:
        return CelOutcome(exceeded=exc.reason, cost=budget.spent)
    except RecursionError:
        return CelOutcome(error="expression nests too deeply to evaluate", cost=budget.spent)
    except CELEvalError as exc:
        return _eval_error(exc, budget.spent)
    except Exception as exc:  # noqa: BLE001 - report any evaluation failure as a rule error, never crash
        return CelOutcome(error=f"{type(exc).__name__}: {exc}", cost=budget.spent)
    if isinstance(result, CELEvalError):
        return _eval_error(result, budget.spent)
    if isinstance(result, (celpy.celtypes.BoolType, bool)):
        return CelOutcome(value=bool(result), cost=budget.spent)
    return CelOutcome(error=f"expression must be boolean, got {type(result).__name__}", cost=budget.spent)


def _eval_error(exc: CELEvalError, cost: int) -> CelOutcome:
    text = str(exc.args[0]) if exc.args else str(exc)
    if "no such member" in text or "no such key" in text:
        return CelOutcome(missing=text, cost=cost)
    return CelOutcome(error=text, cost=cost)
