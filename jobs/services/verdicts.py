"""What a clinician is told about one prediction, the same on every page, report and API answer.

- A recording the quality check found unusable gets no diagnosis: it is to be
  re-recorded, for the quality reasons. A class read from noise is noise, however
  sure the model is; its probabilities stay in the detail.
- Any other decision is shown as it was made: the probability the rule compared
  against the threshold it used (the site's when a site calibration decided),
  then the outcome and, for ``uncertain``, why.
- A heart rate comes with a plausibility flag: outside 30-220 bpm, or about
  twice or half the rate of the beats the segmentation found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db.models import Count

from jobs.models import Batch, ModelVersion, Prediction
from ml import calibration, scoring

RE_RECORD = "re-record"
UNUSABLE = "unusable"  # ml.quality.UNUSABLE; that module pulls in audio decoding
MIN_PLAUSIBLE_BPM = 30.0
MAX_PLAUSIBLE_BPM = 220.0
# A rate within this share of twice (or half) the segmented beats' rate is doubled (halved).
MULTIPLE_TOLERANCE = 0.15
# S1-to-S1 intervals that alternate short and long by this factor, in this share of
# neighbouring pairs, are the two heart sounds of each beat counted as beats.
ALTERNATION_RATIO = 1.4
ALTERNATION_SHARE = 0.75
MIN_ALTERNATING_INTERVALS = 4


def version_calibration(manifest: dict[str, Any]) -> calibration.Calibration:
    """The bundle's calibration; bundles made without one use their decision threshold."""
    return calibration.manifest_calibration(
        manifest.get("calibration") or {}, decision_threshold=float(manifest.get("decision_threshold", 0.5))
    )


def positive_class(version: ModelVersion) -> str | None:
    """The screening model's positive class; None for models without a two-class threshold."""
    return scoring.positive_class(list(version.classes), (version.manifest or {}).get("positive_class"))


@dataclass(frozen=True)
class ModelRule:
    """How a model version decides: p(positive) against the threshold, or else the most probable class."""

    positive: str | None
    threshold: float | None


def model_rule(version: ModelVersion) -> ModelRule:
    positive = positive_class(version)
    if positive is None:
        return ModelRule(positive=None, threshold=None)
    return ModelRule(positive, version_calibration(dict(version.manifest or {})).threshold)


@dataclass(frozen=True)
class HeartRate:
    """The heart rate to show (None when not measurable or not to be shown) and its plausibility.

    ``flag`` is "" when plausible, else "out_of_range", "doubled" or "halved", with ``note`` saying why.
    """

    bpm: float | None
    flag: str = ""
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    """One prediction as it is shown.

    ``decision``: a class, ``uncertain`` or ``re-record`` ("" for predictions made
    before decisions); ``label`` and ``confidence`` are the model's, None when the
    recording is to be re-recorded; ``reasons`` say why it is uncertain or what to
    fix when re-recording; ``probability`` and ``threshold`` are the ones the rule
    compared, ``site`` names the site calibration that decided ("" for the model's rule).
    """

    decision: str
    label: str | None
    confidence: float | None
    reasons: list[str]
    probability: float | None
    threshold: float | None
    positive: str | None
    site: str = ""
    heart_rate: HeartRate = field(default_factory=lambda: HeartRate(bpm=None))

    @property
    def re_record(self) -> bool:
        return self.decision == RE_RECORD

    @property
    def outcome(self) -> str:
        """The decision, or the label of a prediction made before decisions."""
        return self.decision or self.label or ""

    @property
    def rule_text(self) -> str:
        """'p(abnormal) 0.42, threshold 0.39'; "" when there is nothing to compare."""
        if self.re_record or self.probability is None:
            return ""
        site = f" (site {self.site})" if self.site else ""
        if self.positive is not None and self.threshold is not None:
            return f"p({self.positive}) {self.probability:.2f}, threshold {self.threshold:.2f}{site}"
        return f"p({self.label}) {self.probability:.2f}, the most probable class"

    @property
    def text(self) -> str:
        """The decision as it was made: 'p(abnormal) 0.42, threshold 0.39 → abnormal',
        '... → uncertain: <reasons>', or 're-record: <reasons>'."""
        reasons = "; ".join(self.reasons)
        if self.re_record:
            return f"{RE_RECORD}: {reasons}" if reasons else RE_RECORD
        outcome = self.outcome
        if outcome == calibration.UNCERTAIN and reasons:
            outcome = f"{outcome}: {reasons}"
        rule = self.rule_text
        return f"{rule} → {outcome}" if rule else outcome


