"""The OpenAPI 3.1 document of the console's JSON API (``/api/v1``), built from the pydantic models the
endpoints return, so the document cannot drift from the responses: a field added to a record appears in
both. (Starlette's ``SchemaGenerator`` would take YAML from docstrings, a second description to keep true.)
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from govern.decisions import Decision
from govern.lineage.records import DecisionRecord, ModelVersionRecord, RunRecord
from govern.registry import ModelStatusAnswer, Requirement
from govern.report.data import ReportData

#: Fields of a run the runs listing leaves out (large documents; ``/api/v1/runs/{id}`` has them all).
RUN_LIST_EXCLUDE = frozenset({"config", "policy_document", "policy_source"})
#: Lifecycle actions the API takes (the console's forms take the same ones).
API_ACTIONS = ("approve", "promote", "revoke")


class ActionRequest(BaseModel):
    """The body of a lifecycle action: why (required, recorded with the action)."""

    reason: str = Field(min_length=1)


class ApiError(BaseModel):
    error: str


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "Bad input", 401: "No valid API token or session", 403: "The role may not do this",
             404: "Not found", 409: "Refused by the registry or the policy (the message says why)"}
    return {str(c): _json(_ref("ApiError"), words[c]) for c in codes}


_DAY = {"type": "string", "format": "date"}


def _query(name: str, description: str, schema: dict[str, Any] | None = None, required: bool = False
           ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def openapi_document(version: str) -> dict[str, Any]:
    """The document served at ``/api/v1/openapi.json``."""
    _, top = models_json_schema(
        [(m, "serialization") for m in (RunRecord, ReportData, DecisionRecord, ModelVersionRecord,
                                        ModelStatusAnswer, ApiError)] + [(ActionRequest, "validation")],
        ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    listed = dict(schemas["RunRecord"])
    listed["properties"] = {k: v for k, v in listed["properties"].items() if k not in RUN_LIST_EXCLUDE}
    listed["required"] = [k for k in listed.get("required", []) if k not in RUN_LIST_EXCLUDE]
    listed["title"] = "RunSummary"
    schemas["RunSummary"] = listed
    page = _query("page", "1-based page of 50", {"type": "integer", "minimum": 1})
    run_id = _path("run_id")
    return {
        "openapi": "3.1.0",
        "info": {"title": "govern console API", "version": version,
                 "description": "Runs, reports, decisions, the model registry and its deploy gate, from the "
                                "lineage DB. Authenticate with an API token (`govern users token create`)."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "paths": {
            "/api/v1/runs": {"get": {
                "operationId": "listRuns", "summary": "Runs, newest first",
                "parameters": [page, _query("status", "running, completed, blocked or failed"),
                               _query("kind", "run, scan, audit-fairness, …"),
                               _query("dataset", "only runs that recorded this data set (sha256:…)"),
                               _query("decision", "the policy's decision", {"type": "string",
                                                                             "enum": list(get_args(Decision))}),
                               _query("from", "runs started on or after this UTC day (YYYY-MM-DD)", _DAY),
                               _query("to", "runs started on or before this UTC day (YYYY-MM-DD)", _DAY)],
                "responses": {"200": _json({"type": "array", "items": _ref("RunSummary")}, "Runs"),
                              **_errors(400, 401)}}},
            "/api/v1/runs/{run_id}": {"get": {
                "operationId": "getRun", "summary": "One run's report (the JSON `govern report` writes)",
                "parameters": [run_id],
                "responses": {"200": _json(_ref("ReportData"), "The run's report"), **_errors(401, 404)}}},
            "/api/v1/runs/{run_id}/decisions": {"get": {
                "operationId": "listDecisions", "summary": "A run's policy decisions, oldest first",
                "parameters": [run_id],
                "responses": {"200": _json({"type": "array", "items": _ref("DecisionRecord")}, "Decisions"),
                              **_errors(401, 404)}}},
            "/api/v1/models": {"get": {
                "operationId": "listModelVersions", "summary": "Every registered model version",
                "responses": {"200": _json({"type": "array", "items": _ref("ModelVersionRecord")}, "Versions"),
                              **_errors(401)}}},
            "/api/v1/model-status": {"get": {
                "operationId": "modelStatus", "summary": "The deploy gate: the answer `govern model status` gives",
                "parameters": [_query("digest", "sha256:<64 hex> of the model tree", required=True),
                               _query("require", "what the caller needs",
                                      {"type": "string", "enum": list(get_args(Requirement))})],
                "responses": {"200": _json(_ref("ModelStatusAnswer"), "Status, and whether it meets `require`"),
                              **_errors(400, 401)}}},
            "/api/v1/models/{name}/v{number}/{action}": {"post": {
                "operationId": "actOnModelVersion", "summary": "Approve, promote or revoke a version (API "
                                                               "token with the approver or admin role)",
                "security": [{"bearerAuth": []}],
                "parameters": [_path("name"), _path("number", {"type": "integer", "minimum": 1}),
                               _path("action", {"type": "string", "enum": list(API_ACTIONS)})],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("ActionRequest")}}},
                "responses": {"200": _json(_ref("ModelVersionRecord"), "The version after the action"),
                              **_errors(400, 401, 403, 404, 409)}}},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "gvt_… API token"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "govern_session",
                                  "description": "A logged-in console session (read-only endpoints)"},
            },
        },
    }
