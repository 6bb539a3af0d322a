"""Sessions and logins: a session ends after the idle timeout (enforced by the server, not only by the
cookie's lifetime) and each request renews it; repeated wrong passwords lock the user name out for a while,
even with the right password, without locking anyone else out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.ui.conftest import History


def test_a_session_ends_after_the_idle_timeout_and_each_request_renews_it(console_client: Callable[..., Any],
                                                                          history: History) -> None:
    from starlette.testclient import TestClient

    client = console_client(history.db, "vera", idle_timeout_s=2.0)
    issued = client.cookies["govern_session"]
    for step in range(3):  # 3 s in all, never 2 s idle: still logged in
        time.sleep(1.0)
        assert client.get("/runs", follow_redirects=False).status_code == 200, step
    time.sleep(2.2)
    assert client.get("/runs", follow_redirects=False).headers.get("location") == "/login"
    # The server itself refuses an old cookie (a client may keep it past its Max-Age).
    replay = TestClient(client.app, cookies={"govern_session": issued})
    answer = replay.get("/runs", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_repeated_wrong_passwords_lock_out_that_user_name_for_a_while(console_client: Callable[..., Any],
                                                                      history: History) -> None:
    client = console_client(history.db, lockout_s=1.0)
    for _ in range(5):
        assert client.post("/login", data={"username": "bob", "password": "guess"}).status_code == 401
    locked = client.post("/login", data={"username": "bob", "password": "correct horse battery"})
    assert locked.status_code == 429 and "too many failed logins" in locked.text
    other = client.post("/login", data={"username": "vera", "password": "viewer password 1"}, follow_redirects=False)
    assert other.status_code == 303  # another user name is not locked out
    time.sleep(1.1)
    again = client.post("/login", data={"username": "bob", "password": "correct horse battery"}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/runs"