def decide_shown(
    *,
    label: str,
    decision: str,
    decision_reasons: Sequence[Any],
    quality: str,
    quality_reasons: Sequence[Any],
    probabilities: Mapping[str, float],
    confidence: float | None,
    rule: ModelRule,
    site_probability: float | None = None,
    site_threshold: float | None = None,
    site: str = "",
    heart_rate_bpm: float | None = None,
    s1_onsets: Sequence[float] | None = None,
) -> Verdict:
    """The verdict from a prediction's stored facts (see the module docstring)."""
    if quality == UNUSABLE:
        return Verdict(
            decision=RE_RECORD,
            label=None,
            confidence=None,
            reasons=[str(reason) for reason in quality_reasons] or ["the recording is unusable"],
            probability=None,
            threshold=None,
            positive=rule.positive,
            heart_rate=HeartRate(bpm=None),
        )
    decided_by_site = site_probability is not None and site_threshold is not None
    if decided_by_site:
        probability, threshold = site_probability, site_threshold
    elif rule.positive is not None:
        probability, threshold = probabilities.get(rule.positive), rule.threshold
    else:
        probability, threshold = probabilities.get(label), None
    return Verdict(
        decision=decision,
        label=label,
        confidence=confidence,
        reasons=[str(reason) for reason in decision_reasons],
        probability=None if probability is None else float(probability),
        threshold=threshold,
        positive=rule.positive,
        site=site if decided_by_site else "",
        heart_rate=heart_rate_check(heart_rate_bpm, s1_onsets),
    )


def for_prediction(prediction: Prediction) -> Verdict:
    """The verdict of a stored prediction (select its model_version and site_calibration__site)."""
    profile = prediction.site_calibration
    segments = prediction.segments or {}
    return decide_shown(
        label=prediction.label,
        decision=prediction.decision,
        decision_reasons=prediction.decision_reasons or [],
        quality=prediction.quality,
        quality_reasons=prediction.quality_reasons or [],
        probabilities=prediction.probabilities or {},
        confidence=prediction.confidence,
        rule=model_rule(prediction.model_version),
        site_probability=prediction.site_probability if profile else None,
        site_threshold=profile.threshold if profile else None,
        site=f"{profile.site.name} v{profile.version}" if profile else "",
        heart_rate_bpm=prediction.heart_rate_bpm,
        s1_onsets=segments.get("s1_s"),
    )


def for_row(row: Mapping[str, Any] | object) -> Verdict | None:
    """The verdict of a row of results.batch_recordings (a values() dict or an annotated
    recording); None when the recording has no prediction from the batch's model."""
    get: Callable[[str], Any] = row.get if isinstance(row, Mapping) else (lambda name: getattr(row, name))
    label = get("predicted_label")
    if not label:
        return None
    site_version = get("site_calibration_version")
    return decide_shown(
        label=label,
        decision=get("decision") or "",
        decision_reasons=get("decision_reasons") or [],
        quality=get("quality") or "",
        quality_reasons=get("quality_reasons") or [],
        probabilities=get("probabilities") or {},
        confidence=get("confidence"),
        rule=ModelRule(positive=get("positive_class"), threshold=get("model_threshold")),
        site_probability=get("site_probability"),
        site_threshold=get("site_threshold"),
        site=f"{get('site_name')} v{site_version}" if site_version else "",
        heart_rate_bpm=get("heart_rate_bpm"),
        s1_onsets=get("s1_onsets"),
    )


