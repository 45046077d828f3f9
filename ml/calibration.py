"""Calibrated decisions: Platt scaling, the ``uncertain`` outcome and the batch-shift check.

The model's score is mapped to a probability with a logistic fit (Platt) on scores
of recordings from sources the model did not train on (leave-one-source-out
folds), so the probability means on a new device roughly what it meant on the
held-out ones. A decision is ``uncertain`` instead of a class when the recording
is unusable, unlike every training source, or too close to the threshold.
Pure numpy; the parameters live in the bundle's manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ml.scoring import best_threshold

UNCERTAIN = "uncertain"
# How an out-of-distribution reason begins; a site's rule keeps reasons that start so.
UNLIKE_TRAINING = "unlike the training recordings"
EPSILON = 1e-6
DEFAULT_MARGIN = 0.1
OOD_PERCENTILE = 99.0
COVARIANCE_RIDGE = 1e-2
REFERENCE_QUANTILES = 21
SHIFT_MIN_RECORDINGS = 20
SHIFT_MAX_POSITIVE_SHARE = 0.8
SHIFT_MAX_KS = 0.5
PLATT_STEPS = 500


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1."""
    clipped = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(clipped / (1 - clipped))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def combine_log_odds(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The probability whose log-odds is the weighted mean of ``scores``' log-odds.

    ``weights`` are a composite bundle's members' (the first score is its own model's and
    weighs what they leave): what ``ml.inference.Engine`` serves and ``ml.composite``
    calibrates on.
    """
    own = 1.0 - float(sum(weights))
    if not 0.0 < own < 1.0 or any(weight <= 0 for weight in weights):
        raise ValueError("member weights must be positive and add up to less than 1")
    total = own * logit(np.asarray(scores[0], dtype=np.float64))
    for values, weight in zip(scores[1:], weights, strict=True):
        total = total + weight * logit(np.asarray(values, dtype=np.float64))
    return sigmoid(total)


def fit_platt(
    scores: np.ndarray, truth: np.ndarray, *, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """(slope, intercept) of ``p = sigmoid(slope * logit(score) + intercept)`` by weighted
    maximum likelihood (Newton steps); ``truth`` is boolean (positive class)."""
    z = logit(scores)
    y = np.asarray(truth, dtype=np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64)
    params = np.zeros(2)
    design = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(PLATT_STEPS):
        p = sigmoid(design @ params)
        gradient = design.T @ (w * (p - y))
        hessian = (design * (w * p * (1 - p))[:, np.newaxis]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(params[0]), float(params[1])


def balanced_weights(truth: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Weights (mean 1) giving every (source, class) pair the same total, so no site or class dominates."""
    keys = np.array([f"{s}|{t}" for s, t in zip(sources, truth, strict=True)])
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights * len(weights) / float(weights.sum())


def per_source_macc(truth: np.ndarray, predicted: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    """Mean of sensitivity and specificity within each source that has both classes."""
    result = {}
    for source in np.unique(sources):
        mask = sources == source
        t, p = truth[mask], predicted[mask]
        if t.any() and (~t).any():
            result[str(source)] = float((np.mean(p[t]) + np.mean(~p[~t])) / 2)
    return result


def choose_threshold(probabilities: np.ndarray, truth: np.ndarray, sources: np.ndarray) -> float:
    """Threshold in [0.2, 0.8] maximising the mean over sources of MAcc, then the worst source."""
    best, best_key = 0.5, (-1.0, -1.0)
    for candidate in np.linspace(0.2, 0.8, 61):
        scores = per_source_macc(truth, probabilities >= candidate, sources)
        values = list(scores.values()) or [0.0]
        key = (round(float(np.mean(values)), 3), float(np.min(values)))
        if key > best_key:
            best, best_key = float(candidate), key
    return best


@dataclass(frozen=True)
class OutOfDistribution:
    """Mahalanobis distance of a recording's statistics from the training recordings'."""

    mean: np.ndarray
    precision: np.ndarray
    limit: float

    def distance(self, statistics: np.ndarray) -> np.ndarray:
        """Distance per row of ``statistics`` ``(recordings, features)``."""
        centred = np.atleast_2d(statistics) - self.mean
        squared: npt.NDArray[np.float64] = np.einsum("ij,jk,ik->i", centred, self.precision, centred)
        return np.sqrt(np.maximum(squared, 0.0))

    @classmethod
    def fit(cls, statistics: np.ndarray, *, percentile: float = OOD_PERCENTILE) -> OutOfDistribution:
        """Mean, regularised inverse covariance and the ``percentile`` distance of the training rows."""
        mean = statistics.mean(axis=0)
        covariance = np.cov(statistics, rowvar=False)
        covariance += COVARIANCE_RIDGE * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
        found = cls(mean=mean, precision=np.linalg.inv(covariance), limit=0.0)
        return cls(
            mean=mean,
            precision=found.precision,
            limit=float(np.percentile(found.distance(statistics), percentile)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"mean": self.mean.tolist(), "precision": self.precision.tolist(), "limit": self.limit}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OutOfDistribution:
        """Rebuild from :meth:`to_dict`."""
        return cls(np.asarray(values["mean"]), np.asarray(values["precision"]), float(values["limit"]))


@dataclass(frozen=True)
class Calibration:
    """How a score becomes a decision.

    ``slope``/``intercept``: Platt parameters on the score's log-odds; ``threshold``
    applies to the calibrated probability; within ``margin`` of it the decision is
    ``uncertain``. ``reference`` holds quantiles of calibrated probabilities on
    held-out sources and the share called positive there (the batch-shift check).
    """

    slope: float = 1.0
    intercept: float = 0.0
    threshold: float = 0.5
    margin: float = DEFAULT_MARGIN
    reference_quantiles: tuple[float, ...] = ()
    reference_positive_share: float | None = None
    out_of_distribution: dict[str, Any] | None = None
    source: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def probability(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probability of the positive class."""
        return sigmoid(self.slope * logit(scores) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the manifest."""
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "threshold": self.threshold,
            "margin": self.margin,
            "reference_quantiles": list(self.reference_quantiles),
            "reference_positive_share": self.reference_positive_share,
            "out_of_distribution": self.out_of_distribution,
            "source": self.source,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict` (unknown keys raise ``TypeError``)."""
        return cls(**{**values, "reference_quantiles": tuple(values.get("reference_quantiles", ()))})

    def ood(self) -> OutOfDistribution | None:
        """The out-of-distribution check, when the bundle has one."""
        return None if not self.out_of_distribution else OutOfDistribution.from_dict(self.out_of_distribution)


def manifest_calibration(values: dict[str, Any], *, decision_threshold: float) -> Calibration:
    """A bundle's calibration from its manifest; bundles made without one use their threshold."""
    return Calibration.from_dict(values) if values else Calibration(threshold=decision_threshold)


@dataclass(frozen=True)
class Decision:
    """One recording's outcome: a class or ``uncertain``, with the reasons for uncertainty."""

    outcome: str
    probability: float
    reasons: list[str]


def decide_one(
    probability: float,
    *,
    calibration: Calibration,
    classes: Sequence[str],
    positive_class: str,
    quality: str,
    quality_reasons: Sequence[str] = (),
    distance: float | None = None,
) -> Decision:
    """The decision for one recording from its calibrated probability and its checks."""
    negative = next(name for name in classes if name != positive_class)
    label = positive_class if probability >= calibration.threshold else negative
    reasons = []
    if quality == "unusable":
        reasons.append(
            "re-record: " + "; ".join(quality_reasons) if quality_reasons else "re-record: unusable"
        )
    elif quality == "poor":
        reasons.append("poor quality: " + "; ".join(quality_reasons))
    limit = (calibration.out_of_distribution or {}).get("limit")
    if distance is not None and limit and distance > limit:
        reasons.append(f"{UNLIKE_TRAINING} (distance {distance:.1f}, limit {limit:.1f})")
    if near_threshold(np.array([probability]), calibration)[0]:
        reasons.append(
            f"p({positive_class}) {probability:.2f} is within {calibration.margin:.2f} "
            f"of the threshold {calibration.threshold:.2f}"
        )
    return Decision(UNCERTAIN if reasons else label, probability, reasons)


def near_threshold(probabilities: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Which calibrated probabilities lie inside the ``uncertain`` band: closer to the threshold
    than the margin (on its edges a recording is decided)."""
    return np.asarray(np.abs(probabilities - calibration.threshold) < calibration.margin)


def reference_quantiles(probabilities: np.ndarray) -> tuple[float, ...]:
    """Evenly spaced quantiles of held-out calibrated probabilities, for the shift check."""
    return tuple(float(q) for q in np.quantile(probabilities, np.linspace(0, 1, REFERENCE_QUANTILES)))


def ks_distance(values: np.ndarray, quantiles: Sequence[float]) -> float:
    """Kolmogorov-Smirnov distance between ``values`` and the distribution given by its quantiles."""
    reference = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0, 1, len(reference))
    grid = np.unique(np.concatenate([reference, values]))
    empirical = np.searchsorted(np.sort(values), grid, side="right") / len(values)
    expected = np.interp(grid, reference, levels, left=0.0, right=1.0)
    return float(np.max(np.abs(empirical - expected)))


def batch_shift_warning(
    probabilities: Sequence[float], *, calibration: Calibration, positive_class: str
) -> str | None:
    """A readable warning when a batch's scores are unlike the held-out sources', else None.

    Too few recordings say nothing. The warning fires when more than 80% are
    called positive, or when the Kolmogorov-Smirnov distance to the held-out
    distribution exceeds 0.5.
    """
    values = np.asarray(list(probabilities), dtype=np.float64)
    if len(values) < SHIFT_MIN_RECORDINGS or not calibration.reference_quantiles:
        return None
    share = float(np.mean(values >= calibration.threshold))
    distance = ks_distance(values, calibration.reference_quantiles)
    if share <= SHIFT_MAX_POSITIVE_SHARE and distance <= SHIFT_MAX_KS:
        return None
    expected = calibration.reference_positive_share
    expected_text = "" if expected is None else f" (on validation sources: {expected:.0%})"
    return (
        f"{share:.0%} of this batch was called {positive_class}{expected_text} and its scores are "
        f"unlike validation (KS distance {distance:.2f}): the recordings may come from a device or site "
        "the model was not calibrated for; check a labelled sample before acting on these results."
    )


def held_out_scores(crossval: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positive-class score averaged over seeds, truth, source) of every held-out recording
    of a ``python -m ml crossval`` result."""
    oof = crossval["oof"]
    scores = held_out_mean(crossval)
    keep = ~np.isnan(scores)
    truth = np.array(oof["labels"]) == "abnormal"
    return scores[keep], truth[keep], np.array(oof["groups"])[keep]


def held_out_mean(crossval: dict[str, Any]) -> np.ndarray:
    """Every recording's held-out score averaged over the seeds of a crossval result (NaN where
    no seed held it out)."""
    runs = np.array(list(crossval["oof"]["scores"].values()), dtype=np.float64)
    return np.asarray(np.nanmean(runs, axis=0))


def fit_calibration(
    scores: np.ndarray, truth: np.ndarray, sources: np.ndarray, *, source: str
) -> Calibration:
    """Platt scaling, threshold and shift reference from held-out scores, every source weighted alike."""
    slope, intercept = fit_platt(scores, truth, weights=balanced_weights(truth, sources))
    calibrated = sigmoid(slope * logit(scores) + intercept)
    threshold = choose_threshold(calibrated, truth, sources)
    return Calibration(
        slope=slope,
        intercept=intercept,
        threshold=threshold,
        reference_quantiles=reference_quantiles(calibrated),
        reference_positive_share=float(np.mean(calibrated >= threshold)),
        source=source,
    )


def nested_source_metrics(
    scores: np.ndarray,
    truth: np.ndarray,
    sources: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    applied: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """For each source: Se, Sp and MAcc when calibration and threshold come from the other sources only.

    This is what calibrating on held-out sources promises a source that took no
    part in it, which is what a new site is. With them, what the ``uncertain`` band
    of ``margin`` around the threshold does there: the share of the source's
    recordings it holds back (``uncertain_share``) and Se, Sp and MAcc of the rest
    (``decided_*``; NaN where a class has no decided recording). Only the band:
    the quality and out-of-distribution reasons for ``uncertain`` need the audio.
    And what the batch-shift check says of the whole source as one batch: the share
    called positive, the Kolmogorov-Smirnov distance to the other sources' held-out
    distribution, and whether ``batch_shift_warning`` fires (``shift_warning``, 0 or 1).

    ``applied``, when given, are the scores each source is decided on in place of its
    ``scores`` (the rule is still fitted on the other sources' ``scores``): the same
    recordings' short clips, say, decided as the whole recordings' rule decides them.
    """
    decided_on = scores if applied is None else applied
    found: dict[str, dict[str, float]] = {}
    for name in np.unique(sources):
        inside = sources == name
        if inside.all():
            continue  # no other source to calibrate it with
        others = fit_calibration(scores[~inside], truth[~inside], sources[~inside], source="nested")
        probabilities = others.probability(decided_on[inside])
        predicted = probabilities >= others.threshold
        decided = ~near_threshold(probabilities, dataclasses.replace(others, margin=margin))
        t = truth[inside]
        sensitivity, specificity = _recalls(predicted, t)
        decided_sensitivity, decided_specificity = _recalls(predicted[decided], t[decided])
        found[str(name)] = {
            "sensitivity": sensitivity,
            "specificity": specificity,
            "macc": (sensitivity + specificity) / 2,
            "count": int(inside.sum()),
            "uncertain_share": float(1 - decided.mean()),
            "decided_sensitivity": decided_sensitivity,
            "decided_specificity": decided_specificity,
            "decided_macc": (decided_sensitivity + decided_specificity) / 2,
            "called_positive_share": float(predicted.mean()),
            "shift_distance": ks_distance(probabilities, others.reference_quantiles),
            "shift_warning": float(
                batch_shift_warning(probabilities.tolist(), calibration=others, positive_class="positive")
                is not None
            ),
        }
    return found


def _recalls(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(sensitivity, specificity) of boolean calls against boolean truth; NaN for an absent class."""
    sensitivity = float(np.mean(predicted[truth])) if truth.any() else float("nan")
    specificity = float(np.mean(~predicted[~truth])) if (~truth).any() else float("nan")
    return sensitivity, specificity


def site_sample_simulation(
    scores: np.ndarray,
    truth: np.ndarray,
    sources: np.ndarray,
    *,
    sample: int = 50,
    draws: int = 20,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """What a site gains by calibrating on a small labelled sample of its own.

    For each source, ``draws`` times: ``sample`` random recordings of it choose the
    threshold that maximises their MAcc, and the rest of the source is scored with
    it. Returned per source: mean and worst MAcc, mean Se and Sp, against the rule
    fitted on the other sources only (no local labels).
    """
    rng = np.random.default_rng(seed)
    nested = nested_source_metrics(scores, truth, sources)
    found = {}
    for name in np.unique(sources):
        members = np.flatnonzero(sources == name)
        if len(members) <= sample:
            continue
        maccs, sens, specs = [], [], []
        for _ in range(draws):
            chosen = rng.choice(members, size=sample, replace=False)
            rest = np.setdiff1d(members, chosen)
            if truth[chosen].all() or not truth[chosen].any():
                continue
            # One site's raw scores: any threshold in (0, 1), among the sample's own scores.
            threshold = best_threshold(truth[chosen], scores[chosen], low=0.01, high=0.99)
            predicted, t = scores[rest] >= threshold, truth[rest]
            sens.append(float(np.mean(predicted[t])))
            specs.append(float(np.mean(~predicted[~t])))
            maccs.append((sens[-1] + specs[-1]) / 2)
        if maccs:
            found[str(name)] = {
                "macc": float(np.mean(maccs)),
                "worst_macc": float(np.min(maccs)),
                "sensitivity": float(np.mean(sens)),
                "specificity": float(np.mean(specs)),
                "uncalibrated_macc": nested[str(name)]["macc"],
                "uncalibrated_sensitivity": nested[str(name)]["sensitivity"],
                "uncalibrated_specificity": nested[str(name)]["specificity"],
            }
    return found
