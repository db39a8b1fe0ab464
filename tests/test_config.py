"""PipelineConfig: defaults, the three ways of building one, layering and every rejection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nba_pipeline.config import PROFILE_NAMES, PipelineConfig, field_names, read_template
from nba_pipeline.errors import ConfigError, PipelineError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

TEMPLATE_KEYS = (
    "random_seed",
    "chunk_size",
    "batch_size",
    "n_jobs",
    "max_memory_mb",
    "max_compute_units",
    "benchmark_runs",
    "adaptive_chunk_resize",
    "max_chunk_retries",
    "spill_to_disk",
    "output_dir",
)
EXPECTED_TEMPLATES = {
    "edge": dict(
        zip(
            TEMPLATE_KEYS,
            (42, 64, 96, 1, 256, 0.4, 3, True, 3, True, "artifacts_edge"),
            strict=True,
        )
    ),
    "server": dict(
        zip(
            TEMPLATE_KEYS,
            (42, 256, 512, 4, 4096, 1.0, 5, True, 3, False, "artifacts_server"),
            strict=True,
        )
    ),
}


def write_json(path: Path, values) -> Path:
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------------------


def test_defaults():
    config = PipelineConfig()
    assert config.random_seed == 42
    assert config.chunk_size == 64
    assert config.batch_size == 96
    assert config.n_jobs == 1
    assert config.max_memory_mb == 256.0
    assert config.max_compute_units == 1.0
    assert config.benchmark_runs == 3
    assert config.adaptive_chunk_resize is True
    assert config.max_chunk_retries == 3
    assert config.spill_to_disk is False
    assert config.output_dir == "artifacts"
    assert config.test_fraction == 0.2
    assert config.sweep_chunk_sizes == (32, 64, 256)
    assert config.data_size_fractions == (0.25, 0.5, 1.0)
    assert config.min_chunk_size == 16
    assert config.isolate_runs is True


def test_field_names_start_with_the_template_keys():
    assert tuple(field_names()[: len(TEMPLATE_KEYS)]) == TEMPLATE_KEYS


def test_values_are_coerced_to_their_canonical_types():
    config = PipelineConfig(
        max_memory_mb=512, chunk_size=32.0, sweep_chunk_sizes=[16, 32.0], output_dir=Path("x")
    )
    assert isinstance(config.max_memory_mb, float) and config.max_memory_mb == 512.0
    assert isinstance(config.chunk_size, int) and config.chunk_size == 32
    assert config.sweep_chunk_sizes == (16, 32)
    assert all(isinstance(size, int) for size in config.sweep_chunk_sizes)
    assert config.output_dir == "x"


def test_to_dict_is_json_ready_and_round_trips():
    config = PipelineConfig.from_profile("server")
    values = config.to_dict()
    assert list(values) == field_names()
    assert values["sweep_chunk_sizes"] == [32, 64, 256]
    assert PipelineConfig.from_dict(json.loads(json.dumps(values))) == config


def test_config_is_frozen():
    config = PipelineConfig()
    with pytest.raises(AttributeError):
        config.chunk_size = 8


def test_config_error_is_a_pipeline_error_with_exit_code_2():
    assert issubclass(ConfigError, PipelineError)
    assert ConfigError.exit_code == 2


# --------------------------------------------------------------------------------------
# Templates and profiles
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_template_file_holds_exactly_the_documented_keys_and_values(name):
    raw = json.loads((CONFIGS / f"pipeline.{name}.template.json").read_text(encoding="utf-8"))
    assert list(raw) == list(TEMPLATE_KEYS)
    assert raw == EXPECTED_TEMPLATES[name]
    # Booleans stay JSON booleans, not 0/1 or strings.
    assert raw["adaptive_chunk_resize"] is True
    assert raw["spill_to_disk"] is EXPECTED_TEMPLATES[name]["spill_to_disk"]


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_template_equals_packaged_profile(name):
    from_template = PipelineConfig.from_template(CONFIGS / f"pipeline.{name}.template.json")
    from_profile = PipelineConfig.from_profile(name)
    assert from_template == from_profile
    assert from_template.to_dict() == from_profile.to_dict()
    raw = read_template(CONFIGS / f"pipeline.{name}.template.json")
    assert {key: from_profile.to_dict()[key] for key in TEMPLATE_KEYS} == raw


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_from_profile_values(name):
    config = PipelineConfig.from_profile(name)
    for key, expected in EXPECTED_TEMPLATES[name].items():
        assert getattr(config, key) == expected, key
    # Keys a template does not hold keep their defaults.
    assert config.test_fraction == PipelineConfig().test_fraction
    assert config.sweep_chunk_sizes == PipelineConfig().sweep_chunk_sizes


def test_from_dict_builds_from_a_partial_mapping():
    config = PipelineConfig.from_dict({"chunk_size": 16, "spill_to_disk": True})
    assert config.chunk_size == 16
    assert config.spill_to_disk is True
    assert config.batch_size == PipelineConfig().batch_size


def test_from_template_accepts_str_and_path(tmp_path):
    path = write_json(tmp_path / "t.json", {"batch_size": 7})
    assert PipelineConfig.from_template(str(path)) == PipelineConfig.from_template(path)
    assert PipelineConfig.from_template(path).batch_size == 7


def test_unknown_profile_is_rejected():
    with pytest.raises(ConfigError, match=r"--profile must be one of edge, server, got 'tiny'"):
        PipelineConfig.from_profile("tiny")


# --------------------------------------------------------------------------------------
# Layering
# --------------------------------------------------------------------------------------


def test_template_values_survive_when_no_override_is_given():
    edge = PipelineConfig.from_profile("edge")
    layered = edge.with_overrides(chunk_size=None, batch_size=None, spill_to_disk=None)
    assert layered == edge
    assert layered.spill_to_disk is True
    assert layered.max_compute_units == 0.4


def test_override_replaces_only_the_given_keys():
    edge = PipelineConfig.from_profile("edge")
    layered = edge.with_overrides(chunk_size=32, spill_to_disk=False, output_dir=None)
    assert layered.chunk_size == 32
    assert layered.spill_to_disk is False
    expected = {**edge.to_dict(), "chunk_size": 32, "spill_to_disk": False}
    assert layered.to_dict() == expected
    # The original is untouched.
    assert edge.chunk_size == 64


def test_with_overrides_ignores_none_even_for_unknown_keys():
    config = PipelineConfig()
    assert config.with_overrides(no_such_key=None) == config
    assert config.with_overrides() == config


def test_with_overrides_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) 'chunk_sise'"):
        PipelineConfig().with_overrides(chunk_sise=3)


def test_with_overrides_validates_the_new_value():
    with pytest.raises(ConfigError, match=r"chunk_size must be an integer >= 1, got 0"):
        PipelineConfig.from_profile("edge").with_overrides(chunk_size=0)


def test_false_override_is_not_treated_as_missing():
    config = PipelineConfig(spill_to_disk=True).with_overrides(spill_to_disk=False)
    assert config.spill_to_disk is False


# --------------------------------------------------------------------------------------
# Rejections: each names the key and the accepted range
# --------------------------------------------------------------------------------------

INVALID_VALUES = [
    ("chunk_size", 0, r"chunk_size must be an integer >= 1, got 0"),
    ("batch_size", -1, r"batch_size must be an integer >= 1, got -1"),
    ("max_compute_units", 0, r"max_compute_units must be in \(0, 1\], got 0\.0"),
    ("max_compute_units", 1.5, r"max_compute_units must be in \(0, 1\], got 1\.5"),
    ("max_memory_mb", 0, r"max_memory_mb must be > 0 \(megabytes\), got 0\.0"),
    ("max_memory_mb", -5, r"max_memory_mb must be > 0 \(megabytes\), got -5\.0"),
    ("spill_to_disk", "true", r"spill_to_disk must be true or false, got 'true'"),
    ("spill_to_disk", "false", r"spill_to_disk must be true or false, got 'false'"),
    ("adaptive_chunk_resize", "true", r"adaptive_chunk_resize must be true or false, got 'true'"),
    ("spill_to_disk", 1, r"spill_to_disk must be true or false, got 1"),
    ("chunk_size", "64", r"chunk_size must be an integer, got '64'"),
    ("chunk_size", 1.5, r"chunk_size must be an integer, got 1\.5"),
    ("chunk_size", True, r"chunk_size must be an integer, got True"),
    ("n_jobs", 0, r"n_jobs must be an integer >= 1, got 0"),
    ("benchmark_runs", 0, r"benchmark_runs must be an integer >= 1, got 0"),
    ("max_chunk_retries", -1, r"max_chunk_retries must be an integer >= 0, got -1"),
    ("random_seed", -1, r"random_seed must be an integer >= 0, got -1"),
    ("max_memory_mb", "256", r"max_memory_mb must be a finite number, got '256'"),
    ("test_fraction", 1.0, r"test_fraction must be in \(0, 1\), got 1\.0"),
    ("output_dir", "", r"output_dir must be a non-empty path, got ''"),
    ("sweep_chunk_sizes", [], r"sweep_chunk_sizes must list at least one value"),
    ("sweep_chunk_sizes", 64, r"sweep_chunk_sizes must be a list of numbers, got 64"),
    ("sweep_chunk_sizes", [0], r"sweep_chunk_sizes values must be >= 1, got 0"),
    ("sweep_compute_limits", [1.5], r"sweep_compute_limits values must be in \(0, 1\]"),
]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    INVALID_VALUES,
    ids=[f"{key}={value!r}" for key, value, _ in INVALID_VALUES],
)
def test_invalid_value_is_rejected_in_every_layer(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig(**{key: value})
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_dict({key: value})
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_template(write_json(tmp_path / "bad.json", {key: value}))
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_profile("edge").with_overrides(**{key: value})


@pytest.mark.parametrize("key", ["max_memory_mb", "max_compute_units"])
def test_nan_float_setting_is_rejected(key):
    with pytest.raises(ConfigError, match=rf"{key} must be .*, got nan"):
        PipelineConfig(**{key: math.nan})


@pytest.mark.parametrize(
    "values",
    [{"chunk_size": math.nan}, {"chunk_size": math.inf}, {"sweep_chunk_sizes": [math.nan]}],
    ids=["chunk_size=nan", "chunk_size=inf", "sweep_chunk_sizes=[nan]"],
)
def test_non_finite_integer_setting_is_a_config_error(tmp_path, values):
    # Python's json module reads NaN and Infinity, so a template can hold them.
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    key = next(iter(values))
    with pytest.raises(ConfigError, match=rf"{key} must be an integer"):
        PipelineConfig.from_template(path)


def test_unknown_key_is_listed_with_the_accepted_keys():
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_dict({"chunk_sise": 64, "zzz": 1, "batch_size": 8})
    message = str(caught.value)
    assert "unknown key(s) 'chunk_sise', 'zzz'" in message
    assert "accepted keys are random_seed, chunk_size, batch_size" in message
    assert "'batch_size'" not in message


def test_unknown_key_in_template_names_the_template(tmp_path):
    path = write_json(tmp_path / "typo.json", {"chunksize": 64})
    with pytest.raises(ConfigError, match=r"typo\.json: unknown key\(s\) 'chunksize'; accepted"):
        PipelineConfig.from_template(path)


def test_template_that_is_not_an_object_is_rejected(tmp_path):
    path = write_json(tmp_path / "list.json", [1, 2])
    with pytest.raises(ConfigError, match=r"list\.json: expected a JSON object of settings"):
        PipelineConfig.from_template(path)


def test_unreadable_json_names_the_path_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "chunk_size": 64,\n  "batch_size": 96,\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_template(path)
    message = str(caught.value)
    assert str(path) in message
    assert "is not valid JSON" in message
    assert "at line 4, column 1" in message


def test_empty_template_file_is_a_config_error(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"empty\.json is not valid JSON: .* at line 1"):
        PipelineConfig.from_template(path)


def test_missing_template_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "pipeline.json"
    with pytest.raises(ConfigError, match=r"config template .*nowhere.pipeline\.json does not"):
        PipelineConfig.from_template(path)


def test_template_that_is_a_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"config template .* cannot be read"):
        PipelineConfig.from_template(tmp_path)
