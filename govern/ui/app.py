"""The console's web app (Starlette + Jinja2, server-rendered; every asset served by govern, no CDN).

It reads and writes only through :class:`LineageStore` and :mod:`govern.registry`, like the CLI. Security:
- a strict Content-Security-Policy (no inline script, no external origin) and autoescaped templates, so a
  record-derived string (a data-set file name, a run name) renders as text;
- signed session cookies (HttpOnly, SameSite=Strict) with an idle timeout; a CSRF token per session on every
  form; login throttling per user name;
- a user without the role an action needs gets 403, and the denial is written to the audit log;
- ``read_only`` serves the pages without accounts and offers no actions.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any, get_args

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from govern.actor import Actor
from govern.decisions import Decision
from govern.errors import GovernError, NotFoundError
from govern.lineage import LineageStore
from govern.ui.accounts import Account, AccountFile, check_password, check_token, load_accounts

log = logging.getLogger("govern.ui")
HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SESSION_COOKIE = "govern_session"
IDLE_TIMEOUT_S = 30 * 60
#: Failed logins per user name before a lock-out, and how long it lasts.
MAX_FAILURES, LOCKOUT_S = 5, 60.0
PAGE_SIZE = 50
ACTING_ROLES = frozenset({"approver", "admin"})


@dataclass
class Session:
    """Who is asking: a logged-in console user, or (``token``) a CI job presenting an API token."""

    user: str
    role: str
    csrf: str
    token: bool = False


@dataclass
class ConsoleState:
    db_url: str | None
    read_only: bool
    accounts: AccountFile
    accounts_path: Path | None = None
    #: The accounts file's mtime when read: a user removed or a token revoked takes effect on the next request.
    accounts_mtime: int = 0
    idle_timeout_s: float = IDLE_TIMEOUT_S
    lockout_s: float = LOCKOUT_S
    failures: dict[str, tuple[int, float]] = field(default_factory=dict)

    def refresh(self) -> None:
        if self.accounts_path is None:
            return
        try:
            mtime = self.accounts_path.stat().st_mtime_ns
        except OSError:
            mtime = -1
        if mtime != self.accounts_mtime:
            self.accounts = load_accounts(self.accounts_path)
            self.accounts_mtime = mtime


def _sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _session_cookie(state: ConsoleState, user: str, csrf: str) -> str:
    body = base64.urlsafe_b64encode(json.dumps({"u": user, "c": csrf, "t": time.time()}).encode())
    return body.decode() + "." + _sign(state.accounts.session_secret, body)


def _session(state: ConsoleState, request: Request) -> Session | None:
    raw = request.cookies.get(SESSION_COOKIE, "")
    body, _, mac = raw.rpartition(".")
    if not body or not hmac.compare_digest(_sign(state.accounts.session_secret, body.encode()), mac):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
    except ValueError:
        return None
    account = state.accounts.accounts.get(str(data.get("u")))
    if account is None or time.time() - float(data.get("t", 0)) > state.idle_timeout_s:
        return None
    return Session(user=account.name, role=account.role, csrf=str(data.get("c")))


def _token_session(state: ConsoleState, authorization: str) -> Session | None:
    """The API token in an ``Authorization: Bearer`` header, as a session bound to the token's role."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    record = check_token(state.accounts, token.strip())
    return None if record is None else Session(user=record.name, role=record.role, csrf="", token=True)


