"""Worker processes for the concurrent-approval test (a module of its own so `spawn` children import little)."""

from __future__ import annotations

from typing import Any


def approve_once(url: str, ref: str, user: str, barrier: Any, results: Any) -> None:
    """Approve ``ref`` as ``user`` at the same moment as the other workers; report 'ok' or the refusal."""
    from govern.actor import Actor
    from govern.lineage import LineageStore
    from govern.registry import ApprovalRefused, approve

    store = LineageStore.open(url, actor=Actor(source="explicit", name=user))
    try:
        barrier.wait(timeout=120)
        try:
            approve(store, ref, reason=f"approved by {user}", policy="dev")
            results.put((user, "ok"))
        except ApprovalRefused as exc:
            results.put((user, f"refused: {exc}"))
        except Exception as exc:  # reported to the test, which shows it
            results.put((user, f"error: {type(exc).__name__}: {exc}"))
    finally:
        store.close()
