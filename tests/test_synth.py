"""Tests of the seeded synthetic NBA2K table generator (``nba_pipeline.synth``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba_pipeline import synth

REAL_HEADER = (
    "full_name,rating,jersey,team,position,b_day,height,weight,salary,country,"
    "draft_year,draft_round,draft_peak,college,version"
)
REAL_DATA_ENV = "NBA_PIPELINE_REAL_DATA"

# The raw table's cell formats; every synthetic cell must match its column's pattern.
RAW_PATTERNS = {
    "full_name": r"[A-Z][A-Za-z]+ [A-Z][A-Za-z]+(?: (?:Jr|II|III))?",
    "rating": r"(?:6[7-9]|[7-8]\d|9[0-7])",
    "jersey": r"#\d{1,2}",
    "position": r"(?:G|F|C|F-C|G-F|F-G|C-F)",
    "b_day": r"(?:0[1-9]|1[0-2])/(?:0[1-9]|[12]\d|3[01])/\d{2}",
    "height": r"[5-7]-(?:\d|1[01]) / [12]\.\d{2}",
    "weight": r"\d{3} lbs\. / \d{2,3}(?:\.\d)? kg\.",  # whole kilograms drop the '.0'
    "salary": r"\$[1-9]\d{4,7}",
    "country": r"[A-Z][A-Za-z ]+",
    "draft_year": r"20[0-2]\d",
    "draft_round": r"(?:1|2|Undrafted)",
    "draft_peak": r"(?:[1-9]|[1-5]\d|60|Undrafted)",
    "college": r"(?:[A-Z][A-Za-z&.'() ]*)?",
    "version": r"NBA2k2[01]",
}


@pytest.fixture(scope="module")
def big_sample(tmp_path_factory) -> pd.DataFrame:
    """5,000 rows read back from disk as text, as a parser of the real file would."""
    path = tmp_path_factory.mktemp("synth") / "players.csv"
    synth.write_synthetic_csv(path, 5_000, seed=11)
    return read_raw(path)


def read_raw(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def numbers(raw: pd.DataFrame) -> pd.DataFrame:
    """Numeric views of the raw text columns, parsed the way the real table is parsed."""
    height = raw["height"].str.extract(r"^(\d)-(\d+) / ([\d.]+)$").astype(float)
    weight = raw["weight"].str.extract(r"^(\d+) lbs\. / ([\d.]+) kg\.$").astype(float)
    birthday = pd.to_datetime(raw["b_day"], format="%m/%d/%y")
    return pd.DataFrame(
        {
            "rating": raw["rating"].astype(int),
            "height_in": height[0] * 12 + height[1],
            "height_m": height[2],
            "weight_lb": weight[0],
            "weight_kg": weight[1],
            "salary": raw["salary"].str[1:].astype(int),
            "birth_year": birthday.dt.year,
            "draft_year": raw["draft_year"].astype(int),
        }
    )


def generated(rows: int, seed: int, block_rows: int = 100_000) -> pd.DataFrame:
    blocks = list(synth.iter_player_blocks(rows, seed, block_rows))
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame()


# --- determinism ------------------------------------------------------------------------


def test_same_seed_gives_same_bytes(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    synth.write_synthetic_csv(first, 1_500, seed=5)
    synth.write_synthetic_csv(second, 1_500, seed=5)
    assert first.read_bytes() == second.read_bytes()


def test_different_seed_gives_different_rows():
    one, other = generated(300, seed=1), generated(300, seed=2)
    assert not one.equals(other)
    assert set(one["full_name"]) != set(other["full_name"])


def test_rows_do_not_depend_on_block_size(monkeypatch):
    # A small chunk makes 1,000 rows span several random streams.
    monkeypatch.setattr(synth, "_CHUNK_ROWS", 300)
    whole = generated(1_000, seed=3)
    for block_rows in (1, 7, 256, 300, 999):
        pd.testing.assert_frame_equal(generated(1_000, seed=3, block_rows=block_rows), whole)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(0, 700),
    seed=st.integers(0, 2**32 - 1),
    block_rows=st.integers(1, 800),
)
def test_blocks_have_the_requested_sizes(rows, seed, block_rows):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth, "_CHUNK_ROWS", 250)
        sizes = [len(block) for block in synth.iter_player_blocks(rows, seed, block_rows)]
    assert sum(sizes) == rows
    assert all(size == block_rows for size in sizes[:-1])
    assert all(0 < size <= block_rows for size in sizes)


def test_block_columns_and_types():
    block = next(synth.iter_player_blocks(50, seed=9))
    assert tuple(block.columns) == synth.HEADER
    assert block["rating"].dtype.kind == "i" and block["draft_year"].dtype.kind == "i"
    text_columns = block.drop(columns=["rating", "draft_year"])
    assert all(isinstance(value, str) for value in text_columns.to_numpy().ravel())


# --- file layout ------------------------------------------------------------------------


def test_header_equals_real_header(tmp_path):
    path = tmp_path / "players.csv"
    synth.write_synthetic_csv(path, 10, seed=0)
    assert path.read_text(encoding="utf-8").split("\n", 1)[0] == REAL_HEADER
    assert ",".join(synth.HEADER) == REAL_HEADER


def test_write_returns_row_count_and_file_has_rows_plus_one_lines(tmp_path):
    path = tmp_path / "players.csv"
    assert synth.write_synthetic_csv(path, 1_234, seed=4) == 1_234
    data = path.read_bytes()
    assert data.count(b"\n") == 1_235 and data.endswith(b"\n")
    assert b"\r" not in data
    assert len(read_raw(path)) == 1_234


def test_zero_rows_writes_only_the_header(tmp_path):
    path = tmp_path / "empty.csv"
    assert synth.write_synthetic_csv(path, 0, seed=0) == 0
    assert path.read_text(encoding="utf-8") == REAL_HEADER + "\n"


def test_file_is_the_to_csv_text_of_the_blocks(tmp_path):
    path = tmp_path / "players.csv"
    synth.write_synthetic_csv(path, 700, seed=8)
    expected = generated(700, seed=8).to_csv(index=False, lineterminator="\n")
    assert path.read_text(encoding="utf-8") == expected


@pytest.mark.parametrize("rows, block_rows", [(-1, 10), (10, 0), (1.5, 10)])
def test_invalid_counts_are_rejected(rows, block_rows):
    with pytest.raises(ValueError):
        next(synth.iter_player_blocks(rows, 0, block_rows))


def test_vocabularies_need_no_csv_quoting():
    # The fast writer leaves cells unquoted, which is only right without these characters.
    tables = synth._lookup_tables()
    vocabulary = [
        value for table in tables.values() if isinstance(table, np.ndarray) for value in table
    ]
    assert not [value for value in vocabulary if set(value) & set(',"\n\r')]


# --- raw formats ------------------------------------------------------------------------


@pytest.mark.parametrize("column", sorted(RAW_PATTERNS))
def test_every_cell_matches_the_raw_format(big_sample, column):
    cells = big_sample[column]
    bad = cells[~cells.str.fullmatch(RAW_PATTERNS[column])]
    assert bad.empty, f"{column}: {bad.head().tolist()}"


def test_categorical_values_come_from_the_real_vocabularies(big_sample):
    assert set(big_sample["team"]) <= {"", *synth.TEAMS}
    assert set(big_sample["position"]) == {"G", "F", "C", "F-C", "G-F", "F-G", "C-F"}
    assert set(big_sample["version"]) == {"NBA2k20", "NBA2k21"}
    assert len(synth.TEAMS) == len(set(synth.TEAMS)) == 30


def test_draft_round_and_peak_agree(big_sample):
    undrafted_round = big_sample["draft_round"].eq("Undrafted")
    assert undrafted_round.equals(big_sample["draft_peak"].eq("Undrafted"))
    drafted = big_sample[~undrafted_round]
    pick = drafted["draft_peak"].astype(int)
    first = drafted["draft_round"].eq("1")
    assert pick[first].between(1, 30).all() and pick[~first].between(31, 60).all()


def test_metric_and_imperial_halves_agree(big_sample):
    values = numbers(big_sample)
    assert (values["height_m"] - values["height_in"] * 0.0254).abs().max() <= 0.0051
    assert (values["weight_kg"] - values["weight_lb"] * 0.45359237).abs().max() <= 0.051


def test_ages_fit_the_draft_years(big_sample):
    values = numbers(big_sample)
    age_at_draft = values["draft_year"] - values["birth_year"]
    assert age_at_draft.between(17, 26).all()
    assert values["draft_year"].between(2000, 2020).all()


def test_nba2k21_rows_repeat_nba2k20_players(big_sample):
    newer = big_sample[big_sample["version"].eq("NBA2k21")]
    older = big_sample[big_sample["version"].eq("NBA2k20")]
    assert 0.01 <= len(newer) / len(big_sample) <= 0.05
    assert set(newer["full_name"]) <= set(older["full_name"])
    same_player = newer.merge(older, on=["full_name", "b_day", "height"], how="inner")
    assert len(same_player) >= len(newer)


def test_missing_cells_at_about_the_real_rates(big_sample):
    assert 0.02 <= big_sample["team"].eq("").mean() <= 0.09
    assert 0.10 <= big_sample["college"].eq("").mean() <= 0.22
    assert 0.65 <= big_sample["country"].eq("USA").mean() <= 0.85


# --- relations --------------------------------------------------------------------------


def test_salary_rises_with_rating(big_sample):
    values = numbers(big_sample)
    assert values["salary"].corr(values["rating"], method="spearman") > 0.5
    assert values["salary"].between(50_000, 46_000_000).all()


def test_weight_rises_with_height(big_sample):
    values = numbers(big_sample)
    assert values["weight_lb"].corr(values["height_in"], method="spearman") > 0.5


def test_centres_are_taller_than_guards(big_sample):
    height = numbers(big_sample)["height_in"]
    by_position = height.groupby(big_sample["position"]).mean()
    assert by_position["C"] > by_position["F"] > by_position["G"]


# --- packaged sample --------------------------------------------------------------------


def test_packaged_sample_equals_a_fresh_generation(tmp_path):
    fresh = tmp_path / "sample.csv"
    synth.write_synthetic_csv(fresh, synth.SAMPLE_ROWS, synth.SAMPLE_SEED)
    packaged = synth.sample_dataset_path()
    assert packaged.name == "sample_players.csv" and packaged.is_file()
    assert packaged.read_bytes() == fresh.read_bytes()


# --- against the real table -------------------------------------------------------------


@pytest.fixture(scope="module")
def real_table() -> pd.DataFrame:
    location = os.environ.get(REAL_DATA_ENV)
    if not location:
        pytest.skip(f"{REAL_DATA_ENV} is not set; it should point at nba2k-full.csv")
    path = Path(location)
    assert path.is_file(), f"{REAL_DATA_ENV}={location} is not a file"
    return read_raw(path)


def test_real_table_has_the_same_layout(real_table, big_sample):
    assert list(real_table.columns) == list(big_sample.columns)
    for column, pattern in RAW_PATTERNS.items():
        if column != "full_name":  # real names have apostrophes, dots and three parts
            assert real_table[column].str.fullmatch(pattern).all(), column


@pytest.mark.parametrize(
    "column", ["rating", "height_in", "weight_lb", "salary", "birth_year", "draft_year"]
)
def test_synthetic_ranges_resemble_the_real_ones(real_table, big_sample, column):
    real, fake = numbers(real_table)[column], numbers(big_sample)[column]
    span = real.max() - real.min()
    # The bulk of the synthetic values lies inside the real range, widened by a tenth ...
    low, high = fake.quantile([0.01, 0.99])
    assert real.min() - 0.1 * span <= low and high <= real.max() + 0.1 * span
    # ... and the centres and spreads are alike.
    assert abs(fake.median() - real.median()) <= 0.15 * span
    assert 0.6 <= fake.std() / real.std() <= 1.6


def test_synthetic_shares_resemble_the_real_ones(real_table, big_sample):
    for column, value in [
        ("team", ""),
        ("college", ""),
        ("country", "USA"),
        ("draft_round", "1"),
        ("draft_round", "Undrafted"),
        ("version", "NBA2k21"),
        ("position", "G"),
    ]:
        real_share = real_table[column].eq(value).mean()
        fake_share = big_sample[column].eq(value).mean()
        assert abs(fake_share - real_share) <= 0.06, (column, value, real_share, fake_share)


def test_synthetic_correlations_resemble_the_real_ones(real_table, big_sample):
    real, fake = numbers(real_table), numbers(big_sample)
    for left, right in [
        ("salary", "rating"),
        ("height_in", "weight_lb"),
        ("birth_year", "draft_year"),
        ("rating", "draft_year"),
    ]:
        real_rho = real[left].corr(real[right], method="spearman")
        fake_rho = fake[left].corr(fake[right], method="spearman")
        assert abs(fake_rho - real_rho) <= 0.2, (left, right, real_rho, fake_rho)
