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


# --------------------------------------------------------------------------- bad input


class QuarantineLimitError(InputDataError):
    """More of the input than ``max_quarantine_ratio`` allows cannot be used: the file is
    probably not the expected table."""


class InputChangedError(PipelineError):
    """The input file changed while the run was reading it, so the results would mix two
    versions of the data."""

    exit_code = 6


class RowAccountingError(PipelineError):
    """Rows read differ from rows processed plus rows quarantined: a row was lost or
    counted twice, and no result of the run can be trusted."""

    exit_code = 7


class ResumeError(PipelineError):
    """``--resume`` cannot continue: nothing was journalled in the output directory, or the
    journal belongs to another input or configuration (the message names what differs)."""

    exit_code = 8
