"""Deterministic batch and streaming feature pipeline for the NBA2K player table.

The public API is small: a validated :class:`PipelineConfig` and a :class:`PipelineRunner`
whose methods run one part of the work and return the report section it produced.
"""

from .config import PipelineConfig
from .errors import ConfigError, InputDataError, OutputError, PipelineError
from .runner import PipelineRunner

__all__ = [
    "ConfigError",
    "InputDataError",
    "OutputError",
    "PipelineConfig",
    "PipelineError",
    "PipelineRunner",
]
__version__ = "0.1.0"
