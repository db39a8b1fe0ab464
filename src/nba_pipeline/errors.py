"""Exceptions the pipeline raises for problems a user can fix, with their exit codes.

The command line turns each of these into one message and the exit code below, without a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of the errors a user can act on."""

    exit_code = 1


class ConfigError(PipelineError):
    """A configuration value, template or command-line flag is invalid."""

    exit_code = 2


class InputDataError(PipelineError):
    """The input file is missing, unreadable or does not have the expected layout."""

    exit_code = 3


class OutputError(PipelineError):
    """The output directory cannot be created or written."""

    exit_code = 4


class ResourceError(PipelineError):
    """A measured run could not complete within its limits (for example a memory budget
    below the worker's baseline)."""

    exit_code = 5
