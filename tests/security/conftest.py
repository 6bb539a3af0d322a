"""Attack tests: what someone with write access to the lineage DB, the run folder or the policy file can
and cannot do undetected. The fixtures of the lineage tests (both backends) are shared here."""

from tests.lineage.conftest import db_url, empty_db_url, migrated_pg_template, store  # noqa: F401
from tests.pg import postgres_url  # noqa: F401
