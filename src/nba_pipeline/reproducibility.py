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


def reproducibility_section(config: PipelineConfig) -> dict:
    """Seed, interpreter, platform, full configuration and the imported libraries' versions."""
    return {
        "random_seed": config.random_seed,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "package_version": _version("nba-pipeline"),
        "config": config.to_dict(),
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
