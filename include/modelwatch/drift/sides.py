"""The two sides of a drift test, read the same way whether they are rows in memory or a day's merged summary.

A side answers what the tests need: its row count, a column's exact category counts, a column's
numbers, its segment values (each a side of its own) and the rows its texts are drawn from.
``FrameSide`` is a frame of drift columns (the baseline's reference sample, or a frame in a test);
``SummarySide`` is a day's ``drift.summary.DriftSummary``: exact counts, and the numbers of its
bottom-k sample (every row on a day of at most ``defaults.summary_sample_rows`` incumbent rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from modelwatch.drift.univariate import category_counts

if TYPE_CHECKING:
    from modelwatch.drift.summary import DriftSummary


class Side(Protocol):
    def __len__(self) -> int: ...

    def category_counts(self, column: str) -> dict[str, int]: ...

    def numbers(self, column: str) -> np.ndarray: ...

    def groups(self, key: str) -> dict[str, Side]: ...

    def text_rows(self, column: str) -> pd.DataFrame: ...


class FrameSide:
    """A frame of drift columns: counts, numbers and segments computed from its rows."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def __len__(self) -> int:
        return len(self.frame)

    def category_counts(self, column: str) -> dict[str, int]:
        return category_counts(self.frame[column])

    def numbers(self, column: str) -> np.ndarray:
        return self.frame[column].to_numpy(dtype=float)

    def groups(self, key: str) -> dict[str, FrameSide]:
        if key not in self.frame:
            return {}
        return {str(value): FrameSide(rows) for value, rows in self.frame.groupby(key, dropna=True)}

    def text_rows(self, column: str) -> pd.DataFrame:
        return self.frame


class SummarySide:
    """A day's merged drift summary, whole or within one segment value (``key`` = ``segment``)."""

    def __init__(self, summary: DriftSummary, key: str = "", segment: str = "", rows: int | None = None):
        self.summary, self.key, self.segment = summary, key, segment
        self._rows = summary.row_count if rows is None else rows
        self._sample: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self._rows

    def category_counts(self, column: str) -> dict[str, int]:
        return self.summary.category_counts(column, self.key, self.segment)

    def numbers(self, column: str) -> np.ndarray:
        """The column's numbers in the bottom-k sample (of this segment value): all of them when the day is no larger than k."""
        if self._sample is None:
            sample = self.summary.sample_frame()
            self._sample = sample[sample[self.key] == self.segment] if self.key else sample
        return self._sample[column].to_numpy(dtype=float)

    def groups(self, key: str) -> dict[str, SummarySide]:
        return {value: SummarySide(self.summary, key, value, n) for value, n in sorted(self.summary.segment_rows(key).items())}

    def text_rows(self, column: str) -> pd.DataFrame:
        """The sampled non-empty texts of ``column`` (``drift.embedding_sample`` of the day, ``drift.segment_embedding_rows`` of a segment)."""
        return self.summary.text_frame(column, self.key or None, self.segment or None)


def as_side(side: Side | pd.DataFrame) -> Side:
    return FrameSide(side) if isinstance(side, pd.DataFrame) else side


def bottom_k_texts(frame: pd.DataFrame, column: str, n: int) -> list[str]:
    """The ``n`` non-empty texts of ``column`` with the smallest request-id hashes (``summaries.sample_keys``): the inclusion
    rule of every embedding sample (the baseline's, the day's and a segment's), so a request's text is in or out whichever
    task draws it."""
    from modelwatch.summaries import sample_keys

    present = frame[column].notna().to_numpy()
    rows = frame[present]
    texts = pd.Series(rows[column].tolist(), dtype="object")
    keep = texts.map(lambda t: isinstance(t, str) and bool(t.strip())).to_numpy()
    if not keep.any():
        return []
    texts, keys = texts[keep], sample_keys(rows["request_id"].to_numpy()[keep])
    order = np.argsort(keys, kind="stable")[:n]
    return texts.iloc[order].tolist()
