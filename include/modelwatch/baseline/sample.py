"""The bottom-k sample of a baseline: the k rows with the smallest request-id hashes, mergeable across days in any order."""

from __future__ import annotations

import numpy as np
import pandas as pd

SAMPLE_KEY = "_sample_key"


def sample_keys(request_ids: pd.Series) -> np.ndarray:
    """64-bit hash keys of request ids (pandas' SipHash with its fixed default key: stable across runs)."""
    return pd.util.hash_pandas_object(request_ids.astype(str), index=False).to_numpy(dtype=np.uint64)


def bottom_k(sample: pd.DataFrame | None, rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """Merge ``rows`` into a bottom-k sample: the k rows with the smallest sample keys."""
    merged = rows if sample is None else pd.concat([sample, rows], ignore_index=True)
    return merged.nsmallest(k, SAMPLE_KEY).reset_index(drop=True) if len(merged) > k else merged
