"""Hard limits: thresholds on an experiment arm's metrics that trigger an immediate rollback.

A hard limit (``error_rate max 0.02``) is checked on the treatment arm of each
experiment for the partition. It abstains, with the reason recorded, when the arm
has fewer requests than ``min_requests``: a 1-in-20 error on twenty requests is not
evidence. The statistically tested guardrails (non-inferiority with a margin) belong
to the experiments module; hard limits are the blunt, immediate backstop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from modelwatch.config import Model
from modelwatch.profile.metrics import lookup


@dataclass(frozen=True)
class LimitCheck:
    model_id: str
    experiment_id: str
    arm: str
    metric: str
    value: float | None
    requests: int
    max: float | None
    min: float | None
    state: str  # "ok" | "breach" | "abstain"
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_hard_limits(model: Model, metrics: pd.DataFrame) -> list[LimitCheck]:
    """Evaluate every hard limit of every experiment of ``model`` on its treatment arm."""
    checks = []
    for exp in model.experiments:
        for limit in exp.hard_limits:
            cell = lookup(metrics, limit.metric, variant=exp.treatment)
            base = dict(model_id=model.id, experiment_id=exp.id, arm=exp.treatment, metric=limit.metric, max=limit.max, min=limit.min)
            if cell is None:
                checks.append(LimitCheck(**base, value=None, requests=0, state="abstain", reason=f"no {exp.treatment} traffic with {limit.metric} in this partition"))
                continue
            value, n = cell
            if n < limit.min_requests:
                checks.append(LimitCheck(**base, value=value, requests=n, state="abstain", reason=f"{n} requests < min_requests {limit.min_requests}"))
            elif (limit.max is not None and value > limit.max) or (limit.min is not None and value < limit.min):
                bound = f"> max {limit.max}" if limit.max is not None and value > limit.max else f"< min {limit.min}"
                checks.append(LimitCheck(**base, value=value, requests=n, state="breach", reason=f"{limit.metric} = {value:.4g} {bound} on {n} requests"))
            else:
                checks.append(LimitCheck(**base, value=value, requests=n, state="ok", reason="within limits"))
    return checks