@dataclass(frozen=True)
class BatchCounts:
    """A batch's predictions counted by class and by outcome, as every page, report and API says them."""

    by_class: dict[str, int]  # an unusable recording has no class
    by_decision: dict[str, int]  # each class, uncertain, re-record


def batch_counts(batch: Batch) -> BatchCounts:
    """The predictions of the batch's own model version, counted in one grouped query.

    An unusable recording counts as re-record, under no class; a prediction made
    before decisions counts under its label (its outcome).
    """
    by_class: Counter[str] = Counter()
    by_decision: Counter[str] = Counter()
    groups = (
        Prediction.objects.filter(batch=batch, model_version=batch.model_version_id)
        .order_by()
        .values_list("label", "decision", "quality")
        .annotate(count=Count("pk"))
    )
    for label, decision, quality, count in groups:
        if quality == UNUSABLE:
            by_decision[RE_RECORD] += count
            continue
        by_class[label] += count
        by_decision[decision or label] += count
    return BatchCounts(by_class=dict(by_class), by_decision=dict(by_decision))


def heart_rate_check(bpm: float | None, s1_onsets: Sequence[float] | None = None) -> HeartRate:
    """Flag a rate outside 30-220 bpm, or one about twice or half the rate of the segmented beats.

    The beats are the intervals between the segmentation's S1 onsets. Besides
    comparing their rate with ``bpm``, intervals that alternate short and long
    mean the segmentation took the second heart sound of every beat for the first
    of the next: the rate is then about twice the true one.
    """
    if bpm is None:
        return HeartRate(bpm=None)
    if not MIN_PLAUSIBLE_BPM <= bpm <= MAX_PLAUSIBLE_BPM:
        return HeartRate(
            bpm,
            "out_of_range",
            f"{bpm:.0f} bpm is outside the plausible {MIN_PLAUSIBLE_BPM:.0f}-{MAX_PLAUSIBLE_BPM:.0f} bpm",
        )
    intervals = np.diff(np.sort(np.asarray(s1_onsets or [], dtype=np.float64)))
    intervals = intervals[intervals > 0]
    if len(intervals) < 2:
        return HeartRate(bpm)
    beats_bpm = 60.0 / float(np.median(intervals))
    ratio = bpm / beats_bpm
    if abs(ratio - 2.0) <= 2.0 * MULTIPLE_TOLERANCE:
        return HeartRate(
            bpm,
            "doubled",
            f"{bpm:.0f} bpm is about twice the {beats_bpm:.0f} bpm of the segmented beats: "
            "both heart sounds of each beat may have been counted",
        )
    if abs(ratio - 0.5) <= 0.5 * MULTIPLE_TOLERANCE:
        return HeartRate(
            bpm,
            "halved",
            f"{bpm:.0f} bpm is about half the {beats_bpm:.0f} bpm of the segmented beats: "
            "every other beat may have been missed",
        )
    if _alternating(intervals):
        short, long = np.sort([float(np.median(intervals[0::2])), float(np.median(intervals[1::2]))])
        return HeartRate(
            bpm,
            "doubled",
            f"beat intervals alternate {short:.2f} s and {long:.2f} s: the second heart sound may have "
            f"been counted as a beat; the rate may be about {60.0 / (short + long):.0f} bpm",
        )
    return HeartRate(bpm)


def _alternating(intervals: np.ndarray) -> bool:
    """Whether neighbouring intervals keep swapping between short and long."""
    if len(intervals) < MIN_ALTERNATING_INTERVALS:
        return False
    steps = np.log(intervals[1:] / intervals[:-1])
    large = np.abs(steps) >= np.log(ALTERNATION_RATIO)
    turns = large[1:] & large[:-1] & (np.sign(steps[1:]) != np.sign(steps[:-1]))
    return bool(np.mean(turns) >= ALTERNATION_SHARE)
