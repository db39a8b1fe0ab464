"""The ``reproducibility`` section and run manifest: what is needed to repeat a run."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from .config import PipelineConfig

# Distribution names of the libraries whose versions can change a result.
_DEPENDENCIES = {
    "numpy": "numpy",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "psutil": "psutil",
    "pyarrow": "pyarrow",
    "threadpoolctl": "threadpoolctl",
}


# Where a run writes, and on which machines it runs, are not part of how it runs: two runs of
# the same configuration into different folders, or on a cluster and here, must have
# byte-identical manifests.  (The scheduler address could also carry credentials; the report's
# scaling section names it without them.)
_NOT_IN_MANIFEST = ("output_dir", "scheduler")


def reproducibility_section(config: PipelineConfig) -> dict:
    """Seed, interpreter, platform, configuration and the imported libraries' versions.

    Deterministic for a given configuration on a given machine: no timestamps and no
    paths, so ``diff`` of two manifests is empty when the runs are repeatable.
    """
    settings = {
        key: value for key, value in config.to_dict().items() if key not in _NOT_IN_MANIFEST
    }
    return {
        "random_seed": config.random_seed,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "package_version": _version("nba-pipeline"),
        "config": settings,
        "dependencies": imported_versions(),
    }


def imported_versions() -> dict[str, str]:
    """Versions of the dependencies this process has actually imported, by module name."""
    return {
        module: _version(distribution)
        for module, distribution in _DEPENDENCIES.items()
        if module in sys.modules
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
