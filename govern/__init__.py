"""govern: a policy engine around every fine-tune.

``govern.session(config)`` governs the user's own training loop (see :mod:`govern.sessions`);
``govern.script_main(main, __file__)`` is such a script's entry point (govern's exit codes). Both are
imported on first use so that ``import govern`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from govern.sessions import session
    from govern.training.script import script_main

__all__ = ["script_main", "session"]


def __getattr__(name: str) -> Any:
    if name == "session":
        from govern.sessions import session

        return session
    if name == "script_main":
        from govern.training.script import script_main

        return script_main
    raise AttributeError(f"module 'govern' has no attribute {name!r}")
