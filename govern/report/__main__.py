"""``python -m govern.report`` regenerates ``govern/report/report.schema.json`` from ReportData."""

from govern.report import SCHEMA_PATH, _dump_schema

_dump_schema()
print(f"wrote {SCHEMA_PATH}")
