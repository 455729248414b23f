"""The bottom-k sample of a baseline: the k rows with the smallest request-id hashes, mergeable across days in any order."""

from __future__ import annotations

import pandas as pd

from modelwatch.summaries import SAMPLE_KEY, sample_keys

__all__ = ["SAMPLE_KEY", "bottom_k", "sample_keys"]


def bottom_k(sample: pd.DataFrame | None, rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """Merge ``rows`` into a bottom-k sample: the k rows with the smallest sample keys."""
    merged = rows if sample is None else pd.concat([sample, rows], ignore_index=True)
    return merged.nsmallest(k, SAMPLE_KEY).reset_index(drop=True) if len(merged) > k else merged
