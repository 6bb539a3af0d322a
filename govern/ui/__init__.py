"""``govern ui``: the compliance console — runs, models and their approvals, the audit log — over the lineage
DB, with the registry's actions as forms. Needs the ``ui`` extra (starlette, uvicorn, argon2-cffi); see
:mod:`govern.ui.app` for what it promises about security."""
