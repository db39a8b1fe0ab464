"""The one validated place where a run's configuration lives.

A configuration comes from built-in defaults, then a JSON template (or a named profile), then
the keyword arguments or command-line flags the user actually gave; each layer overrides the
one before it.  Every value is checked when the object is built, so a bad value stops the run
before any work with a message naming the key, the accepted range and the value received.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

PROFILE_NAMES = ("edge", "server")
CPU_CAP_MECHANISMS = ("auto", "cgroup", "signals")
ENGINES = ("local", "dask")


@dataclass(frozen=True)
class PipelineConfig:
    """Validated settings of one pipeline run.

    The first eleven fields are the keys of the edge and server templates; the rest tune the
    feature logic and the constraint sweep and have defaults that suit the NBA2K table.
    """

    random_seed: int = 42
    chunk_size: int = 64
    batch_size: int = 96
    n_jobs: int = 1
    max_memory_mb: float = 256.0
    max_compute_units: float = 1.0
    benchmark_runs: int = 3
    adaptive_chunk_resize: bool = True
    max_chunk_retries: int = 3
    spill_to_disk: bool = False
    output_dir: str = "artifacts"

    test_fraction: float = 0.2
    correlation_threshold: float = 0.5
    rolling_window: int = 5
    min_chunk_size: int = 16
    sweep_chunk_sizes: tuple[int, ...] = (32, 64, 256)
    sweep_memory_limits_mb: tuple[float, ...] = (128.0, 256.0, 1024.0)
    sweep_compute_limits: tuple[float, ...] = (0.25, 0.5, 1.0)
    data_size_fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    isolate_runs: bool = True
    telemetry: bool = True
    # How a measured worker's CPU cap is enforced: "auto" takes a kernel control group when
    # one can be created and duty-cycles the worker with signals otherwise; "cgroup" and
    # "signals" insist on one of the two.
    cpu_cap_mechanism: str = "auto"
    # The hard memory limit behind the soft budget, as a multiple of max_memory_mb, set as a
    # control group limit where the machine allows it; None leaves it out.
    memory_hard_limit_factor: float | None = 1.5
    # Bad input: how the file is decoded, and the share of rows that may be quarantined
    # before the run stops because the input is probably the wrong file.
    encoding: str = "utf-8"
    max_quarantine_ratio: float = 0.05
    # Where benchmark repetitions and sweep settings run: a Dask scheduler address such as
    # tcp://10.0.0.5:8786, or None for this machine (see "Running on a cluster").
    scheduler: str | None = None
    # Batch mode on this machine ("local") or as Dask tasks over partitioned input ("dask",
    # see "Distributed batch" in the README).
    engine: str = "local"
    # Live input (--input -): rows the shared state is fitted on before it is frozen, and the
    # longest a row waits for its chunk to fill before the chunk is emitted anyway.
    live_warmup_rows: int = 256
    live_max_wait_s: float = 2.0

    def __post_init__(self) -> None:
        for name, value in _coerced(self).items():
            object.__setattr__(self, name, value)
        _validate(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "configuration") -> PipelineConfig:
        """Build a config from a mapping, rejecting keys the pipeline does not know."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a JSON object of settings, got {values!r}")
        unknown = sorted(set(values) - set(field_names()))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"accepted keys are {', '.join(field_names())}"
            )
        return cls(**values)

    @classmethod
    def from_template(cls, path: str | Path) -> PipelineConfig:
        """Read a JSON template such as ``configs/pipeline.edge.template.json``."""
        return cls.from_dict(read_template(path), source=str(path))

    @classmethod
    def from_profile(cls, name: str) -> PipelineConfig:
        """The built-in ``edge`` or ``server`` profile."""
        return cls.from_dict(profile_values(name), source=f"profile {name!r}")

    def with_overrides(self, **overrides: Any) -> PipelineConfig:
        """A copy with the given keys replaced; ``None`` values are ignored."""
        given = {key: value for key, value in overrides.items() if value is not None}
        unknown = sorted(set(given) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(map(repr, unknown))}")
        return dataclasses.replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values of every setting, in declaration order."""
        values = {}
        for name in field_names():
            value = getattr(self, name)
            values[name] = list(value) if isinstance(value, tuple) else value
        return values


def field_names() -> list[str]:
    """Names of the settings a template may hold, in declaration order."""
    return [f.name for f in dataclasses.fields(PipelineConfig) if f.init]


def read_template(path: str | Path) -> dict[str, Any]:
    """Parse a JSON template, turning every read or syntax problem into a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config template {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config template {path} cannot be read: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config template {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        ) from None


def profile_values(name: str) -> dict[str, Any]:
    """The settings of a built-in profile, as shipped in the package."""
    if name not in PROFILE_NAMES:
        raise ConfigError(f"--profile must be one of {', '.join(PROFILE_NAMES)}, got {name!r}")
    text = resources.files("nba_pipeline").joinpath(f"profiles/{name}.json").read_text("utf-8")
    return json.loads(text)


_INT_KEYS = (
    "random_seed",
    "chunk_size",
    "batch_size",
    "n_jobs",
    "benchmark_runs",
    "max_chunk_retries",
    "rolling_window",
    "min_chunk_size",
    "live_warmup_rows",
)
_FLOAT_KEYS = (
    "max_memory_mb",
    "max_compute_units",
    "test_fraction",
    "correlation_threshold",
    "max_quarantine_ratio",
    "live_max_wait_s",
)
_BOOL_KEYS = ("adaptive_chunk_resize", "spill_to_disk", "isolate_runs", "telemetry")
_TUPLE_KEYS = {
    "sweep_chunk_sizes": int,
    "sweep_memory_limits_mb": float,
    "sweep_compute_limits": float,
    "data_size_fractions": float,
}


def _coerced(config: PipelineConfig) -> dict[str, Any]:
    """Check each value's type and return it in its canonical Python type."""
    values = {}
    for key in _INT_KEYS:
        values[key] = _as_int(key, getattr(config, key))
    for key in _FLOAT_KEYS:
        values[key] = _as_float(key, getattr(config, key))
    for key in _BOOL_KEYS:
        value = getattr(config, key)
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        values[key] = value
    for key, kind in _TUPLE_KEYS.items():
        value = getattr(config, key)
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"{key} must be a list of numbers, got {value!r}")
        convert = _as_int if kind is int else _as_float
        values[key] = tuple(convert(key, item) for item in value)
    if not isinstance(config.output_dir, (str, Path)) or not str(config.output_dir):
        raise ConfigError(f"output_dir must be a non-empty path, got {config.output_dir!r}")
    values["output_dir"] = str(config.output_dir)
    values["encoding"] = _as_encoding(config.encoding)
    if config.cpu_cap_mechanism not in CPU_CAP_MECHANISMS:
        raise ConfigError(
            f"cpu_cap_mechanism must be one of {', '.join(map(repr, CPU_CAP_MECHANISMS))}, "
            f"got {config.cpu_cap_mechanism!r}"
        )
    factor = config.memory_hard_limit_factor
    if factor is not None:
        factor = _as_float("memory_hard_limit_factor", factor)
        if factor < 1.0:
            raise ConfigError(
                "memory_hard_limit_factor must be >= 1 (a multiple of max_memory_mb) or null, "
                f"got {factor}"
            )
    values["memory_hard_limit_factor"] = factor
    values["scheduler"] = _as_scheduler(config.scheduler)
    if config.engine not in ENGINES:
        raise ConfigError(
            f"engine must be one of {', '.join(map(repr, ENGINES))}, got {config.engine!r}"
        )
    return values


