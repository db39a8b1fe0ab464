"""Live input: the streaming mode on rows read from standard input as they arrive.

``nba-pipeline run --input -`` reads a feed that may never end, so there is one pass, not
two.  The shared state (imputation values, scaler moments, vocabularies, selected features:
:class:`~nba_pipeline.fit_state.FitAccumulator`) is fitted on a warm-up window and then
frozen:

* Warm-up rule: the first ``live_warmup_rows`` records of the feed are held back and the
  state is fitted on their training rows, exactly as pass 1 of the streaming mode fits it on
  the whole file.  A window without a training row grows by ``chunk_size`` records until it
  holds one; a feed that ends (or is interrupted) earlier is fitted on what it sent.  The
  state never changes afterwards.  The warm-up rows are then transformed with the frozen
  state and fed to the model like every later row, so no row is lost.
* Chunks: a chunk is emitted when it holds the chunk size in force, or when
  ``live_max_wait_s`` has passed since its first row was in hand (never before the state
  was frozen), whichever comes first.  A feed that sends nothing emits nothing.  Standard
  input is read with ``select`` and a timeout, in bytes; lines are split here and a partial
  line is kept until its newline arrives, so a slow feed never blocks a partial chunk.
  Each chunk record says how it was emitted (``emitted``: ``full``, ``timeout``,
  ``end of input`` or ``interrupt``) and how long its first row waited (``wait_s``).
* The end: end of input, or the first Ctrl-C (SIGINT), stops reading; the lines already
  read are still processed (a last line without its newline is a record, as in a file),
  and the run finishes normally.  A second Ctrl-C aborts at once (exit code 130).

Every byte read is also written to a spool file in the output directory, so that after the
feed ends the rows received are an ordinary file: the batch mode, the benchmark, the
constraint sweep and the quality section then run on exactly the rows the live run saw
(see :meth:`~nba_pipeline.runner.PipelineRunner.run_live`).

The live run happens in the process that owns standard input, not in a measured worker:
the CPU cap is applied by the loop's own duty-cycle pauses and the memory budget is watched
on this process's RSS, which includes the runner's imports.  Time spent waiting for input
is left out of the section's latency and throughput (it is reported on its own).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections import deque
from pathlib import Path

from .cleaning import clean
from .config import PipelineConfig
from .errors import ConfigError, InputDataError
from .ingestion import (
    UTF8,
    ChunkReader,
    InputSource,
    RawChunk,
    _inside_quotes,
    parse_chunk,
    require_columns,
)
from .models import load_models
from .splitting import is_training_row
from .streaming import StreamingResult, run_streaming
from .validation import REQUIRED_COLUMNS

logger = logging.getLogger(__name__)

STDIN = "-"
STDIN_NAME = "<stdin>"
SPOOL_PATH = Path("input") / "received.csv"
POLL_S = 0.05
READ_BYTES = 1 << 16
TIMEOUT = "timeout"
FULL = "full"
INTERRUPT = "interrupt"
END_OF_INPUT = "end of input"


def is_stdin(data) -> bool:
    """Whether ``data`` (a path or a string from ``--input``) names standard input."""
    return isinstance(data, (str, Path)) and str(data) == STDIN


class StdinFeed:
    """Lines of a file descriptor as they arrive, each byte also written to ``spool``.

    :meth:`next_line` waits at most until a deadline, so a caller holding a partial chunk is
    never blocked for longer than it chose.  Once the input ends or :attr:`interrupted` is
    set, no more bytes are read, but every line already read is still handed out.
    """

    def __init__(self, fd: int, spool) -> None:
        self.fd = fd
        self.spool = spool
        self.interrupted = False
        self.ended_by: str | None = None
        self.bytes_received = 0
        self.idle_s = 0.0
        self._partial = bytearray()
        self._lines: deque[bytes] = deque()

    def next_line(self, deadline: float | None):
        """A line (ending in newline, but for a last one without it), ``None`` at the end,
        or :data:`TIMEOUT` when ``deadline`` (``time.monotonic``) passes first."""
        while True:
            if self._lines:
                return self._lines.popleft()
            if self.ended_by is not None:
                if self._partial:
                    last = bytes(self._partial)
                    self._partial.clear()
                    return last
                return None
            if self.interrupted:
                self.ended_by = INTERRUPT
                continue
            if self._wait(deadline):
                self._read()
            elif deadline is not None and time.monotonic() >= deadline:
                return TIMEOUT

    def _wait(self, deadline: float | None) -> bool:
        """Whether the descriptor became readable within one poll (cut short by deadline)."""
        timeout = POLL_S
        if deadline is not None:
            timeout = max(0.0, min(POLL_S, deadline - time.monotonic()))
        started = time.monotonic()
        readable, _, _ = select.select([self.fd], [], [], timeout)
        self.idle_s += time.monotonic() - started
        return bool(readable)

    def _read(self) -> None:
        block = os.read(self.fd, READ_BYTES)
        if not block:
            self.ended_by = END_OF_INPUT
            return
        self.spool.write(block)
        self.spool.flush()
        self.bytes_received += len(block)
        self._partial += block
        complete = self._partial.rfind(b"\n") + 1
        if complete:
            lines = bytes(self._partial[:complete]).split(b"\n")[:-1]
            self._lines.extend(line + b"\n" for line in lines)
            del self._partial[:complete]


class LiveReader:
    """The feed as records, in chunks: what :func:`~nba_pipeline.streaming.run_streaming`
    reads in its transform pass instead of a file (``take``, ``put_back``, ``header``).

    Records are assembled and numbered exactly as :class:`~nba_pipeline.ingestion.ChunkReader`
    does for a file (the header is line 1, blank lines are skipped but counted, a quoted
    field may span lines), so line numbers in the stream are line numbers in the spool.
    """

    def __init__(self, feed: StdinFeed, max_wait_s: float) -> None:
        self.feed = feed
        self.max_wait_s = max_wait_s
        self.emissions: list[dict] = []
        self.frozen_at: float | None = None
        self.idle_s = 0.0
        self.warm_up_rows = 0
        self._returned: deque[tuple[bytes, int, float]] = deque()
        self._record: tuple[bytes, int] | None = None  # a record waiting for its next line
        self._line = 2
        self._capture: bytearray | None = None

        header = feed.next_line(None) or b""
        self.raw_header = header
        header_only = InputSource(name=STDIN_NAME, data=header)
        require_columns(header_only, REQUIRED_COLUMNS)
        with ChunkReader(header_only) as probe:
            self.header, self.columns = probe.header, probe.columns

    def read_warm_up(self, config: PipelineConfig) -> InputSource:
        """Hold back the warm-up window and return it, header first, as an in-memory table."""
        self._capture = bytearray(self.raw_header)
        window = config.live_warmup_rows
        while True:
            while len(self._returned) < window:
                got = self._next_record(None)
                if got is None:
                    break
                self._returned.append((*got, time.monotonic()))
            if self.feed.ended_by is not None or self._training_rows(config):
                break
            window += config.chunk_size
            logger.info("warm-up window holds no training row yet; growing it to %d", window)
        data, self._capture = bytes(self._capture), None
        rows = len(self._returned)
        if not rows:
            raise InputDataError(
                f"input {STDIN_NAME} ended ({self.feed.ended_by}) after the header, before any "
                "data row: there is nothing to train on"
            )
        if not self._training_rows(config):
            raise InputDataError(
                f"input {STDIN_NAME} ended ({self.feed.ended_by}) after {rows} row(s) without a "
                "usable training row (the split on player names held them all out, or they were "
                "quarantined); the state cannot be fitted: send more players"
            )
        self.warm_up_rows = rows
        logger.info("live: state fitted on a warm-up window of %d rows, then frozen", rows)
        return InputSource(name=f"{STDIN_NAME} (warm-up window, {rows} rows)", data=data)

    def take(self, rows: int) -> RawChunk:
        """Up to ``rows`` records: as soon as there are ``rows``, or when the first of them
        has waited ``max_wait_s``, or when the feed ends; empty only at the end."""
        if self.frozen_at is None:
            self.frozen_at = time.monotonic()
        records, lines = [], []
        clock, emitted = None, FULL
        idle_before = self.feed.idle_s
        while len(records) < rows:
            if self._returned:
                record, line, available = self._returned.popleft()
            else:
                deadline = None if clock is None else clock + self.max_wait_s
                got = self._next_record(deadline)
                if got is TIMEOUT or got is None:
                    emitted = TIMEOUT if got is TIMEOUT else self.feed.ended_by
                    break
                (record, line), available = got, time.monotonic()
            records.append(record)
            lines.append(line)
            if clock is None:
                clock = max(available, self.frozen_at)
        self.idle_s += self.feed.idle_s - idle_before
        if records:
            self.emissions.append({"emitted": emitted, "wait_s": time.monotonic() - clock})
        return RawChunk(records, lines)

    def put_back(self, chunk: RawChunk) -> None:
        """Return records unprocessed; they are emitted again without waiting."""
        returned = zip(chunk.records, chunk.line_numbers, [0.0] * len(chunk), strict=True)
        self._returned.extendleft(reversed(list(returned)))

    def close(self) -> None:
        """Nothing to release: the feed and its spool belong to :func:`run_live`."""

    def __enter__(self) -> LiveReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _next_record(self, deadline: float | None):
        """``(record, line)``, ``None`` at the end, or :data:`TIMEOUT` (a record cut short by
        the deadline is kept and completed by the next call)."""
        while True:
            if self._record is None:
                line = self.feed.next_line(deadline)
                if line is None or line is TIMEOUT:
                    return line
                self._consume(line)
                self._record = (line, self._line - 1)
            record, start = self._record
            while record.count(b'"') % 2 == 1 and _inside_quotes(record):
                more = self.feed.next_line(deadline)
                if more is TIMEOUT:
                    self._record = (record, start)
                    return TIMEOUT
                if more is None:
                    break  # an unclosed quote at the end: the record is quarantined
                self._consume(more)
                record += more
            self._record = None
            if record.strip():
                return (record if record.endswith(b"\n") else record + b"\n"), start

    def _consume(self, line: bytes) -> None:
        self._line += 1
        if self._capture is not None:
            self._capture += line

    def _training_rows(self, config: PipelineConfig) -> int:
        """Training rows among the held-back records (parsed and cleaned to find out)."""
        chunk = RawChunk(
            [item[0] for item in self._returned], [item[1] for item in self._returned]
        )
        if not len(chunk):
            return 0
        parsed = parse_chunk(self.header, chunk, self.columns)
        cleaned = clean(parsed.table, parsed.line_numbers, parsed.records)
        names = cleaned.columns["full_name"]
        return int(is_training_row(names, config.random_seed, config.test_fraction).sum())


def run_live(
    config: PipelineConfig, spool_path: Path, spill_dir: Path | None = None, fd: int = 0
) -> StreamingResult:
    """Stream the rows of ``fd`` (standard input) until it ends or SIGINT, in this process.

    Every byte read is written to ``spool_path``; the returned result is the streaming
    mode's, with each chunk record saying how it was emitted and a ``live`` subsection.
    """
    if config.encoding != UTF8:
        raise ConfigError(
            f"live input (--input -) is read as UTF-8, got encoding {config.encoding!r}; "
            "convert the feed (for example with iconv) or write it to a file first"
        )
    spool_path.parent.mkdir(parents=True, exist_ok=True)
    load_models()  # before the first row is read: the feed is answered as it arrives
    started = time.perf_counter()
    with spool_path.open("wb") as spool:
        feed = StdinFeed(fd, spool)
        with _first_sigint_ends(feed):
            reader = LiveReader(feed, config.live_max_wait_s)
            warm_up = reader.read_warm_up(config)
            warm_up_s = time.perf_counter() - started
            result = run_streaming(warm_up, config, spill_dir=spill_dir, reader=reader)
    if feed.ended_by == INTERRUPT:
        logger.warning("live: interrupted (SIGINT); every row read so far was processed")

    for record, emission in zip(result.chunk_records, reader.emissions, strict=True):
        record.update(emission)
    _leave_out_waiting(result.section, reader.idle_s)
    result.section["live"] = _live_section(config, feed, reader, warm_up_s, spool_path)
    logger.info(
        "live: %s after %d bytes; %d chunks (%s)",
        feed.ended_by,
        feed.bytes_received,
        len(reader.emissions),
        result.section["live"]["chunks_emitted"],
    )
    return result


def _leave_out_waiting(section: dict, idle_s: float) -> None:
    """Latency and throughput of the work, not of the wait for rows to arrive."""
    section["latency_s"] -= idle_s
    section["transform_pass_s"] -= idle_s
    latency = section["latency_s"]
    section["throughput_rows_s"] = section["rows"] / latency if latency > 0 else None


def _live_section(config, feed, reader, warm_up_s, spool_path) -> dict:
    emitted = [emission["emitted"] for emission in reader.emissions]
    return {
        "source": STDIN_NAME,
        "spool": str(spool_path),
        "bytes_received": feed.bytes_received,
        "ended_by": feed.ended_by,
        "warm_up_rows": reader.warm_up_rows,
        "warm_up_rows_configured": config.live_warmup_rows,
        "warm_up_read_s": warm_up_s,
        "warm_up_rule": "state fitted on the training rows of the first live_warmup_rows "
        "records (grown by chunk_size until it holds a training row), then frozen; the "
        "warm-up rows are transformed with it like every later row",
        "max_wait_s": config.live_max_wait_s,
        "chunks_emitted": {kind: emitted.count(kind) for kind in dict.fromkeys(emitted)},
        "waiting_for_input_s": reader.idle_s,
        "process": "the process that owns standard input (not a measured worker): CPU cap by "
        "duty-cycle pauses in the loop, memory budget on this process's RSS",
    }


@contextlib.contextmanager
def _first_sigint_ends(feed: StdinFeed):
    """The first SIGINT ends the feed (the run then finishes); the second aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end_feed(_signum, _frame) -> None:
        if feed.interrupted:
            raise KeyboardInterrupt
        feed.interrupted = True

    previous = signal.signal(signal.SIGINT, end_feed)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
