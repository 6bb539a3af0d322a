"""govern: a policy engine around every fine-tune.

``govern.session(config)`` governs the user's own training loop (see :mod:`govern.sessions`); it is
imported on first use so that ``import govern`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from govern.sessions import session

__all__ = ["session"]


def __getattr__(name: str) -> Any:
    if name == "session":
        from govern.sessions import session

        return session
    raise AttributeError(f"module 'govern' has no attribute {name!r}")
