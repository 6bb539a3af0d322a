"""Who did it: the identity every audit event records (who ran, checked, waived, signed, verified).

A CI job's identity comes from the variables the CI system itself sets (it is as trustworthy as the CI
system); elsewhere the OS user and host; ``--actor`` / ``GOVERN_ACTOR`` names someone explicitly (a
compliance officer acting for a team). It is recorded, not authenticated: the hash chain makes it tamper-
evident afterwards, a witness (``govern lineage verify --witness``) makes it provable.
"""

from __future__ import annotations

import getpass
import os
import socket

from pydantic import BaseModel, ConfigDict

#: CI systems: (variable that says we run there, source name, user variable, context variables).
_CI_SYSTEMS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("GITHUB_ACTIONS", "github", "GITHUB_ACTOR",
     ("GITHUB_WORKFLOW_REF", "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_SHA")),
    ("GITLAB_CI", "gitlab", "GITLAB_USER_LOGIN", ("CI_PROJECT_PATH", "CI_PIPELINE_ID", "CI_JOB_ID", "CI_COMMIT_SHA")),
    ("BUILDKITE", "buildkite", "BUILDKITE_BUILD_CREATOR", ("BUILDKITE_PIPELINE_SLUG", "BUILDKITE_BUILD_NUMBER")),
    ("CIRCLECI", "circleci", "CIRCLE_USERNAME", ("CIRCLE_PROJECT_REPONAME", "CIRCLE_BUILD_NUM", "CIRCLE_SHA1")),
    ("JENKINS_URL", "jenkins", "BUILD_USER_ID", ("JOB_NAME", "BUILD_NUMBER", "GIT_COMMIT")),
)


class Actor(BaseModel):
    """An identity as recorded on an audit event."""

    model_config = ConfigDict(frozen=True)

    source: str
    """``explicit`` (--actor), ``github``, ``gitlab``, ``buildkite``, ``circleci``, ``jenkins`` or ``os``."""
    name: str
    context: dict[str, str] = {}

    def display(self) -> str:
        if self.source == "explicit":
            return self.name
        extra = self.context.get("GITHUB_WORKFLOW_REF") or self.context.get("CI_PROJECT_PATH") or \
            self.context.get("host") or next(iter(self.context.values()), "")
        return f"{self.name} ({self.source}{': ' + extra if extra else ''})"


def current_actor(explicit: str | None = None) -> Actor:
    """The identity of whoever runs this process (explicit name > CI identity > OS user@host)."""
    name = (explicit or os.environ.get("GOVERN_ACTOR", "")).strip()
    if name:
        return Actor(source="explicit", name=name)
    for marker, source, user_var, context_vars in _CI_SYSTEMS:
        if os.environ.get(marker):
            context = {v: os.environ[v] for v in context_vars if os.environ.get(v)}
            return Actor(source=source, name=os.environ.get(user_var) or f"{source}-job", context=context)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers running as an arbitrary uid)
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return Actor(source="os", name=user, context={"host": socket.gethostname()})
