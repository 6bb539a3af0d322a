"""`govern ui` warns on stderr before it serves a non-loopback address: the console has no TLS of its own,
so its session cookies and passwords would cross the network in clear unless a reverse proxy terminates TLS.
Loopback (IPv4, IPv6, ``localhost``) is quiet. The real CLI runs each time; an accounts file with no users
stops it right after the check (exit 2), so no test ever binds a non-loopback address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail


@pytest.mark.parametrize(("host", "warns"), [
    ("0.0.0.0", True), ("192.168.1.20", True), ("::", True), ("console.example.org", True),
    ("127.0.0.1", False), ("127.0.0.2", False), ("::1", False), ("localhost", False),
])
def test_a_non_loopback_bind_warns_and_loopback_does_not(govern_cli: Any, tmp_path: Path, host: str,
                                                         warns: bool) -> None:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        skip_or_fail("needs the ui extra (uvicorn)")
    no_users = tmp_path / "accounts.json"
    code, out, err = govern_cli("ui", "--host", host, "--port", "1", "--accounts", str(no_users),
                                "--db", f"sqlite:///{tmp_path / 'l.db'}")
    text = " ".join(err.split())  # the console wraps long lines
    assert code == 2 and "no console users yet" in text, (code, out, err)  # stopped before serving
    if warns:
        assert f"warning: binding {host} serves the console without TLS" in text
        assert "reverse proxy that terminates TLS, or bind 127.0.0.1" in text
    else:
        assert "warning" not in text.lower()
