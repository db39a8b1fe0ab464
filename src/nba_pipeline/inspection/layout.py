"""Where a run directory keeps its files, and how long the artifact contract keeps them."""

from __future__ import annotations

import re

REPORT = "reports/pipeline_report.json"
MANIFEST = "metadata/run_manifest.json"
CHECKSUMS = "metadata/checksums.json"
CLEANUP_LOG = "metadata/cleanup_log.jsonl"
LOCK_FILE_NAME = ".nba-pipeline.lock"
CHECKSUM_ALGORITHM = "sha256"
SPILL_PATTERN = re.compile(r"stream_chunk_\d+_[Xy]\.csv")
PLOTS = (
    "benchmarks/latency_vs_accuracy.png",
    "benchmarks/memory_vs_accuracy.png",
    "benchmarks/latency_memory_accuracy.png",
)
#: Files the contract requires whenever the report has the section that produces them.
LAYOUT_BY_SECTION = {
    "streaming": (
        "reports/streaming_chunks.jsonl",
        "benchmarks/streaming_chunks.csv",
        "profiles/operator_profile.csv",
    ),
    "benchmark": ("benchmarks/significance_tests.csv", "benchmarks/latency_vs_data_size.csv"),
    "constraint_experiment": (
        "benchmarks/constraint_experiment.csv",
        "reports/constraint_experiment_log.jsonl",
        *PLOTS,
        "benchmarks/throughput_vs_memory.csv",
        "benchmarks/resource_vs_accuracy.csv",
    ),
}
#: Retention classes of the contract: "archive after 30 days" and "keep indefinitely".
ARCHIVE_CLASS = ("reports/streaming_chunks.jsonl", "profiles/operator_profile.csv", *PLOTS)
KEEP_CLASS = (REPORT, MANIFEST, "benchmarks/constraint_experiment.csv")
#: Every other file a run writes; removed only when a run is retired with its reports.
OTHER_RUN_FILES = (
    "benchmarks/streaming_chunks.csv",
    "benchmarks/significance_tests.csv",
    "benchmarks/latency_vs_data_size.csv",
    "benchmarks/throughput_vs_memory.csv",
    "benchmarks/resource_vs_accuracy.csv",
    "reports/constraint_experiment_log.jsonl",
    "reports/report.html",
    "reports/quarantine.csv",
    CHECKSUMS,
    CLEANUP_LOG,
    "input/received.csv",
)
#: The feature parts of distributed batch runs (``features.parquet/part-NNNNN.parquet``).
FEATURE_PARTS_DIR = "features.parquet"
FEATURE_PART_PATTERN = re.compile(r"part-\d{5}\.parquet")
RUN_FOLDERS = (
    "intermediate",
    "benchmarks",
    "profiles",
    "reports",
    "metadata",
    "input",
    FEATURE_PARTS_DIR,
)
