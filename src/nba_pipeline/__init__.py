"""Deterministic batch and streaming feature pipeline for the NBA2K player table.

The public API is small: a validated :class:`PipelineConfig` and a :class:`PipelineRunner`
whose methods run one part of the work and return the report section it produced.
"""

from .config import PipelineConfig
from .errors import ConfigError, InputDataError, OutputError, PipelineError

__all__ = [
    "ConfigError",
    "InputDataError",
    "OutputError",
    "PipelineConfig",
    "PipelineError",
    "PipelineRunner",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The runner pulls in scikit-learn and scipy; import it only when it is asked for, so
    # that the command line answers configuration errors quickly.
    if name == "PipelineRunner":
        from .runner import PipelineRunner

        return PipelineRunner
    raise AttributeError(f"module 'nba_pipeline' has no attribute {name!r}")
