"""Text for the command line: the results of compare, verify and clean, for people to read."""

from __future__ import annotations

from .common import short_list


def format_comparison(result: dict) -> str:
    """Render :func:`compare_runs` as a readable table."""
    verdict = "yes" if result["identical_deterministic_parts"] else "NO"
    lines = [
        f"run a: {result['run_a']}",
        f"run b: {result['run_b']}",
        f"identical deterministic parts: {verdict}",
    ]
    for part, same in result["identity"].items():
        state = "not compared" if same is None else "same" if same else "DIFFERENT"
        note = result["identity_notes"].get(part, "").removeprefix("not compared: ")
        lines.append(f"  {part:<20} {state}" + (f" ({note})" if note else ""))
    for key, (value_a, value_b) in result["config_differences"].items():
        lines.append(f"  config {key}: {value_a!r} -> {value_b!r}")
    for key, (value_a, value_b) in result["environment_differences"].items():
        lines.append(f"  environment {key}: {value_a!r} -> {value_b!r} (not counted)")

    lines += ["", f"{'metric':<30}{'run a':>13}{'run b':>13}{'b - a':>13}  p-value (floor)"]
    for name, metric in result["metrics"].items():
        tested = metric["repetitions"]
        if tested is None:
            test = "no repetitions" if "no repetitions" in metric["note"] else "not recorded"
        else:
            mark = " significant" if tested["significant"] else ""
            test = f"{tested['pvalue']:.3g} ({tested['min_attainable_pvalue']:.3g}){mark}"
        lines.append(
            f"{name:<30}{_num(metric['a']):>13}{_num(metric['b']):>13}"
            f"{_num(metric['difference'], signed=True):>13}  {test}"
        )
    return "\n".join(lines)


def format_verification(result: dict) -> str:
    """Render :func:`verify_run` as one verdict line and one line per problem."""
    head = f"{result['run_dir']}: " + ("ok" if result["ok"] else "PROBLEMS FOUND")
    details = f" ({result['checked']} file(s) match checksums.json"
    if not result["checksums"]["present"]:
        details = " (no checksums.json"
    if result["removed_by_clean"]:
        details += f"; {len(result['removed_by_clean'])} removed by clean"
    lines = [head + details + ")"]
    lines += [f"  {problem}" for problem in result["problems"]]
    return "\n".join(lines)


def format_cleanup(result: dict) -> str:
    """Render :func:`clean_run` or :func:`clean_runs_older_than` for people."""
    if "cleaned" not in result:
        return "\n".join(_cleanup_lines(result))
    verb = "would clean" if result["dry_run"] else "cleaned"
    lines = [
        f"{result['parent_dir']}: {verb} {len(result['cleaned'])} run(s) older than "
        f"{result['days']:g} day(s), {len(result['recent'])} recent run(s) left alone"
    ]
    for run in result["cleaned"]:
        lines += [f"  {line}" for line in _cleanup_lines(run)]
    lines += [f"  skipped {item['run']}: {item['reason']}" for item in result["skipped"]]
    freed = "would free" if result["dry_run"] else "freed"
    lines.append(f"total {freed}: {_bytes(result['bytes_freed'])}")
    return "\n".join(lines)


def _cleanup_lines(result: dict) -> list[str]:
    verb = "would delete" if result["dry_run"] else "deleted"
    lines = [
        f"{result['run_dir']}: {verb} {len(result['deleted'])} file(s), "
        f"{_bytes(result['bytes_freed'])}; checksums.json: {result['checksums']}"
    ]
    spills = [path for path in result["deleted"] if path.startswith("intermediate/")]
    if spills:
        lines.append(f"  intermediate/stream_chunk_*_X.csv / _y.csv: {len(spills)} file(s)")
    lines += [f"  {path}" for path in result["deleted"] if path not in spills]
    lines += [f"  skipped {item['path']}: {item['reason']}" for item in result["skipped"]]
    if result["run_removed"]:
        lines.append("  run directory removed")
    elif result["kept"]:
        lines.append(f"  kept files the pipeline did not write: {short_list(result['kept'])}")
    return lines


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    return f"{value:{sign},.0f}" if abs(value) >= 1000 else f"{value:{sign}.4g}"


def _bytes(count: int) -> str:
    return f"{count} bytes" if count < 1024 else f"{count / 1024:.1f} KiB"
