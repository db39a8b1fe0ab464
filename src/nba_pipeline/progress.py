"""Progress of long stages, reported to an optional callback.

Library code never draws anything: it calls ``progress(stage, done, total)`` and the
command line decides whether that becomes a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None] | None


def progress_counter(progress: Progress, stage: str, total: int) -> Callable[[], None]:
    """A function that advances ``stage`` by one step each time it is called."""
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(stage, done, total)

    return advance
