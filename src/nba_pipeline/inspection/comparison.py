"""Comparing two runs: their deterministic parts, and how far apart their measurements are."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from .common import (
    RunDirectoryError,
    file_digest,
    is_real_dir,
    load_report,
    run_directory,
    short_list,
)
from .layout import CHECKSUM_ALGORITHM, MANIFEST, REPORT, SPILL_PATTERN

logger = logging.getLogger(__package__)

#: Headline metrics: report path, and the benchmark list holding its repetitions (if any).
HEADLINE_METRICS = {
    "batch.latency_s": "benchmark.batch.latency_s",
    "streaming.latency_s": "benchmark.streaming.latency_s",
    "batch.throughput_rows_s": "benchmark.batch.throughput_rows_s",
    "streaming.throughput_rows_s": "benchmark.streaming.throughput_rows_s",
    "batch.memory.peak_rss_mb": "benchmark.batch.peak_rss_mb",
    "streaming.memory.peak_rss_mb": "benchmark.streaming.peak_rss_mb",
    "batch.model.r2": None,
    "batch.model.rmse": None,
    "streaming.model.r2": None,
    "streaming.model.rmse": None,
}
MODEL_SCORES = ("batch.model.r2", "batch.model.rmse", "streaming.model.r2", "streaming.model.rmse")
#: Configuration keys that say where a run went, not what it computed.
LOCATION_KEYS = ("output_dir", "scheduler")


def compare_runs(run_a: str | Path, run_b: str | Path, seed: int = 0) -> dict:
    """Compare two run directories; differences are ``b - a``.

    Returns a dict with:

    - ``config_differences``: ``{key: (value in a, value in b)}`` for every setting that
      differs (``None`` for a key one run lacks), and ``location_differences`` for settings
      that only say where a run went (``output_dir``, ``scheduler``), which never count
      toward identity;
    - ``environment_differences``: python, platform, package and dependency versions, for
      information;
    - ``dataset_sha256``: both fingerprints and whether they are equal;
    - ``metrics``: for each headline metric, ``a``, ``b``, ``difference`` and ``repetitions``:
      the permutation test of run b's benchmark repetitions against run a's
      (``pvalue``, ``min_attainable_pvalue``, ``significant``...), or ``None`` with a
      ``note`` when the metric has no repetitions (model scores) or a run did not record them;
    - ``identity``: per deterministic part, ``True``/``False``, or ``None`` when it could not
      be compared (spilled files absent from a run), with ``identity_notes``;
    - ``identical_deterministic_parts``: every compared part is equal.  Timing and memory
      figures never count.

    Raises :class:`RunDirectoryError` when a path is not a readable run directory.
    """
    # scipy (behind the significance tests) is imported here, not at module level, so that
    # verify and clean, which share this package, start quickly.
    from ..significance import SIGNIFICANCE_LEVEL

    root_a, root_b = run_directory(run_a), run_directory(run_b)
    report_a, report_b = load_report(root_a), load_report(root_b)

    config_a, config_b = _config(root_a, report_a), _config(root_b, report_b)
    all_differences = _dict_differences(config_a, config_b)
    location = {key: pair for key, pair in all_differences.items() if key in LOCATION_KEYS}
    config_differences = {
        key: pair for key, pair in all_differences.items() if key not in LOCATION_KEYS
    }
    sha_a = _get(report_a, "dataset_fingerprint.sha256")
    sha_b = _get(report_b, "dataset_fingerprint.sha256")
    metrics = {
        name: _compare_metric(report_a, report_b, name, repetitions, seed)
        for name, repetitions in HEADLINE_METRICS.items()
    }

    notes: dict[str, str] = {}
    spills_a, spills_b = _spill_digests(root_a), _spill_digests(root_b)
    if spills_a and spills_b:
        same_spills: bool | None = spills_a == spills_b
        if not same_spills:
            notes["intermediate_files"] = _spill_difference(spills_a, spills_b)
    else:
        same_spills = None
        notes["intermediate_files"] = (
            f"not compared: spilled chunk files present in run a: {len(spills_a)}, "
            f"in run b: {len(spills_b)}"
        )
    changed_scores = [key for key in MODEL_SCORES if _get(report_a, key) != _get(report_b, key)]
    identity = {
        "config": not config_differences,
        "dataset_sha256": sha_a is not None and sha_a == sha_b,
        "model_scores": not changed_scores,
        "selected_features": _get(report_a, "batch.features.selected_numeric")
        == _get(report_b, "batch.features.selected_numeric"),
        "intermediate_files": same_spills,
    }
    if config_differences:
        notes["config"] = "differs in " + ", ".join(sorted(config_differences))
    if changed_scores:
        notes["model_scores"] = "differs in " + ", ".join(changed_scores)
    identical = all(value is not False for value in identity.values())
    logger.debug("compared %s and %s: identical: %s", root_a, root_b, identical)
    return {
        "run_a": str(root_a),
        "run_b": str(root_b),
        "identical_deterministic_parts": identical,
        "identity": identity,
        "identity_notes": notes,
        "config_differences": config_differences,
        "location_differences": location,
        "environment_differences": _environment_differences(report_a, report_b),
        "dataset_sha256": {"a": sha_a, "b": sha_b, "equal": identity["dataset_sha256"]},
        "intermediate_files": {"a": len(spills_a), "b": len(spills_b)},
        "metrics": metrics,
        "seed": int(seed),
        "significance_level": SIGNIFICANCE_LEVEL,
    }


def _compare_metric(
    report_a: dict, report_b: dict, name: str, repetitions_path: str | None, seed: int
) -> dict:
    """One headline metric of both runs, with a permutation test where both repeated it."""
    value_a, value_b = _number(_get(report_a, name)), _number(_get(report_b, name))
    difference = value_b - value_a if value_a is not None and value_b is not None else None
    result = {"a": value_a, "b": value_b, "difference": difference, "repetitions": None}
    if repetitions_path is None:
        result["note"] = "one value per run (no repetitions): no significance test"
        return result
    runs_a, runs_b = _get(report_a, repetitions_path), _get(report_b, repetitions_path)
    if not (isinstance(runs_a, list) and runs_a and isinstance(runs_b, list) and runs_b):
        result["note"] = f"no significance test: {repetitions_path} is not recorded in " + (
            "both runs" if not runs_a and not runs_b else "run a" if not runs_a else "run b"
        )
        return result
    from ..significance import SIGNIFICANCE_LEVEL, permutation_pvalue

    try:
        test = permutation_pvalue(runs_a, runs_b, seed)
    except ValueError as exc:
        result["note"] = f"no significance test: {repetitions_path}: {exc}"
        return result
    result["repetitions"] = {
        "source": repetitions_path,
        "n_a": test["n_a"],
        "n_b": test["n_b"],
        "mean_a": sum(runs_a) / len(runs_a),
        "mean_b": sum(runs_b) / len(runs_b),
        "mean_difference": test["statistic"],
        "pvalue": test["pvalue"],
        "min_attainable_pvalue": test["min_attainable_pvalue"],
        "can_reach_0_05": test["can_reach_0_05"],
        "significant": test["pvalue"] < SIGNIFICANCE_LEVEL,
    }
    result["note"] = test["note"]
    return result


def _spill_digests(root: Path) -> dict[str, str]:
    """SHA-256 of each spilled chunk file, by relative path (symbolic links are skipped)."""
    folder = root / "intermediate"
    if not is_real_dir(folder):
        return {}
    return {
        f"intermediate/{entry.name}": file_digest(Path(entry.path), CHECKSUM_ALGORITHM)
        for entry in sorted(os.scandir(folder), key=lambda entry: entry.name)
        if SPILL_PATTERN.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
    }


def _spill_difference(spills_a: dict, spills_b: dict) -> str:
    only_a, only_b = sorted(set(spills_a) - set(spills_b)), sorted(set(spills_b) - set(spills_a))
    changed = sorted(p for p in set(spills_a) & set(spills_b) if spills_a[p] != spills_b[p])
    parts = [f"{len(spills_a)} vs {len(spills_b)} files"]
    if changed:
        parts.append(f"different content: {short_list(changed)}")
    if only_a:
        parts.append(f"only in run a: {short_list(only_a)}")
    if only_b:
        parts.append(f"only in run b: {short_list(only_b)}")
    return "; ".join(parts)


def _environment_differences(report_a: dict, report_b: dict) -> dict:
    differences = {}
    for key in ("python_version", "platform", "package_version"):
        value_a = _get(report_a, f"reproducibility.{key}")
        value_b = _get(report_b, f"reproducibility.{key}")
        if value_a != value_b:
            differences[key] = (value_a, value_b)
    dependencies = _dict_differences(
        _get(report_a, "reproducibility.dependencies") or {},
        _get(report_b, "reproducibility.dependencies") or {},
    )
    differences.update({f"dependencies.{name}": pair for name, pair in dependencies.items()})
    return differences


def _config(root: Path, report: dict) -> dict:
    config = _get(report, "reproducibility.config")
    if isinstance(config, dict):
        return config
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        if isinstance(manifest.get("config"), dict):
            return manifest["config"]
    raise RunDirectoryError(f"{root}: neither {REPORT} nor {MANIFEST} holds the configuration")


def _get(data: dict, dotted: str):
    value = data
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _number(value) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _dict_differences(a: dict, b: dict) -> dict:
    return {
        key: (a.get(key), b.get(key))
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key) or (key in a) != (key in b)
    }
