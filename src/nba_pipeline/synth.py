"""Seeded generator of made-up player rows in the raw NBA2K table format.

The rows imitate ``nba2k-full.csv``: the same header, column order and string formats
(``6-9 / 2.06``, ``250 lbs. / 113.4 kg.``, ``$37436858``, ``12/30/84`` ...), so the parsers
of the real table read them unchanged.  Names are drawn from first and last name lists; no
real player list is used.  The distributions (ratings, heights and weights per position,
salaries rising with rating, draft year against age, empty team and college cells, a few
players repeated as NBA2k21 rows) were fitted by eye to the real table's summary statistics.

Rows are drawn in fixed chunks of ``_CHUNK_ROWS`` rows, each from its own child generator
spawned in order from ``numpy.random.default_rng(seed)``; so the same ``(rows, seed)`` gives
the same rows whatever ``block_rows`` the caller asks for.  Like the real file, each chunk
lists its NBA2k20 rows by falling rating and then its NBA2k21 repeats.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 400
SAMPLE_SEED = 2020

HEADER = (
    "full_name", "rating", "jersey", "team", "position", "b_day", "height", "weight",
    "salary", "country", "draft_year", "draft_round", "draft_peak", "college", "version",
)  # fmt: skip

# Rows per random stream.  A constant (not block_rows) so the output never depends on how
# the caller blocks it; large enough that the per-chunk overhead vanishes.
_CHUNK_ROWS = 65_536
# Share of each chunk that re-lists an earlier player as NBA2k21 (10 of 439 in the real file).
_REPEAT_SHARE = 0.023
# The latest draft in the NBA2k20 data; experience counts back from it.
_LAST_DRAFT = 2019
_MIN_SALARY, _MAX_SALARY = 50_000, 46_000_000
# Width (in log dollars) of the bend under the maximum salary.
_SALARY_CAP_SOFTNESS = 0.3
_HEIGHT_RANGE_IN = (69, 88)
_WEIGHT_RANGE_LB = (165, 295)
_BIRTH_YEAR_RANGE = (1975, 2001)

TEAMS = (
    "Atlanta Hawks", "Boston Celtics", "Brooklyn Nets", "Charlotte Hornets", "Chicago Bulls",
    "Cleveland Cavaliers", "Dallas Mavericks", "Denver Nuggets", "Detroit Pistons",
    "Golden State Warriors", "Houston Rockets", "Indiana Pacers", "Los Angeles Clippers",
    "Los Angeles Lakers", "Memphis Grizzlies", "Miami Heat", "Milwaukee Bucks",
    "Minnesota Timberwolves", "New Orleans Pelicans", "New York Knicks",
    "Oklahoma City Thunder", "Orlando Magic", "Philadelphia 76ers", "Phoenix Suns",
    "Portland Trail Blazers", "Sacramento Kings", "San Antonio Spurs", "Toronto Raptors",
    "Utah Jazz", "Washington Wizards",
)  # fmt: skip

# Position, share, mean/sd height (inches), mean/sd weight (lbs) as in the real table.
_POSITIONS = (
    ("G", 172, 75.5, 2.0, 195.3),
    ("F", 141, 79.7, 1.6, 222.8),
    ("C", 49, 83.0, 1.7, 244.6),
    ("F-C", 37, 82.1, 1.5, 231.9),
    ("G-F", 20, 77.6, 1.3, 209.2),
    ("F-G", 14, 79.9, 1.7, 215.8),
    ("C-F", 6, 83.0, 1.4, 237.3),
)
# Within-position pounds per inch and the scatter left around that line.
_LBS_PER_INCH, _WEIGHT_NOISE_LB = 2.7, 14.0

# Relative frequency of ratings 67..97: a smoothed copy of the real table's histogram.
_RATING_WEIGHTS = (
    2, 6, 12, 22, 30, 40, 42, 38, 36, 34, 29, 25, 21, 15, 12, 10,
    9, 8, 8, 8, 7, 5, 4, 3, 3, 2, 2, 2, 2, 2, 1,
)  # fmt: skip
_RATING_MIN = 67
_RATING_MEAN, _RATING_SD = 76.8, 5.9

# Age at the draft, 19..24 (draft year minus birth year in the real table).
_DRAFT_AGE_WEIGHTS = (91, 109, 69, 102, 51, 12)

_COUNTRIES = (
    ("USA", 330), ("Canada", 15), ("Australia", 9), ("France", 8), ("Croatia", 6),
    ("Spain", 6), ("Germany", 6), ("Serbia", 5), ("Greece", 4), ("Italy", 4), ("Turkey", 4),
    ("Cameroon", 3), ("Slovenia", 3), ("Latvia", 3), ("Nigeria", 3), ("Lithuania", 2),
    ("Brazil", 2), ("Ukraine", 2), ("The Bahamas", 2), ("Bosnia and Herzegovina", 2),
    ("Democratic Republic of the Congo", 2), ("Montenegro", 1), ("Switzerland", 1),
    ("Dominican Republic", 1), ("Finland", 1), ("New Zealand", 1), ("Senegal", 1),
    ("Czech", 1), ("Israel", 1), ("Japan", 1), ("United Kingdom", 1), ("Georgia", 1),
)  # fmt: skip
# Players from abroad skip college far more often (real: 53% vs 3% for USA).
_NO_COLLEGE_USA, _NO_COLLEGE_ABROAD = 0.035, 0.53

# Colleges in falling order of frequency; drawn with weight 1 / (rank + 3).
_COLLEGES = (
    "Kentucky", "Duke", "North Carolina", "Texas", "Kansas", "UCLA", "Arizona", "Indiana",
    "Villanova", "Michigan", "USC", "Michigan State", "Florida", "Wake Forest", "Washington",
    "Iowa State", "UConn", "Tennessee", "Texas A&M", "Virginia", "Gonzaga", "Marquette",
    "Louisville", "Ohio State", "LSU", "Colorado", "California", "Stanford", "Florida State",
    "Syracuse", "Maryland", "Creighton", "Oregon", "UNLV", "Oklahoma", "Utah", "Georgia Tech",
    "Boston College", "Arkansas", "Baylor", "Purdue", "Memphis", "Georgetown", "Notre Dame",
    "Vanderbilt", "Wisconsin", "Xavier", "Miami (Florida)", "Missouri", "Butler", "Cincinnati",
    "Pittsburgh", "Illinois", "Alabama", "Davidson", "Dayton", "Oregon State", "Nevada",
    "Saint Mary's", "St. John's",
)  # fmt: skip

_FIRST_NAMES = (
    "Aaron", "Adam", "Alan", "Albert", "Alex", "Andre", "Andrew", "Anthony", "Antoine",
    "Arthur", "Austin", "Avery", "Bennett", "Billy", "Bobby", "Bojan", "Brandon", "Brian",
    "Bruce", "Bryan", "Caleb", "Cameron", "Carl", "Carlos", "Chidi", "Chris", "Christian",
    "Cody", "Colin", "Corey", "Curtis", "Dale", "Damon", "Daniel", "Dante", "Dario", "Darius",
    "Darnell", "Darren", "David", "Dean", "Dennis", "Derek", "Derrick", "DeShawn", "Devin",
    "Diego", "Dominic", "Donald", "Donovan", "Douglas", "Dragan", "Dwayne", "Dylan", "Eddie",
    "Edward", "Elijah", "Emeka", "Emmanuel", "Eric", "Ethan", "Evan", "Felix", "Frank",
    "Gabriel", "Gary", "George", "Gerald", "Grant", "Greg", "Harold", "Harrison", "Henry",
    "Hugo", "Ian", "Isaac", "Isaiah", "Ivan", "Jack", "Jacob", "Jalen", "Jamal", "Jamar",
    "James", "Jared", "Jason", "Javier", "Jaylen", "Jeff", "Jeremy", "Jerome", "Jesse",
    "Joel", "John", "Jonah", "Jonas", "Jordan", "Jose", "Joseph", "Josh", "Juan", "Julian",
    "Justin", "Kai", "Keith", "Kendall", "Kendrick", "Kenji", "Kevin", "Khalil", "Kyle",
    "Lamar", "Lance", "Larry", "Lawrence", "Leon", "Logan", "Lucas", "Malcolm", "Malik",
    "Marco", "Marcus", "Mario", "Mark", "Marquis", "Mason", "Mateo", "Matt", "Maurice",
    "Max", "Michael", "Miles", "Milos", "Mitchell", "Nathan", "Nick", "Noah", "Omar",
    "Oscar", "Pascal", "Patrick", "Paul", "Pedro", "Peter", "Philip", "Quentin", "Rashad",
    "Ray", "Reggie", "Ricky", "Robert", "Roger", "Ron", "Roy", "Russell", "Ryan", "Sam",
    "Scott", "Sean", "Sergio", "Seth", "Shane", "Stefan", "Terrence", "Theo", "Thomas",
    "Tim", "Tomas", "Tony", "Travis", "Trevor", "Trey", "Troy", "Tyler", "Tyrone", "Victor",
    "Vincent", "Walter", "Wayne", "Wesley", "Will", "Xavier", "Zach",
)  # fmt: skip

_LAST_NAMES = (
    "Adams", "Alexander", "Allen", "Alvarez", "Anderson", "Andrews", "Armstrong", "Arnold",
    "Bailey", "Baker", "Barnes", "Bell", "Bennett", "Bianchi", "Black", "Boyd", "Bradley",
    "Brooks", "Brown", "Bryant", "Burns", "Butler", "Campbell", "Carpenter", "Carroll",
    "Carter", "Castillo", "Castro", "Chavez", "Chen", "Clark", "Cole", "Coleman", "Collins",
    "Cook", "Cooper", "Cox", "Crawford", "Cruz", "Cunningham", "Daniels", "Delgado", "Diallo",
    "Diaz", "Dixon", "Duncan", "Dunn", "Dupont", "Edwards", "Elliott", "Ellis", "Evans",
    "Ferguson", "Fernandez", "Fisher", "Flores", "Ford", "Foster", "Fox", "Freeman",
    "Gardner", "Garza", "Gibson", "Gomez", "Gordon", "Graham", "Grant", "Gray", "Green",
    "Griffin", "Hall", "Hamilton", "Hansen", "Harris", "Harrison", "Hart", "Hawkins", "Hayes",
    "Henderson", "Henry", "Herrera", "Hicks", "Hill", "Hoffman", "Holmes", "Horvat",
    "Howard", "Hudson", "Hughes", "Hunt", "Hunter", "Jackson", "Jenkins", "Jimenez",
    "Johansson", "Johnson", "Johnston", "Jones", "Jovanovic", "Kaya", "Kelley", "Kelly",
    "Kennedy", "Kim", "King", "Knight", "Kovac", "Kowalski", "Lane", "Larsen", "Laurent",
    "Lawrence", "Lee", "Lewis", "Long", "Lopez", "Markovic", "Marshall", "Martin",
    "Martinez", "Mason", "Matthews", "McDonald", "Medina", "Mendez", "Meyer", "Miller",
    "Mills", "Mitchell", "Moore", "Morales", "Moreau", "Moreno", "Morgan", "Morris",
    "Muller", "Murphy", "Murray", "Myers", "Nelson", "Nichols", "Novak", "Nowak", "Okafor",
    "Okeke", "Olson", "Ortiz", "Owens", "Palmer", "Papadopoulos", "Parker", "Patterson",
    "Payne", "Perez", "Perkins", "Perry", "Peters", "Peterson", "Petrovic", "Phillips",
    "Pierce", "Porter", "Powell", "Price", "Ramirez", "Ramos", "Ray", "Reed", "Reyes",
    "Reynolds", "Rice", "Richards", "Richardson", "Riley", "Rivera", "Roberts", "Robertson",
    "Robinson", "Rogers", "Romero", "Rose", "Ross", "Rossi", "Ruiz", "Russell", "Ryan",
    "Salazar", "Sanders", "Santos", "Sato", "Schmidt", "Scott", "Shaw", "Silva", "Simmons",
    "Simpson", "Smith", "Snyder", "Spencer", "Stephens", "Stevens", "Stewart", "Stone",
    "Sullivan", "Tanaka", "Taylor", "Thomas", "Thompson", "Traore", "Tucker", "Turner",
    "Vargas", "Virtanen", "Wagner", "Walker", "Wallace", "Ward", "Warren", "Washington",
    "Watson", "Weaver", "Webb", "Wells", "West", "White", "Williams", "Willis", "Wilson",
    "Wood", "Woods", "Wright", "Yilmaz", "Young",
)  # fmt: skip
# Name suffixes as the real table writes them (no period); index 0 means none.
_SUFFIXES = ("", " Jr", " II", " III")
_SUFFIX_WEIGHTS = (0.982, 0.012, 0.003, 0.003)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def iter_player_blocks(rows: int, seed: int, block_rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """Yield ``rows`` synthetic players as DataFrames of at most ``block_rows`` rows.

    Columns follow :data:`HEADER`; ``rating`` and ``draft_year`` are integers, the rest are
    strings in the raw table's formats (empty string for a missing team or college).  The
    rows depend only on ``(rows, seed)``, not on ``block_rows``.
    """
    _check_counts(rows, block_rows)
    for numeric in _rebatch(_iter_chunks(rows, seed), block_rows):
        yield _format_block(numeric)


def write_synthetic_csv(path: str | Path, rows: int, seed: int) -> int:
    """Write ``rows`` synthetic players to ``path`` as CSV and return the rows written.

    The file has the real table's header, ``\\n`` line endings, UTF-8 and no index; it
    holds the same text as ``DataFrame.to_csv(index=False)`` of the blocks of
    :func:`iter_player_blocks`.  Memory stays bounded by one block.
    """
    _check_counts(rows, 1)
    written = 0
    with open(path, "wb") as handle:
        handle.write((",".join(HEADER) + "\n").encode("utf-8"))
        for block in iter_player_blocks(rows, seed):
            _write_block(block, handle)
            written += len(block)
    logger.info("wrote %d synthetic rows (seed %d) to %s", written, seed, path)
    return written


def sample_dataset_path() -> Path:
    """Path of the packaged sample, ``SAMPLE_ROWS`` rows generated with ``SAMPLE_SEED``."""
    resource = resources.files("nba_pipeline").joinpath("data", "sample_players.csv")
    return Path(str(resource))


# --------------------------------------------------------------------------------------
# Drawing numbers: each chunk is a dict of equal-length integer arrays
# --------------------------------------------------------------------------------------


def _check_counts(rows: int, block_rows: int) -> None:
    if not isinstance(rows, int | np.integer) or rows < 0:
        raise ValueError(f"rows must be a non-negative integer, got {rows!r}")
    if not isinstance(block_rows, int | np.integer) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")


def _iter_chunks(rows: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-size chunks, each drawn from the next child of the seeded generator."""
    root = np.random.default_rng(seed)
    for start in range(0, rows, _CHUNK_ROWS):
        (child,) = root.spawn(1)
        yield _draw_chunk(child, min(_CHUNK_ROWS, rows - start))


