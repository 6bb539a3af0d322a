"""The data stage's domain: reading record files, validating them, fingerprints, train/eval leakage.

Usable on its own (``read_records``, ``load_dataset``, ``check_leakage``) as well as through
:class:`govern.data.stage.DataStage` in a governed run.
"""

from govern.data.io import detect_format, iter_records, read_records, write_records

__all__ = ["detect_format", "iter_records", "read_records", "write_records"]
