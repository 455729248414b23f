"""NannyML's CBPE alerts on the benchmark's days, run inside the bench's own environment (``bench/.venv-nannyml``).

``python bench/nannyml_cbpe.py REFERENCE.parquet ANALYSIS.parquet CHUNK_SIZE OUT.json``: the reference has the
positive-class score ``p``, the prediction ``pred`` (0/1) and the label ``y``; the analysis holds the days back to
back, ``CHUNK_SIZE`` rows each, so each day is one NannyML chunk. OUT gets, per metric, each day's alert and its
thresholds (NannyML's default: mean ± 3 sd of the realised metric over reference chunks of ``CHUNK_SIZE`` rows).
This file imports only NannyML's stack and never modelwatch.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings

METRICS = ("accuracy", "f1", "roc_auc")


def _plain(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def main(reference_path: str, analysis_path: str, chunk_size: str, out: str) -> int:
    os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # no usage analytics leave the machine
    warnings.filterwarnings("ignore")
    import nannyml
    import pandas as pd

    reference, analysis = pd.read_parquet(reference_path), pd.read_parquet(analysis_path)
    estimator = nannyml.CBPE(y_pred_proba="p", y_pred="pred", y_true="y", metrics=list(METRICS), chunk_size=int(chunk_size),
                             problem_type="classification_binary")
    estimator.fit(reference)
    table = estimator.estimate(analysis).filter(period="analysis").to_df()
    result = {"version": nannyml.__version__}
    for metric in METRICS:
        result[metric] = {"alert": [bool(v) for v in table[(metric, "alert")]],
                          "lower": [_plain(v) for v in table[(metric, "lower_threshold")]],
                          "upper": [_plain(v) for v in table[(metric, "upper_threshold")]],
                          "estimate": [_plain(v) for v in table[(metric, "value")]]}
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
