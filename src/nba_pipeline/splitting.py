"""The train / held-out split, decided per player by a seeded hash of the name.

Hashing the name rather than drawing random numbers row by row gives the same split in
batch, in streaming and under any chunking, and keeps a player's NBA2k20 and NBA2k21 rows
on the same side, so no player is both trained on and tested on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_SCALE = float(1 << 64)
# Above this many rows, names are hashed once per distinct value.
_DISTINCT_FIRST_ROWS = 2_048


def player_buckets(names: pa.Array, seed: int) -> np.ndarray:
    """A number in [0, 1) per row, fixed by the player's name and the seed.

    Names are compared case-insensitively with runs of whitespace collapsed.  pandas' keyed
    SipHash is vectorised and stable across platforms; the seed is its key, so another
    seed gives an unrelated split.
    """
    if not isinstance(names, (pa.Array, pa.ChunkedArray)):
        names = pa.array(names, type=pa.string())
    if len(names) > _DISTINCT_FIRST_ROWS and not names.null_count:
        # A large table repeats names (a player's two seasons, common names): normalise and
        # hash each distinct name once, then spread the hashes back to the rows.
        if isinstance(names, pa.ChunkedArray):
            names = names.combine_chunks()
        encoded = pc.dictionary_encode(names)
        return _buckets(encoded.dictionary, seed)[encoded.indices.to_numpy()]
    return _buckets(names, seed)


def _buckets(names: pa.Array, seed: int) -> np.ndarray:
    collapsed = pc.replace_substring_regex(pc.utf8_trim_whitespace(names), r"\s+", " ")
    normalised = pc.utf8_lower(collapsed).to_numpy(zero_copy_only=False).astype(object)
    key = f"{seed:016d}"[-16:]
    hashes = pd.util.hash_array(normalised, hash_key=key, categorize=False)
    return hashes.astype(np.uint64) / _SCALE


def is_training_row(names: pa.Array, seed: int, test_fraction: float) -> np.ndarray:
    """True for rows that train the models, False for held-out rows."""
    return player_buckets(names, seed) >= test_fraction
