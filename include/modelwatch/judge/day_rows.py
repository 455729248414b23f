"""The rows the judge stage draws from: the day's merged judge summary (``judge.summary``), exact or bounded.

One interface for both states, so the stage decides the same way on either:

- exact (a day of at most ``defaults.summary_sample_rows`` rows with a response): the day's rows
  themselves, in the order the stage read them before it merged summaries, sampled exactly as
  then (``sampling.stratified_sample`` with the day's seed; the reference rows and shadow pairs a
  seeded uniform draw): the same sample, estimates, judge.parquet and review queue;
- bounded: each stratum's exact size and bottom-k candidates (``sampling.stratified_sample_from_candidates``:
  the same allocation, each stratum's first ``n_h`` candidates, inclusion probability ``n_h / N_h``);
  the reference rows the first of the summary's bottom-k with a reference; the shadow pairs the
  summary's sampled shadow rows whose served answer is in its served sample, in hash order.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.judge.sampling import SampleResult, add_length_band, stratified_sample, stratified_sample_from_candidates
from modelwatch.judge.summary import SHADOW, SHADOW_OF, JudgeSummary


class DayRows:
    """What the judge samples today, from the merged ``JudgeSummary``."""

    def __init__(self, summary: JudgeSummary):
        self.summary = summary
        self.exact = summary.exact
        self.frame = add_length_band(summary.rows().to_pandas()) if self.exact else None
        self._candidates: list[tuple[tuple[str, ...], int, pd.DataFrame]] | None = None

    @property
    def population(self) -> int:
        """Rows with a response today (exact in both states)."""
        return self.summary.seen

    def candidates(self) -> list[tuple[tuple[str, ...], int, pd.DataFrame]]:
        """Bounded: per stratum (values, exact size, candidate rows in hash order, with ``length_band``)."""
        if self._candidates is None:
            self._candidates = [(values, sample.seen, add_length_band(sample.rows.to_pandas()))
                                for values, sample in sorted(self.summary.strata.items()) if sample.rows is not None]
        return self._candidates

    def median_answer(self) -> tuple[str, str] | None:
        """(prompt, response) of the day's median answer by length (prompt + response characters), to price a judge call.

        Exact: the day's median row. Bounded: the weighted median of the strata's candidates,
        each weighing ``N_h / kept_h`` (a consistent estimate of the day's median).
        """
        if self.exact:
            rows = self.frame
            if rows.empty:
                return None
            lengths = (rows["prompt"].str.len() + rows["response"].str.len()).sort_values()
            median = rows.loc[lengths.index[len(lengths) // 2]]
            return str(median["prompt"]), str(median["response"])
        parts = [(rows, size / len(rows)) for _, size, rows in self.candidates() if len(rows)]
        if not parts:
            return None
        rows = pd.concat([r[["prompt", "response"]] for r, _ in parts], ignore_index=True)
        weights = np.concatenate([np.full(len(r), w) for r, w in parts])
        order = np.argsort((rows["prompt"].str.len() + rows["response"].str.len()).to_numpy(), kind="stable")
        cumulative = np.cumsum(weights[order])
        median = rows.iloc[order[int(np.searchsorted(cumulative, cumulative[-1] / 2))]]
        return str(median["prompt"]), str(median["response"])

    def sample(self, n: int, settings, seed: int) -> SampleResult:
        """The judge's stratified sample of ``n`` rows (``settings``: the model's ``JudgeSettings``)."""
        options = {"min_per_stratum": settings.min_per_stratum, "oversample": dict(settings.oversample), "seed": seed}
        if self.exact:
            return stratified_sample(self.frame, list(settings.stratify_by), n, **options)
        return stratified_sample_from_candidates(self.candidates(), list(settings.stratify_by), n, **options)

    def reference_rows(self, limit: int, seed: int) -> pd.DataFrame:
        """At most ``limit`` rows with a reference: a seeded uniform draw (exact), the summary's bottom-``limit`` (bounded)."""
        if self.exact:
            with_reference = self.frame[self.frame["reference"].notna()]
            if len(with_reference) > limit:
                with_reference = with_reference.sample(n=limit, random_state=seed).sort_index()
            return with_reference
        rows = self.summary.references.rows
        return pd.DataFrame(columns=["request_id", "variant", "response", "reference"]) if rows is None else rows.to_pandas().head(limit)

    def shadow_pairs(self, limit: int, seed: int) -> tuple[list[Any], dict[str, Any]]:
        """Up to ``limit`` (shadow answer, served answer) pairs and what they were drawn from; no pairs: a ``reason``."""
        return self._exact_pairs(limit, seed) if self.exact else self._bounded_pairs(limit)

    def _exact_pairs(self, limit: int, seed: int) -> tuple[list[Any], dict[str, Any]]:
        from modelwatch.judge.pairwise import PairItem

        rows = self.frame
        shadow = rows[rows["variant"] == SHADOW]
        if shadow.empty:
            return [], {"reason": "no shadow traffic today"}
        served = rows.set_index("request_id")
        pairs = []
        for r in shadow.itertuples():
            original = json.loads(r.metadata).get(SHADOW_OF) if isinstance(r.metadata, str) else None
            if original in served.index:
                base = served.loc[original]
                pairs.append(PairItem(r.request_id, r.prompt, base["response"], r.response, _text(r.reference), label_a="served", label_b="shadow"))
        if not pairs:
            return [], {"reason": f"{len(shadow)} shadow rows, none naming a served request of the day in metadata.{SHADOW_OF}"}
        return random.Random(seed).sample(pairs, min(limit, len(pairs))), {"available_pairs": len(pairs)}

    def _bounded_pairs(self, limit: int) -> tuple[list[Any], dict[str, Any]]:
        from modelwatch.judge.pairwise import PairItem

        summary = self.summary
        if not summary.shadow_rows:
            return [], {"reason": "no shadow traffic today"}
        shadow, served = summary.shadow.rows, summary.served.rows
        answers = {} if served is None else dict(zip(served["request_id"].to_pylist(), served["response"].to_pylist()))
        pairs = [PairItem(r["shadow_id"], r["prompt"], answers[r["request_id"]], r["response"], _text(r["reference"]), label_a="served", label_b="shadow")
                 for r in ([] if shadow is None else shadow.to_pylist()) if r["request_id"] in answers]
        drawn = {"shadow_rows": summary.shadow_rows, "shadow_rows_sampled": 0 if shadow is None else shadow.num_rows,
                 "served_rows": summary.served.seen, "served_rows_kept": 0 if served is None else served.num_rows}
        if not pairs:
            return [], {"reason": f"{summary.shadow_rows} shadow rows, none of the {drawn['shadow_rows_sampled']} sampled naming a served request "
                                  f"in the day's served sample (metadata.{SHADOW_OF})", "sampled_from": drawn}
        return pairs[:limit], {"available_pairs": len(pairs), "sampled_from": drawn}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def judge_items(rows: pd.DataFrame) -> Sequence[Any]:
    """The sample's rows as judge calls."""
    from modelwatch.judge.calls import JudgeItem

    return [JudgeItem(r.request_id, r.prompt, r.response, _text(r.reference)) for r in rows.itertuples()]