def create_app(db_url: str | None = None, *, read_only: bool = False, accounts_path: Path | None = None,
               idle_timeout_s: float = IDLE_TIMEOUT_S, lockout_s: float = LOCKOUT_S) -> Starlette:
    """The console over the lineage DB at ``db_url`` (accounts from ``accounts_path`` unless read-only)."""
    from govern.ui.accounts import default_accounts_path

    path = None if read_only else (accounts_path or default_accounts_path())
    state = ConsoleState(db_url=db_url, read_only=read_only, accounts=AccountFile(), accounts_path=path,
                         idle_timeout_s=idle_timeout_s, lockout_s=lockout_s)
    state.refresh()
    if not read_only and not state.accounts.accounts:
        raise GovernError("no console users yet: add one with `govern users add NAME --role admin` "
                          "(or serve pages only with --read-only)")
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))

    def page(request: Request, template: str, session: Session | None, status: int = 200, **context: Any) -> Response:
        can_act = not read_only and session is not None and session.role in ACTING_ROLES
        html = env.get_template(template).render(session=session, read_only=read_only, request=request,
                                                 can_act=can_act, today=datetime.now(UTC).date(), **context)
        return _secured(HTMLResponse(html, status_code=status), request, state, session)

    reader: list[LineageStore] = []

    @contextmanager
    def store(session: Session | None, *, write: bool = False) -> Iterator[LineageStore]:
        """Pages share one read-only store (opening one checks the schema: too slow per request); every action
        opens its own, recording the logged-in user as the actor of its audit events."""
        if not write:
            if not reader:
                reader.append(LineageStore.open(db_url, read_only=True))
            yield reader[0]
            return
        with LineageStore.open(db_url, actor=_actor(session) if session else None) as s:
            yield s

    def guarded(handler: Callable[[Request, Session | None], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            api = request.url.path.startswith("/api/")
            session: Session | None = None
            if not read_only:
                state.refresh()
                authorization = request.headers.get("authorization")
                # API tokens only on the API: a page or form never runs on a credential a script can replay.
                session = (_token_session(state, authorization) if api and authorization is not None
                           else _session(state, request))
                if session is None and api:
                    log.warning("console: API request %s without a valid token or session", request.url.path)
                    return _secured(JSONResponse({"error": "authentication required: an API token "
                                                  "(Authorization: Bearer) or a console session"},
                                                 status_code=401, headers={"WWW-Authenticate": "Bearer"}),
                                    request, state, None)
                if session is None:
                    return RedirectResponse("/login", status_code=303)
            try:
                return await handler(request, session)
            except GovernError as exc:
                code = 404 if isinstance(exc, NotFoundError) else 400 if exc.exit_code == 2 else 409
                if request.url.path.startswith("/api/"):
                    return _secured(JSONResponse({"error": str(exc)}, status_code=code), request, state, session)
                return page(request, "error.html", session, status=code, message=str(exc))
        return endpoint

    async def login(request: Request) -> Response:
        if read_only:
            return RedirectResponse("/runs", status_code=303)
        if request.method == "GET":
            return page(request, "login.html", None)
        form = await request.form()
        state.refresh()  # a user added since the server started can log in
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        count, since = state.failures.get(name, (0, 0.0))
        if count >= MAX_FAILURES and time.time() - since < state.lockout_s:
            log.warning("console login locked out for user %r", name)
            return page(request, "login.html", None, status=429, message="too many failed logins; wait a minute")
        account = check_password(state.accounts, name, password)
        if account is None:
            state.failures[name] = (count + 1, time.time())
            return page(request, "login.html", None, status=401, message="wrong user name or password")
        state.failures.pop(name, None)
        import secrets

        response = RedirectResponse("/runs", status_code=303)
        _set_cookie(response, _session_cookie(state, account.name, secrets.token_urlsafe(24)), state)
        return response

    async def logout(request: Request) -> Response:
        session = None if read_only else _session(state, request)
        if session is not None:  # a cross-site form must not log anyone out either
            form = await request.form()
            if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
                return Response("missing or invalid CSRF token", status_code=403)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def runs(request: Request, session: Session | None) -> Response:
        filters = _run_filters(request)
        number = _page_number(request)
        with store(session) as s:
            rows = s.list_runs(limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE, **filters.store_args())
            total = s.count_runs(**filters.store_args())
        return page(request, "runs.html", session, runs=rows, total=total, number=number, f=filters,
                    decisions=DECISIONS, pages=max(1, -(-total // PAGE_SIZE)))

    async def run(request: Request, session: Session | None) -> Response:
        """The run's report content, from the report's own view model (one implementation)."""
        from govern.report import build_report_data
        from govern.signing.commands import with_lineage_check

        with store(session) as s:
            data = build_report_data(s, request.path_params["run_id"])
            url = s.url
        return page(request, "run.html", session, r=data, formats=_report_formats(),
                    lineage_check=lambda command: with_lineage_check(command, url, data.run.id))

    async def report(request: Request, session: Session | None) -> Response:
        """A download of the run's report, rendered by ``govern report``'s renderer from the same view model."""
        from govern.report import build_report_data, render

        fmt = request.path_params["fmt"]
        if fmt not in _report_formats():
            raise NotFoundError(f"no report format '{fmt}' here (available: {', '.join(_report_formats())})")
        with store(session) as s:
            data = build_report_data(s, request.path_params["run_id"])
        response = Response(render(data, fmt), media_type=REPORT_MEDIA_TYPES[fmt], headers={
            "Content-Disposition": f'attachment; filename="{data.run.id}.{fmt}"'})
        _secured(response, request, state, session)
        if fmt == "html":  # the report carries its own stylesheet inline; it still runs no script
            from govern.report.html import CSP as REPORT_CSP

            response.headers["Content-Security-Policy"] = REPORT_CSP
        return response

    async def models(request: Request, session: Session | None) -> Response:
        with store(session) as s:
            versions = s.model_versions()
        return page(request, "models.html", session, versions=versions)

    async def version(request: Request, session: Session | None) -> Response:
        from govern.registry import check_signature, resolve

        ref = f"{request.path_params['name']}@v{request.path_params['number']}"
        with store(session) as s:
            found = resolve(s, ref)
            signature = check_signature(s, found)  # live: the files on disk now, not what was recorded
        return page(request, "version.html", session, version=found, signature=signature)

    def action(what: str, handler: Callable[[Request, Session, str, Any], Awaitable[Response]]
               ) -> Callable[[Request, Session | None], Awaitable[Response]]:
        """A form POST that changes the record: a live session (never in read-only mode), the session's own
        CSRF token, an acting role (a refusal is an audit event) and a non-empty reason, checked in that
        order before ``handler`` runs with a store that records the user as the actor."""
        async def endpoint(request: Request, session: Session | None) -> Response:
            if read_only or session is None:
                return Response("the console is read-only", status_code=403)
            form = await request.form()
            if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
                log.warning("console: %s POST %s without a valid CSRF token", session.user, request.url.path)
                return Response("missing or invalid CSRF token", status_code=403)
            if session.role not in ACTING_ROLES:
                _record_denial(db_url, session, what, request.url.path)
                return Response(f"role '{session.role}' may not {what}", status_code=403)
            reason = str(form.get("reason", "")).strip()
            if not reason:
                raise GovernError("a reason is required: every action records why")
            return await handler(request, session, reason, form)
        return endpoint

    def version_ref(request: Request) -> str:
        return f"{request.path_params['name']}@v{request.path_params['number']}"

    async def act(request: Request, session: Session, reason: str, form: Any) -> Response:
        from govern import registry

        ref, verb = version_ref(request), request.path_params["action"]
        with store(session, write=True) as s:
            if verb == "approve":
                registry.approve(s, ref, reason=reason, role=session.role)
            elif verb == "promote":
                registry.promote(s, ref, reason=reason, role=session.role)
            elif verb == "revoke":
                registry.revoke(s, ref, reason=reason, role=session.role)
            else:
                return Response("unknown action", status_code=404)
        return RedirectResponse(f"/models/{request.path_params['name']}/v{request.path_params['number']}",
                                status_code=303)

    async def rollback(request: Request, session: Session, reason: str, form: Any) -> Response:
        from govern import registry

        with store(session, write=True) as s:
            restored, _ = registry.rollback(s, request.path_params["name"], reason=reason,
                                            revoke_current=form.get("revoke") == "yes", role=session.role)
        return RedirectResponse(f"/models/{restored.model}/v{restored.version}", status_code=303)

    async def record_waiver(request: Request, session: Session, reason: str, form: Any) -> Response:
        from datetime import date

        from govern.api import waive

        text = str(form.get("until", ""))
        try:
            until = date.fromisoformat(text)
        except ValueError:
            raise GovernError(f"until '{text}' is not a date (YYYY-MM-DD)") from None
        waive(str(form.get("target", "")).strip(), str(form.get("rule_id", "")).strip(), by=session.user,
              reason=reason, until=until, db_url=db_url, actor=_actor(session))
        return RedirectResponse("/waivers", status_code=303)

    async def end_waiver(request: Request, session: Session, reason: str, form: Any) -> Response:
        from govern.api import end_waiver as end

        end(request.path_params["waiver_id"], by=session.user, reason=reason, db_url=db_url, actor=_actor(session))
        return RedirectResponse("/waivers", status_code=303)

    async def revoke_dataset(request: Request, session: Session, reason: str, form: Any) -> Response:
        from govern import registry

        fingerprint = request.path_params["fingerprint"]
        with store(session, write=True) as s:
            affected = registry.revoke_dataset(s, fingerprint, reason=reason, role=session.role)
        return page(request, "revoked.html", session, fingerprint=fingerprint, versions=affected, reason=reason)

    async def datasets(request: Request, session: Session | None) -> Response:
        number = _page_number(request)
        with store(session) as s:
            rows = s.datasets(limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
            total = s.count_datasets()
        return page(request, "datasets.html", session, datasets=rows, total=total, number=number,
                    pages=max(1, -(-total // PAGE_SIZE)))

    async def dataset(request: Request, session: Session | None) -> Response:
        from govern.ui.views import dataset_view

        with store(session) as s:
            view = dataset_view(s, request.path_params["fingerprint"], limit=PAGE_SIZE)
        return page(request, "dataset.html", session, view=view)

    async def waivers(request: Request, session: Session | None) -> Response:
        from govern.ui.views import waivers_view

        with store(session) as s:
            view = waivers_view(s)
        return page(request, "waivers.html", session, view=view)

    async def audit(request: Request, session: Session | None) -> Response:
        number = _page_number(request)
        with store(session) as s:
            _, _, count = s.chain_head()
            events = s.recent_events(limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
            chain = s.verify_chain(check_evidence=False)
        return page(request, "audit.html", session, events=events, chain=chain, number=number,
                    pages=max(1, -(-count // PAGE_SIZE)))

    async def api_model_status(request: Request, session: Session | None) -> Response:
        """The deploy gate over HTTP: the same :class:`ModelStatusAnswer` as `govern model status`."""
        from govern.registry import SATISFIES, model_status

        require = request.query_params.get("require") or None
        if require is not None and require not in SATISFIES:
            raise GovernError(f"require must be one of {', '.join(SATISFIES)}, not '{require}'")
        with store(session) as s:
            answer = model_status(s, digest=request.query_params.get("digest", ""), require=require)  # type: ignore[arg-type]  # checked above
        return _secured(JSONResponse(answer.model_dump(mode="json")), request, state, session)

    def api_json(request: Request, session: Session | None, body: Any, status: int = 200) -> Response:
        return _secured(JSONResponse(body, status_code=status), request, state, session)

    async def api_models(request: Request, session: Session | None) -> Response:
        with store(session) as s:
            versions = s.model_versions()
        return api_json(request, session, [v.model_dump(mode="json") for v in versions])

    async def api_runs(request: Request, session: Session | None) -> Response:
        from govern.ui.openapi import RUN_LIST_EXCLUDE

        number = _page_number(request)
        with store(session) as s:
            rows = s.list_runs(limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE, **_run_filters(request).store_args())
        return api_json(request, session, [r.model_dump(mode="json", exclude=set(RUN_LIST_EXCLUDE)) for r in rows])

    async def api_run(request: Request, session: Session | None) -> Response:
        from govern.report import build_report_data

        with store(session) as s:
            data = build_report_data(s, request.path_params["run_id"])
        return api_json(request, session, data.model_dump(mode="json"))

    async def api_decisions(request: Request, session: Session | None) -> Response:
        with store(session) as s:
            decisions = s.decisions(s.resolve_run_id(request.path_params["run_id"]))
        return api_json(request, session, [d.model_dump(mode="json") for d in decisions])

    async def api_act(request: Request, session: Session | None) -> Response:
        """A lifecycle action for CI. Only with an API token: a browser's cookie would let any site that can
        make it send a request act (the forms carry CSRF tokens instead)."""
        from govern import registry
        from govern.ui.openapi import API_ACTIONS, ActionRequest

        verb = request.path_params["action"]
        if verb not in API_ACTIONS:
            raise NotFoundError(f"no action '{verb}' (one of {', '.join(API_ACTIONS)})")
        if read_only or session is None or not session.token:
            return api_json(request, session, {"error": "actions over the API need an API token "
                                                        "(Authorization: Bearer)"}, 403)
        if session.role not in ACTING_ROLES:
            _record_denial(db_url, session, verb, request.url.path)
            return api_json(request, session, {"error": f"role '{session.role}' may not {verb} models"}, 403)
        try:
            body = ActionRequest.model_validate_json(await request.body())
        except ValueError:
            raise GovernError('the body must be JSON {"reason": "why"} with a non-empty reason') from None
        ref = version_ref(request)
        with store(session, write=True) as s:
            if verb == "approve":
                registry.approve(s, ref, reason=body.reason, role=session.role)
            elif verb == "promote":
                registry.promote(s, ref, reason=body.reason, role=session.role)
            else:
                registry.revoke(s, ref, reason=body.reason, role=session.role)
            after = registry.resolve(s, ref)
        return api_json(request, session, after.model_dump(mode="json"))

    async def api_openapi(request: Request) -> Response:
        from govern.ui.openapi import openapi_document
        from govern.versions import govern_version

        return _secured(JSONResponse(openapi_document(govern_version())), request, state, None)

    async def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=303)

    return Starlette(routes=[
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/runs", guarded(runs)),
        Route("/runs/{run_id}", guarded(run)),
        Route("/runs/{run_id}/report.{fmt}", guarded(report)),
        Route("/models", guarded(models)),
        Route("/models/{name}/v{number:int}", guarded(version)),
        Route("/models/{name}/v{number:int}/{action}", guarded(action("act on models", act)), methods=["POST"]),
        Route("/models/{name}/rollback", guarded(action("roll back models", rollback)), methods=["POST"]),
        Route("/datasets", guarded(datasets)),
        Route("/datasets/{fingerprint}", guarded(dataset)),
        Route("/datasets/{fingerprint}/revoke", guarded(action("revoke data sets", revoke_dataset)), methods=["POST"]),
        Route("/waivers", guarded(waivers)),
        Route("/waivers/new", guarded(action("record waivers", record_waiver)), methods=["POST"]),
        Route("/waivers/{waiver_id:int}/end", guarded(action("end waivers", end_waiver)), methods=["POST"]),
        Route("/audit", guarded(audit)),
        Route("/api/v1/openapi.json", api_openapi),
        Route("/api/v1/runs", guarded(api_runs)),
        Route("/api/v1/runs/{run_id}", guarded(api_run)),
        Route("/api/v1/runs/{run_id}/decisions", guarded(api_decisions)),
        Route("/api/v1/models/{name}/v{number:int}/{action}", guarded(api_act), methods=["POST"]),
        Route("/api/v1/models", guarded(api_models)),
        Route("/api/v1/model-status", guarded(api_model_status)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ])


REPORT_MEDIA_TYPES = {"html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8",
                      "json": "application/json", "pdf": "application/pdf"}


@functools.cache
def _report_formats() -> tuple[str, ...]:
    """The report formats this server can render: PDF only where WeasyPrint and the Pango libraries it loads
    are installed (looked up, not imported: importing WeasyPrint takes seconds, and a page only needs to know
    whether to offer the link; a PDF that still cannot render is a clear error on download)."""
    import ctypes.util
    import importlib.util

    if importlib.util.find_spec("weasyprint") is None or not all(
            ctypes.util.find_library(lib) for lib in ("pango-1.0", "pangoft2-1.0")):
        return ("html", "md", "json")
    return ("html", "pdf", "md", "json")


#: The decisions a run can record (the Runs page's choices; anything else is bad input, not an empty page).
DECISIONS: tuple[str, ...] = get_args(Decision)


@dataclass(frozen=True)
class RunFilters:
    """The Runs page's (and ``/api/v1/runs``') filters as the query string gave them, checked: the page echoes
    them into its form and pager, the store gets them as a half-open time range."""

    status: str = ""
    kind: str = ""
    dataset: str = ""
    decision: str = ""
    start: date | None = None  # ``from``: runs started on or after this UTC day
    end: date | None = None  # ``to``: runs started on or before this UTC day (inclusive, as a person reads it)

    def store_args(self) -> dict[str, Any]:
        return {"status": self.status or None, "kind": self.kind or None, "dataset": self.dataset or None,
                "decision": self.decision or None,
                "since": None if self.start is None else datetime.combine(self.start, dt_time(), UTC),
                "before": None if self.end is None else datetime.combine(self.end + timedelta(days=1), dt_time(), UTC)}

    def query(self) -> str:
        """The filters as a query string suffix (``&status=…``) for the pager's links."""
        from urllib.parse import urlencode

        return "&" + urlencode({"status": self.status, "kind": self.kind, "dataset": self.dataset,
                                "decision": self.decision, "from": self.start or "", "to": self.end or ""})


def _run_filters(request: Request) -> RunFilters:
    params = request.query_params

    def day(name: str) -> date | None:
        text = params.get(name, "").strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise GovernError(f"{name} must be a day as YYYY-MM-DD, not '{text}'") from None

    decision = params.get("decision", "").strip()
    if decision and decision not in DECISIONS:
        raise GovernError(f"decision must be one of {', '.join(DECISIONS)}, not '{decision}'")
    start, end = day("from"), day("to")
    if start is not None and end is not None and start > end:
        raise GovernError(f"from ({start}) is after to ({end}): no run can match")
    return RunFilters(status=params.get("status", "").strip(), kind=params.get("kind", "").strip(),
                      dataset=params.get("dataset", "").strip(), decision=decision, start=start, end=end)


def _page_number(request: Request) -> int:
    """The ``page`` query parameter (1-based); anything that is not a positive number is bad input."""
    text = request.query_params.get("page", "1") or "1"
    if not text.isdigit() or int(text) < 1:
        raise GovernError(f"page must be a positive number, not '{text}'")
    return int(text)


def _set_cookie(response: Response, value: str, state: ConsoleState) -> None:
    response.set_cookie(SESSION_COOKIE, value, httponly=True, samesite="strict", max_age=int(state.idle_timeout_s),
                        path="/")


def _secured(response: Response, request: Request, state: ConsoleState, session: Session | None) -> Response:
    """Security headers on every page; a live session's cookie is renewed (the idle timeout restarts)."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if session is not None and not session.token:
        _set_cookie(response, _session_cookie(state, session.user, session.csrf), state)
    return response


def _actor(session: Session) -> Actor:
    """Whom the audit events of a console action name: the logged-in user, or the API token by its name."""
    return Actor(source="api-token" if session.token else "console", name=session.user)


def _record_denial(db_url: str | None, session: Session, action: str, path: str) -> None:
    """A refused request is itself a fact for the audit log (who tried what, on what)."""
    log.warning("console: %s (role %s) was refused '%s' on %s", session.user, session.role, action, path)
    with LineageStore.open(db_url, actor=_actor(session)) as s:
        s.append_event("ui.denied", payload={"action": action, "path": path, "role": session.role})


__all__ = ["Account", "create_app"]
