"""Traffic of a team whose router is not modelwatch's, for the experiment tests.

A travel-booking assistant's router: it assigns accounts (``metadata.account.uid``, several
requests each), not requests, with MD5 of ``"<uid>|<experiment>"``, the first 32 bits, 100
buckets, arms ``baseline`` then ``candidate``. Its field names and ids are unlike the demo
generator's (``bk-`` request ids, ``acct-`` accounts, a ``booking`` field modelwatch does not
know, so it lands in ``extra``). ``external=True`` instead routes like a feature-flag product
whose split cannot be reproduced: each account's arm is a seeded draw with the given shares.
The frame has the valid rows' columns the experiments stage reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

ARMS = ("baseline", "candidate")


@dataclass(frozen=True)
class TeamRouter:
    """The team's own hash: md5("<uid>|<experiment>"), first 32 bits, modulo 100, ``baseline`` on the low buckets."""

    experiment_id: str
    shares: tuple[float, float] = (0.5, 0.5)

    def arm(self, uid: str) -> str:
        digest = hashlib.md5(f"{uid}|{self.experiment_id}".encode()).digest()
        bucket = int.from_bytes(digest[:4], "big") % 100
        return ARMS[0] if bucket < round(self.shares[0] * 100) else ARMS[1]

    def declaration(self) -> dict:
        """The ``assignment:`` block that describes this router to modelwatch."""
        return {"method": "hash", "unit": "metadata.account.uid", "algorithm": "md5", "salt": "{unit}|{experiment_id}", "bits": 32,
                "buckets": 100, "order": list(ARMS)}


def team_day(day: date, router: TeamRouter, *, accounts: int = 2000, requests_per_account: int = 3, external: bool = False,
             slow_candidate: float = 0.0, candidate_quality: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """One day of the team's valid rows for ``router``'s experiment.

    ``slow_candidate``: share of the candidate's requests that take 4-9 s more (a p99 regression);
    ``candidate_quality``: added to the candidate's quality score. Accounts keep their ids across
    days (``acct-0`` ... ``acct-<accounts-1>``), as returning users do.
    """
    rng = np.random.default_rng([seed, day.toordinal()])
    uids = [f"acct-{k}" for k in range(accounts)]
    if external:  # a feature-flag product: a sticky per-account draw the tests cannot recompute
        sticky = np.random.default_rng([seed, 7]).random(accounts)
        arm_of = {u: ARMS[0] if x < router.shares[0] else ARMS[1] for u, x in zip(uids, sticky)}
    else:
        arm_of = {u: router.arm(u) for u in uids}
    per_account = rng.poisson(requests_per_account - 1, accounts) + 1
    owners = np.repeat(uids, per_account)
    n = owners.size
    variant = np.array([arm_of[u] for u in owners])
    latency = rng.lognormal(np.log(700), 0.3, n)
    slow = (variant == ARMS[1]) & (rng.random(n) < slow_candidate)
    latency[slow] += rng.uniform(4000, 9000, slow.sum())
    quality = rng.normal(0.72, 0.1, n) + np.where(variant == ARMS[1], candidate_quality, 0.0)
    return pd.DataFrame({
        "request_id": [f"bk-{day:%Y%m%d}-{i:06d}" for i in range(n)],
        "experiment_id": router.experiment_id,
        "variant": variant,
        "status": np.where(rng.random(n) < 0.01, "error", "ok"),
        "latency_ms": latency,
        "prompt_tokens": rng.integers(20, 400, n).astype(float),
        "completion_tokens": rng.integers(20, 300, n).astype(float),
        "cost_usd": rng.random(n) / 500,
        "quality_score": quality,
        "feedback": rng.choice([-1.0, 1.0, np.nan], size=n, p=[0.03, 0.1, 0.87]),
        "metadata": [json.dumps({"account": {"uid": u, "tier": "gold"}, "locale": "de-AT"}) for u in owners],
        "features": None,
        "extra": [json.dumps({"booking": {"ref": f"PNR{i:05d}", "traveller": u}}) for i, u in enumerate(owners)],
    })
