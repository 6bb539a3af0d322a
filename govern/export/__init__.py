"""Exports of a run's evidence to the formats other tools read (an AI bill of materials first).

Like the reports and documents, every export is built from the lineage DB alone (through
:class:`~govern.report.data.ReportData`), and the libraries it needs are imported only here, so the rest of
govern works without them.
"""
