"""Per-column Apache DataSketches profiles of a baseline (KLL quantiles, frequent items) and the PSI bins they give."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pandas as pd

KLL_K = 200  # normalized rank error ~1.3%
FREQUENT_LG_MAX_K = 10  # up to 768 tracked categories; counts are exact below that


class ProfileBuilder:
    """Per-column DataSketches profiles, updated one day at a time."""

    def __init__(self, kinds: dict[str, str]):
        from datasketches import frequent_strings_sketch, kll_doubles_sketch

        self.kinds = dict(kinds)
        self.rows = 0
        self.missing = dict.fromkeys(kinds, 0)
        self.kll = {c: kll_doubles_sketch(KLL_K) for c, k in kinds.items() if k == "numerical"}
        self.frequent = {c: frequent_strings_sketch(FREQUENT_LG_MAX_K) for c, k in kinds.items() if k == "categorical"}

    def update(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        for column in self.kinds:
            values = frame[column]
            self.missing[column] += int(values.isna().sum())
            if column in self.kll:
                present = values.dropna().to_numpy(dtype=float)
                if present.size:
                    self.kll[column].update(present)
            else:
                for value, count in values.dropna().astype(str).value_counts().items():
                    self.frequent[column].update(str(value), int(count))

    def to_json(self) -> dict[str, Any]:
        from datasketches import frequent_items_error_type

        out: dict[str, Any] = {}
        for column, kind in self.kinds.items():
            entry: dict[str, Any] = {"kind": kind, "rows": self.rows, "missing": self.missing[column]}
            if kind == "numerical":
                sketch = self.kll[column]
                entry["count"] = int(sketch.n)
                if not sketch.is_empty():
                    ranks = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
                    entry["quantiles"] = dict(zip([f"p{int(r * 100):02d}" for r in ranks], sketch.get_quantiles(ranks)))
                    entry["min"], entry["max"] = sketch.get_min_value(), sketch.get_max_value()
                entry["kll"] = base64.b64encode(sketch.serialize()).decode()
            else:
                sketch = self.frequent[column]
                items = sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES)
                entry["count"] = int(sketch.total_weight)
                entry["frequent"] = {item: int(estimate) for item, estimate, _lo, _hi in items}
                entry["frequent_items"] = base64.b64encode(sketch.serialize()).decode()
            out[column] = entry
        return out


def kll_sketch(profile: dict[str, Any]):
    """The KLL sketch of a numerical column profile."""
    from datasketches import kll_doubles_sketch

    return kll_doubles_sketch.deserialize(base64.b64decode(profile["kll"]))


def psi_bins_from_profile(profile: dict[str, Any], bins: int = 10) -> tuple[np.ndarray, np.ndarray] | None:
    """PSI bin edges (deciles) and reference counts over the whole window, from the column's KLL sketch."""
    sketch = kll_sketch(profile)
    if sketch.is_empty():
        return None
    edges = np.unique(np.asarray(sketch.get_quantiles(list(np.linspace(0, 1, bins + 1)[1:-1]))))
    pmf = np.asarray(sketch.get_pmf(list(edges), inclusive=True))  # bins (-inf, e1], (e1, e2], ... like binned_counts
    return edges, np.rint(pmf * sketch.n)
