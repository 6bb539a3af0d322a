"""The report tests' recorded run (a DB whose run folder and data files are deleted) serves the documents too."""

from tests.report.conftest import recorded  # noqa: F401  (a fixture, re-exported)
