"""Which fields of the report are measurements and which are determined by input and config.

Two runs with the same input, configuration and seed must agree on every deterministic
field; measured fields (times, memory, CPU, energy, and what adapts to them, such as chunk
sizes chosen under memory pressure) may differ.  The rule is by key name, wherever the key
appears, plus whole sections that consist of measurements; it is written into the report as
``field_kinds`` so that readers and tests apply the same rule.
"""

from __future__ import annotations

MEASURED_KEYS = frozenset(
    {
        # times
        "latency_s",
        "throughput_rows_s",
        "read_s",
        "fit_state_s",
        "fit_pass_s",
        "transform_pass_s",
        "spill_s",
        "training_time_s",
        "operator_profile_s",
        "model_update_s",
        "throttle_pause_s",
        "preprocessing_latency_s",
        "estimated_input_bandwidth_mb_s",
        "timestamp",
        # resources
        "memory",
        "compute",
        "energy",
        "peak_memory_mb",
        "measured_cpu_utilization",
        "worker",
        "cpu_percent",
        "system_memory_percent",
        "baseline_rss_mb",
        # what the adaptive chunking chose in response to the memory measured
        "chunk_metrics",
        "chunks",
        "final_chunk_size",
        "chunk_size",
        "chunk_size_median",
        "chunk_size_min",
        "chunks_over_budget",
        "retries",
        # live input: how chunks were emitted depends on when rows arrived
        "live",
    }
)
MEASURED_SECTIONS = ("benchmark",)
RUN_SECTIONS = ("run", "scaling")


def field_kinds() -> dict:
    """The rule, as written into the report."""
    return {
        "measured_keys": sorted(MEASURED_KEYS),
        "measured_sections": list(MEASURED_SECTIONS),
        "run_sections": list(RUN_SECTIONS),
        "rule": "a field is measured when its key is in measured_keys (at any depth) or it "
        "lies in a measured section; run sections describe where and when the run happened; "
        "every other field is determined by the input, the configuration and the seed",
    }


def deterministic_view(report: dict) -> dict:
    """The report without its measured and run-specific fields."""
    skipped = set(MEASURED_SECTIONS) | set(RUN_SECTIONS) | {"field_kinds"}
    return {key: _strip(value) for key, value in report.items() if key not in skipped}


def _strip(value):
    if isinstance(value, dict):
        return {key: _strip(item) for key, item in value.items() if key not in MEASURED_KEYS}
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value
