"""The installed versions govern records with a run: one list, one lookup.

The run record (reproducibility), the training evidence and the SLSA provenance's resolved dependencies
all say which libraries made the model; they used to each keep a list of their own, and three lists drift.
"""

from __future__ import annotations

import platform
from importlib import metadata

#: Every package whose version decides what a governed run produces (and govern itself).
RECORDED_PACKAGES = ("govern", "torch", "transformers", "peft", "opacus", "accelerate", "safetensors",
                     "presidio-analyzer", "presidio-anonymizer", "fairlearn", "scikit-learn", "dp-accounting",
                     "numpy", "model-signing", "sigstore", "sqlmodel")


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or ``None`` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def govern_version() -> str:
    return package_version("govern") or "unknown"


def package_versions() -> dict[str, str]:
    """Versions of :data:`RECORDED_PACKAGES` that are installed, and of Python."""
    versions = {name: v for name in RECORDED_PACKAGES if (v := package_version(name)) is not None}
    versions["python"] = platform.python_version()
    return versions