def _rebatch(
    chunks: Iterator[dict[str, np.ndarray]], block_rows: int
) -> Iterator[dict[str, np.ndarray]]:
    """Cut and join chunks into blocks of ``block_rows`` rows (the last may be shorter)."""
    pending: list[dict[str, np.ndarray]] = []
    pending_rows = 0
    for chunk in chunks:
        pending.append(chunk)
        pending_rows += _length(chunk)
        while pending_rows >= block_rows:
            block, rest = _split(_concat(pending), block_rows)
            yield block
            pending, pending_rows = [rest], _length(rest)
    if pending_rows:
        yield _concat(pending)


def _length(columns: dict[str, np.ndarray]) -> int:
    return len(columns["rating"])


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _split(
    columns: dict[str, np.ndarray], at: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    head = {key: values[:at] for key, values in columns.items()}
    tail = {key: values[at:] for key, values in columns.items()}
    return head, tail


def _draw_chunk(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """``size`` rows: new NBA2k20 players by falling rating, then their NBA2k21 repeats."""
    n_repeats = math.floor(size * _REPEAT_SHARE)
    players = _sort_by_rating(_draw_players(rng, size - n_repeats))
    repeats = _sort_by_rating(_draw_repeats(rng, players, n_repeats))
    return _concat([players, repeats])


def _sort_by_rating(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(-columns["rating"], kind="stable")
    return {key: values[order] for key, values in columns.items()}


def _draw_players(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Independent NBA2k20 players; later draws depend on rating and position."""
    rating = _draw_rating(rng, size)
    quality = (rating - _RATING_MEAN) / _RATING_SD
    position = _choice(rng, [row[1] for row in _POSITIONS], size)
    height = _draw_height(rng, position)
    country = _choice(rng, [weight for _, weight in _COUNTRIES], size)
    draft_year = _LAST_DRAFT - _draw_experience(rng, quality)
    draft_round, draft_peak = _draw_draft(rng, quality)
    return {
        "name": _draw_name(rng, size),
        "rating": rating,
        "jersey": _draw_jersey(rng, size),
        "team": _draw_team(rng, quality),
        "position": position,
        "b_day": _draw_birthday(rng, draft_year),
        "height": height,
        "weight": _draw_weight(rng, position, height),
        "salary": _draw_salary(rng, rating, draft_year),
        "country": country,
        "draft_year": draft_year,
        "draft_round": draft_round,
        "draft_peak": draft_peak,
        "college": _draw_college(rng, country),
        "version": np.full(size, 20, dtype=np.int64),
    }


def _choice(rng: np.random.Generator, weights, size: int) -> np.ndarray:
    """Indices drawn with probability proportional to ``weights``."""
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=size, p=p / p.sum())


def _draw_rating(rng: np.random.Generator, size: int) -> np.ndarray:
    return _RATING_MIN + _choice(rng, _RATING_WEIGHTS, size)


def _draw_name(rng: np.random.Generator, size: int) -> np.ndarray:
    """Index into first x last x suffix; distinct first/last pairs while the pool allows."""
    pairs = len(_FIRST_NAMES) * len(_LAST_NAMES)
    # Distinct pairs keep the small sample free of name clashes between different players.
    pair = rng.choice(pairs, size=size, replace=size > pairs // 4)
    suffix = _choice(rng, _SUFFIX_WEIGHTS, size)
    return pair * len(_SUFFIXES) + suffix


def _draw_jersey(rng: np.random.Generator, size: int) -> np.ndarray:
    # #0 is by far the most common number in the real table; the rest fall off with size.
    numbers = np.arange(100)
    weights = np.exp(-numbers / 18.0)
    weights[0] = 0.18 * weights[1:].sum() / 0.82
    return _choice(rng, weights, size)


def _draw_team(rng: np.random.Generator, quality: np.ndarray) -> np.ndarray:
    """0 for no team (about 5%, mostly weak players), else 1..30."""
    no_team = rng.random(len(quality)) < _expit(-3.2 - 1.0 * quality)
    team = rng.integers(1, len(TEAMS) + 1, size=len(quality))
    return np.where(no_team, 0, team)


def _draw_height(rng: np.random.Generator, position: np.ndarray) -> np.ndarray:
    mean = np.array([row[2] for row in _POSITIONS])[position]
    sd = np.array([row[3] for row in _POSITIONS])[position]
    inches = np.rint(rng.normal(mean, sd))
    return np.clip(inches, *_HEIGHT_RANGE_IN).astype(np.int64)


def _draw_weight(rng: np.random.Generator, position: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Pounds: the position's mean, plus a slope on height above the position's mean."""
    mean_height = np.array([row[2] for row in _POSITIONS])[position]
    mean_weight = np.array([row[4] for row in _POSITIONS])[position]
    pounds = mean_weight + _LBS_PER_INCH * (height - mean_height)
    pounds = np.rint(pounds + rng.normal(0.0, _WEIGHT_NOISE_LB, len(position)))
    return np.clip(pounds, *_WEIGHT_RANGE_LB).astype(np.int64)


def _draw_experience(rng: np.random.Generator, quality: np.ndarray) -> np.ndarray:
    """Years since the draft: most players are young, the best ones tend to be veterans."""
    years = rng.gamma(1.8, 2.8, len(quality)) + 1.7 * quality
    return np.clip(np.floor(years), 0, 18).astype(np.int64)


def _draw_draft(rng: np.random.Generator, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round (0 = undrafted, 1, 2) and pick; better players went earlier in the draft."""
    size = len(quality)
    latent = 1.2 * quality + rng.logistic(size=size)
    draft_round = np.where(latent > -0.65, 1, np.where(latent > -2.2, 2, 0))
    # Picks lean early, more so for good players and in the second round, whose late picks
    # rarely make a roster.
    early = np.where(draft_round == 2, 1.0, 0.25) + 0.8 * quality
    within = _expit(rng.logistic(size=size) - early)
    pick = 1 + np.minimum(np.floor(30 * within), 29).astype(np.int64)
    pick = np.where(draft_round == 2, pick + 30, pick)
    return draft_round.astype(np.int64), np.where(draft_round == 0, 0, pick)


def _draw_birthday(rng: np.random.Generator, draft_year: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a birthday 19 to 24 years before the draft."""
    age = 19 + _choice(rng, _DRAFT_AGE_WEIGHTS, len(draft_year))
    year = np.clip(draft_year - age, *_BIRTH_YEAR_RANGE)
    first_day = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return first_day.astype(np.int64) + rng.integers(0, 365, len(draft_year))


def _draw_salary(
    rng: np.random.Generator, rating: np.ndarray, draft_year: np.ndarray
) -> np.ndarray:
    """Dollars: log-normal around a curve that rises steeply with rating, then levels off.

    Rookie-scale contracts keep recent draftees cheaper than veterans of the same rating.
    """
    experience = np.minimum(_LAST_DRAFT - draft_year, 8)
    log_median = 17.6 - 3.45 * np.exp(-(rating - 70) / 11.0) + 0.14 * (experience - 4)
    log_dollars = _soft_cap(log_median + rng.normal(0.0, 0.7, len(rating)))
    return np.clip(np.rint(np.exp(log_dollars)), _MIN_SALARY, _MAX_SALARY).astype(np.int64)


def _soft_cap(log_dollars: np.ndarray) -> np.ndarray:
    """Bend log salaries smoothly under the maximum, like max contracts, instead of piling
    the stars' draws up at one clipped value."""
    ceiling, softness = math.log(_MAX_SALARY), _SALARY_CAP_SOFTNESS
    return ceiling - softness * np.logaddexp(0.0, (ceiling - log_dollars) / softness)


def _uncap(log_dollars: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_soft_cap` for salaries below the maximum."""
    ceiling, softness = math.log(_MAX_SALARY), _SALARY_CAP_SOFTNESS
    gap = np.maximum((ceiling - log_dollars) / softness, 1e-9)
    return ceiling - softness * np.log(np.expm1(gap))


def _draw_college(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    """0 for none, else 1 + index into the college list."""
    p_none = np.where(country == 0, _NO_COLLEGE_USA, _NO_COLLEGE_ABROAD)
    none = rng.random(len(country)) < p_none
    college = 1 + _choice(rng, 1.0 / (np.arange(len(_COLLEGES)) + 3.0), len(country))
    return np.where(none, 0, college)


def _draw_repeats(
    rng: np.random.Generator, players: dict[str, np.ndarray], size: int
) -> dict[str, np.ndarray]:
    """NBA2k21 copies of ``size`` players, mostly stars, with a new rating and salary."""
    rating = players["rating"]
    weights = np.exp(0.35 * (rating - rating.max()))
    chosen = rng.choice(len(rating), size=size, replace=False, p=weights / weights.sum())
    repeats = {key: values[chosen] for key, values in players.items()}
    change = rng.choice(np.array([-1, 0, 1, 2]), size=size, p=[0.2, 0.35, 0.3, 0.15])
    repeats["rating"] = np.clip(repeats["rating"] + change, _RATING_MIN, 97)
    # The raise applies before the soft cap, so stars near the maximum are not cut.
    log_raised = _uncap(np.log(repeats["salary"])) + rng.normal(0.15, 0.12, size)
    salary = np.rint(np.exp(_soft_cap(log_raised)))
    repeats["salary"] = np.clip(salary, _MIN_SALARY, _MAX_SALARY).astype(np.int64)
    moved = rng.random(size) < 0.15
    repeats["team"] = np.where(moved, rng.integers(1, len(TEAMS) + 1, size), repeats["team"])
    renumbered = rng.random(size) < 0.1
    repeats["jersey"] = np.where(renumbered, rng.integers(0, 100, size), repeats["jersey"])
    repeats["version"] = np.full(size, 21, dtype=np.int64)
    return repeats


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------------------
# Formatting: every text column is a lookup into a small table of ready-made strings
# --------------------------------------------------------------------------------------


def _format_block(numeric: dict[str, np.ndarray]) -> pd.DataFrame:
    """The raw table's columns, as strings (and two integer columns), from drawn numbers."""
    tables = _lookup_tables()
    text = {
        "full_name": tables["full_name"][numeric["name"]],
        "rating": numeric["rating"].astype(np.int64),
        "jersey": tables["jersey"][numeric["jersey"]],
        "team": tables["team"][numeric["team"]],
        "position": tables["position"][numeric["position"]],
        "b_day": tables["b_day"][numeric["b_day"] - tables["b_day_origin"]],
        "height": tables["height"][numeric["height"]],
        "weight": tables["weight"][numeric["weight"]],
        "salary": _format_salary(numeric["salary"]),
        "country": tables["country"][numeric["country"]],
        "draft_year": numeric["draft_year"].astype(np.int64),
        "draft_round": tables["draft_round"][numeric["draft_round"]],
        "draft_peak": tables["draft_peak"][numeric["draft_peak"]],
        "college": tables["college"][numeric["college"]],
        "version": tables["version"][numeric["version"] - 20],
    }
    return pd.DataFrame({key: _as_column(values) for key, values in text.items()})


def _as_column(values: np.ndarray) -> pd.Series:
    """Text stays plain Python strings (object dtype): pandas' str conversion costs time."""
    if values.dtype.kind in "iu":
        return pd.Series(values, copy=False)
    return pd.Series(values, dtype=object, copy=False)


def _format_salary(salary: np.ndarray) -> np.ndarray:
    digits = salary.astype(f"U{len(str(_MAX_SALARY))}")
    return np.char.add("$", digits).astype(object)


@functools.cache
def _lookup_tables() -> dict:
    """String tables indexed by the drawn integers, built once per process."""
    origin, birthdays = _birthday_table()
    return {
        "full_name": _name_table(),
        "jersey": np.array([f"#{number}" for number in range(100)], dtype=object),
        "team": np.array(("", *TEAMS), dtype=object),
        "position": np.array([row[0] for row in _POSITIONS], dtype=object),
        "b_day": birthdays,
        "b_day_origin": origin,
        "height": np.array([_height_text(i) for i in range(_HEIGHT_RANGE_IN[1] + 1)], object),
        "weight": np.array([_weight_text(lb) for lb in range(_WEIGHT_RANGE_LB[1] + 1)], object),
        "country": np.array([name for name, _ in _COUNTRIES], dtype=object),
        "draft_round": np.array(["Undrafted", "1", "2"], dtype=object),
        "draft_peak": np.array(["Undrafted", *map(str, range(1, 61))], dtype=object),
        "college": np.array(("", *_COLLEGES), dtype=object),
        "version": np.array(["NBA2k20", "NBA2k21"], dtype=object),
    }


def _name_table() -> np.ndarray:
    """Every first x last x suffix combination, in the index order ``_draw_name`` uses."""
    return np.array(
        [
            f"{first} {last}{suffix}"
            for first in _FIRST_NAMES
            for last in _LAST_NAMES
            for suffix in _SUFFIXES
        ],
        dtype=object,
    )


def _birthday_table() -> tuple[int, np.ndarray]:
    """'MM/DD/YY' for every day of the birth-year range, and the first day's number."""
    days = pd.date_range(f"{_BIRTH_YEAR_RANGE[0]}-01-01", f"{_BIRTH_YEAR_RANGE[1]}-12-31")
    origin = int(days[0].to_datetime64().astype("datetime64[D]").astype(np.int64))
    return origin, days.strftime("%m/%d/%y").to_numpy(dtype=object)


def _height_text(inches: int) -> str:
    """'6-9 / 2.06': metres rounded half up in integer arithmetic, as the real table has
    '6-3 / 1.91' for 1.905 m where float rounding would give 1.90."""
    centimetres = (inches * 254 + 50) // 100
    return f"{inches // 12}-{inches % 12} / {centimetres // 100}.{centimetres % 100:02d}"


def _weight_text(pounds: int) -> str:
    """'250 lbs. / 113.4 kg.' with kilograms rounded half up, like the heights.

    A whole number of kilograms loses its '.0' ('205 lbs. / 93 kg.'), as in the real table.
    """
    tenths = (pounds * 45_359_237 + 5_000_000) // 10_000_000
    kilograms = f"{tenths // 10}" if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}"
    return f"{pounds} lbs. / {kilograms} kg."


def _write_block(block: pd.DataFrame, handle) -> None:
    """Append one block without header.

    pyarrow's writer is about ten times faster than ``DataFrame.to_csv``; no value contains
    a comma, quote or newline (the tests check the vocabularies), so unquoted output is the
    same text ``to_csv`` would write.
    """
    table = pa.Table.from_pandas(block, preserve_index=False)
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    pa_csv.write_csv(table, handle, write_options=options)