_SCHEDULER_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?[^\s/?#]+(?::\d+)?$", re.IGNORECASE)


def _as_scheduler(value: Any) -> str | None:
    """A Dask scheduler address (``tcp://host:8786``, ``tls://host:8786``, ``host:8786``)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SCHEDULER_ADDRESS.match(value.strip()):
        raise ConfigError(
            "scheduler must be a Dask scheduler address such as tcp://10.0.0.5:8786 or null "
            f"for this machine, got {_redacted(value)!r}"
        )
    return value.strip()


def _redacted(value: Any) -> Any:
    # An address that failed validation may still carry a password: never echo it.
    if isinstance(value, str) and "@" in value:
        return "<address with credentials>"
    return value


def _as_encoding(value: Any) -> str:
    """A text encoding Python knows, in its canonical name (``latin_1`` -> ``iso8859-1``)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"encoding must be the name of a text encoding, got {value!r}")
    try:
        info = codecs.lookup(value.strip())
    except LookupError:
        raise ConfigError(
            f"encoding {value!r} is not a known text encoding; use a name such as utf-8, "
            "cp1252, latin-1 or utf-16"
        ) from None
    if not getattr(info, "_is_text_encoding", True):
        raise ConfigError(f"encoding {value!r} is not a text encoding")
    return info.name


def _as_int(key: str, value: Any) -> int:
    if not _is_finite_number(value) or value != int(value):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return int(value)


def _as_float(key: str, value: Any) -> float:
    if not _is_finite_number(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(config: PipelineConfig) -> None:
    """Range checks; each message names the key, the accepted range and the value."""
    _at_least(config, "chunk_size", 1)
    _at_least(config, "batch_size", 1)
    _at_least(config, "n_jobs", 1)
    _at_least(config, "benchmark_runs", 1)
    _at_least(config, "max_chunk_retries", 0)
    _at_least(config, "rolling_window", 1)
    _at_least(config, "min_chunk_size", 1)
    _at_least(config, "random_seed", 0)
    _at_least(config, "live_warmup_rows", 1)
    if not config.live_max_wait_s > 0:
        raise ConfigError(
            "live_max_wait_s must be > 0 (seconds a row may wait for its chunk to fill), "
            f"got {config.live_max_wait_s}"
        )
    if not config.max_memory_mb > 0:
        raise ConfigError(f"max_memory_mb must be > 0 (megabytes), got {config.max_memory_mb}")
    _unit_interval(config.max_compute_units, "max_compute_units")
    if not 0.0 < config.test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {config.test_fraction}")
    if not 0.0 < config.correlation_threshold <= 1.0:
        raise ConfigError(
            f"correlation_threshold must be in (0, 1], got {config.correlation_threshold}"
        )
    for key in _TUPLE_KEYS:
        if not getattr(config, key):
            raise ConfigError(f"{key} must list at least one value")
    for size in config.sweep_chunk_sizes:
        if size < 1:
            raise ConfigError(f"sweep_chunk_sizes values must be >= 1, got {size}")
    for limit in config.sweep_memory_limits_mb:
        if limit <= 0:
            raise ConfigError(f"sweep_memory_limits_mb values must be > 0, got {limit}")
    for limit in config.sweep_compute_limits:
        _unit_interval(limit, "sweep_compute_limits values")
    for fraction in config.data_size_fractions:
        _unit_interval(fraction, "data_size_fractions values")
    if not 0.0 <= config.max_quarantine_ratio <= 1.0:
        raise ConfigError(
            "max_quarantine_ratio must be in [0, 1] (the share of input rows that may be "
            f"quarantined), got {config.max_quarantine_ratio}"
        )


def _at_least(config: PipelineConfig, key: str, minimum: int) -> None:
    value = getattr(config, key)
    if value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value}")


def _unit_interval(value: float, what: str) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{what} must be in (0, 1], got {value}")
