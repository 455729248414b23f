"""Direct loss estimation (DLE): a regressor's expected MAE and RMSE from its inputs, before the targets arrive.

The method follows NannyML's published description of DLE (NannyML documentation, "How it
works: Direct Loss Estimation"): on a labelled reference, fit a second model — the *nanny
model* — that predicts each row's loss from the monitored model's features and its
prediction; on a day without targets, the mean of the predicted losses is the expected
metric. As in NannyML, each metric gets its own nanny model: one fit to the absolute error
(its mean is the expected MAE) and one fit to the squared error (the square root of its
mean is the expected RMSE; the square of a mean absolute error would understate it).
The nanny model is scikit-learn's ``HistGradientBoostingRegressor`` (a LightGBM-style
histogram gradient-boosting machine; Ke et al. 2017) with native categorical support and a
fixed ``random_state``, so a refit on the same reference gives the same model.

**Assumptions**: the loss given the inputs and the prediction, ``E[loss | x, y_hat]``, is what
it was on the reference (no concept shift); the inputs may shift (covariate shift), within
the range the reference covers — a gradient-boosted model extrapolates flat beyond it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

REGRESSOR_METRICS: tuple[str, ...] = ("mae", "rmse")
PREDICTION_FEATURE = "__prediction__"
SOURCE = "NannyML, Direct Loss Estimation (DLE), https://nannyml.readthedocs.io (How it works)"
ASSUMPTIONS: tuple[str, ...] = (
    "the expected loss given the inputs and the prediction is what it was on the reference (no concept shift)",
    "the inputs may shift (covariate shift) within the range the reference covers; beyond it the estimate is flat",
)
DEFAULT_PARAMS: dict[str, Any] = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 15, "min_samples_leaf": 20, "early_stopping": True,
                                 "validation_fraction": 0.1, "n_iter_no_change": 10}


@dataclass(frozen=True)
class FeatureSpace:
    """The nanny model's inputs: numerical and categorical feature names, and the reference's categories of each categorical."""

    numerical: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.numerical, *self.categorical, PREDICTION_FEATURE]

    def matrix(self, frame: pd.DataFrame, prediction: Sequence[float]) -> pd.DataFrame:
        """The design matrix: numbers as floats, categories with the reference's levels (unseen values become missing)."""
        out: dict[str, pd.Series] = {}
        for name in self.numerical:
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(float) if name in frame else pd.Series(np.nan, index=frame.index)
        for name, levels in self.categorical.items():
            values = frame[name].astype("object").map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)) \
                if name in frame else pd.Series([None] * len(frame), index=frame.index, dtype="object")
            out[name] = pd.Categorical(values, categories=list(levels))
        out[PREDICTION_FEATURE] = pd.Series(np.asarray(prediction, dtype=float), index=frame.index)
        return pd.DataFrame(out, index=frame.index)

    def to_dict(self) -> dict[str, Any]:
        return {"numerical": list(self.numerical), "categorical": {k: list(v) for k, v in self.categorical.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpace:
        return cls(tuple(data.get("numerical", [])), {k: tuple(v) for k, v in (data.get("categorical") or {}).items()})

    @classmethod
    def from_reference(cls, frame: pd.DataFrame, kinds: dict[str, str], max_levels: int = 250) -> FeatureSpace:
        """Feature space of a reference frame; a categorical keeps its ``max_levels`` most frequent values (HGBR's limit is 255)."""
        numerical = tuple(c for c, k in kinds.items() if k == "numerical" and c in frame)
        categorical = {}
        for column in (c for c, k in kinds.items() if k == "categorical" and c in frame):
            counts = frame[column].dropna().astype(str).value_counts()
            categorical[column] = tuple(sorted(counts.index[:max_levels].tolist()))
        return cls(numerical, categorical)


def _regressor(seed: int, params: dict[str, Any]):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=seed, **params)


@dataclass
class NannyModels:
    """The two fitted nanny models (absolute and squared error) over one feature space."""

    space: FeatureSpace
    abs_model: Any
    sq_model: Any

    def row_losses(self, frame: pd.DataFrame, prediction: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted absolute and squared error of each row (clipped at 0)."""
        x = self.space.matrix(frame, prediction)
        return np.clip(self.abs_model.predict(x), 0.0, None), np.clip(self.sq_model.predict(x), 0.0, None)


def fit_nanny(frame: pd.DataFrame, prediction: Sequence[float], target: Sequence[float], space: FeatureSpace, seed: int = 0,
              params: dict[str, Any] | None = None) -> NannyModels:
    """Fit the absolute- and squared-error nanny models on reference rows with a prediction and a target."""
    y_hat = np.asarray(prediction, dtype=float)
    y = np.asarray(target, dtype=float)
    if len(y) != len(y_hat) or len(y) != len(frame):
        raise ValueError(f"frame ({len(frame)}), prediction ({len(y_hat)}) and target ({len(y)}) differ in length")
    if len(y) < 2 * DEFAULT_PARAMS["min_samples_leaf"]:
        raise ValueError(f"DLE needs at least {2 * DEFAULT_PARAMS['min_samples_leaf']} labelled reference rows, got {len(y)}")
    chosen = {**DEFAULT_PARAMS, **(params or {})}
    x = space.matrix(frame, y_hat)
    error = y - y_hat
    return NannyModels(space, _regressor(seed, chosen).fit(x, np.abs(error)), _regressor(seed, chosen).fit(x, error**2))


def expected_metrics(abs_loss: np.ndarray, sq_loss: np.ndarray) -> dict[str, float | None]:
    """Expected MAE (mean predicted absolute error) and RMSE (root of the mean predicted squared error)."""
    if len(abs_loss) == 0:
        return {"mae": None, "rmse": None}
    return {"mae": float(np.mean(abs_loss)), "rmse": float(np.sqrt(np.mean(sq_loss)))}


def realised_metrics(target: Sequence[float], prediction: Sequence[float]) -> dict[str, float | None]:
    """MAE and RMSE from arrived targets, with scikit-learn."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    y, y_hat = np.asarray(target, dtype=float), np.asarray(prediction, dtype=float)
    if len(y) == 0:
        return {"mae": None, "rmse": None}
    return {"mae": float(mean_absolute_error(y, y_hat)), "rmse": float(root_mean_squared_error(y, y_hat))}


def out_of_fold_losses(frame: pd.DataFrame, prediction: Sequence[float], target: Sequence[float], space: FeatureSpace, folds: int = 5,
                       seed: int = 0, params: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted losses of each reference row from nanny models that did not see it (K-fold cross-fitting).

    The reference chunks' estimates are then honest: in-sample predictions of a boosted model
    would understate the estimation error the thresholds and the gap limit are built from.
    """
    from sklearn.model_selection import KFold

    y_hat = np.asarray(prediction, dtype=float)
    y = np.asarray(target, dtype=float)
    abs_out, sq_out = np.empty(len(y)), np.empty(len(y))
    for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(y):
        models = fit_nanny(frame.iloc[train], y_hat[train], y[train], space, seed, params)
        abs_out[test], sq_out[test] = models.row_losses(frame.iloc[test], y_hat[test])
    return abs_out, sq_out
