"""Site profiles and their calibrations: a labelled batch from a site sets that site's rule.

On a site and stethoscope the model never saw, its scores still rank abnormal
above normal, but the bundle's threshold may not suit them. A labelled batch
from the site gives a rule of its own: the model's raw score, Platt-scaled when
there are enough labels, and a threshold chosen for the site's target. Later
batches of the site (with the same model version) are decided by that rule.
Pure numpy and the ORM: the web process may call everything here.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Max

from jobs.models import Batch, ModelVersion, Organisation, Prediction, Recording, Site, SiteCalibration
from jobs.services import access
from jobs.services.refusals import Refused
from jobs.services.results import batch_recordings
from jobs.services.verdicts import positive_class, version_calibration
from ml import calibration, scoring

MIN_PER_CLASS = 10
PLATT_MIN_PER_CLASS = 20
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 2016
ROC_MAX_POINTS = 200
FITTED_STATUSES = (Batch.Status.COMPLETED, Batch.Status.COMPLETED_WITH_ERRORS)
Target = SiteCalibration.Target


class SiteRefused(Refused):
    """A site or calibration request the platform refuses."""


# --- sites ---------------------------------------------------------------------------------


def create_site(
    user: User,
    organisation: Organisation,
    *,
    name: str,
    stethoscope: str = "",
    notes: str = "",
    is_default: bool = False,
) -> Site:
    """A new site of the organisation (researchers, administrators and staff)."""
    _require_calibrator(user, organisation)
    name = name.strip()
    if not name:
        raise SiteRefused("invalid", "A site needs a name.")
    if organisation.sites.filter(name__iexact=name).exists():
        raise SiteRefused("duplicate_site", f"{organisation.name} already has a site called {name!r}.")
    try:
        with transaction.atomic():
            if is_default:
                organisation.sites.filter(is_default=True).update(is_default=False)
            return Site.objects.create(
                organisation=organisation,
                name=name[:200],
                stethoscope=stethoscope[:200],
                notes=notes,
                is_default=is_default,
            )
    except IntegrityError as exc:  # the same name created meanwhile by someone else
        raise SiteRefused(
            "duplicate_site", f"{organisation.name} already has a site called {name!r}."
        ) from exc


def resolve_site(organisation: Organisation, reference: str | Site | None) -> Site | None:
    """The site named by id or name within the organisation; its default site when none is named."""
    if isinstance(reference, Site):
        if reference.organisation_id != organisation.pk:
            raise SiteRefused("unknown_site", f"{organisation.name} has no such site.")
        return reference
    reference = (reference or "").strip()
    sites = organisation.sites.all()
    if not reference:
        return sites.filter(is_default=True).first()
    found = sites.filter(pk=int(reference)).first() if reference.isdigit() else None
    found = found or sites.filter(name__iexact=reference).first()
    if found is None:
        # Another organisation's site is answered like a site that does not exist.
        raise SiteRefused("unknown_site", f"{organisation.name} has no site {reference!r}.")
    return found


def active_calibration(site: Site | None, model_version: ModelVersion) -> SiteCalibration | None:
    if site is None:
        return None
    return site.calibrations.filter(model_version=model_version, is_active=True).first()


@dataclass(frozen=True)
class RuleUse:
    """A site calibration that decided some of a batch's recordings."""

    calibration_id: int
    site: str
    version: int
    count: int


def rules_used(batch: Batch) -> list[RuleUse]:
    """Which site calibrations decided the batch's predictions, and how many each."""
    # Annotation names of batch_recordings, which the type checker cannot see as fields.
    fields = ("site_calibration_id", "site_name", "site_calibration_version")
    rows = (
        batch_recordings(batch)
        .filter(**{"site_calibration_id__isnull": False})
        .values(*fields)
        .annotate(count=Count("id"))
        .order_by(*fields[1:])
    )
    return [
        RuleUse(row["site_calibration_id"], row["site_name"], row["site_calibration_version"], row["count"])
        for row in rows
    ]


# --- fitting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledScores:
    """The model's raw scores of a batch's labelled recordings; `truth` is True for the positive class."""

    scores: np.ndarray
    truth: np.ndarray
    positive: str
    negative: str

    @property
    def n_positive(self) -> int:
        return int(self.truth.sum())

    @property
    def n_negative(self) -> int:
        return int((~self.truth).sum())


@dataclass(frozen=True)
class FittedRule:
    slope: float | None
    intercept: float | None
    threshold: float
    sensitivity: float
    specificity: float
    sensitivity_interval: tuple[float, float]
    specificity_interval: tuple[float, float]
    roc_points: list[list[float | None]]
    roc_auc: float | None
    # [[true positives, false negatives], [false positives, true negatives]]
    counts: tuple[tuple[int, int], tuple[int, int]]


def fit_site_calibration(
    batch: Batch, site: Site, *, target: str, min_sensitivity: float | None = None, user: User
) -> SiteCalibration:
    """Fit the site's rule for the batch's model version on its labelled recordings; it becomes active.

    For target "sensitivity", `min_sensitivity` is the sensitivity to reach; for
    "macc" it is an optional floor under the MAcc-maximising threshold.
    """
    _check_request(batch, site, user=user, target=target, min_sensitivity=min_sensitivity)
    sample = labelled_scores(batch)
    _check_counts(batch, sample)
    rule = fit_rule(sample.scores, sample.truth, target=target, target_value=min_sensitivity)
    return _save(batch, site, sample, rule, target=target, target_value=min_sensitivity, user=user)


def labelled_scores(batch: Batch) -> LabelledScores:
    """Raw scores and ground truth of the batch's labelled, analysed recordings.

    Unusable recordings are left out: they are never given a class, whatever the threshold.
    """
    version = batch.model_version
    positive = positive_class(version)
    if positive is None:
        raise SiteRefused("not_screening", f"{version.slug} has no positive class to set a threshold for.")
    negative = next(name for name in version.classes if name != positive)
    # Annotation names of batch_recordings, which the type checker cannot see as fields.
    rows = (
        batch_recordings(batch)
        .filter(label__in=[positive, negative], **{"raw_probability__isnull": False})
        .exclude(**{"quality": "unusable"})
        .values_list(*("raw_probability", "label"))
    )
    pairs = list(rows.iterator(chunk_size=2000))
    scores = np.array([score for score, _ in pairs], dtype=np.float64)
    truth = np.array([label == positive for _, label in pairs], dtype=bool)
    return LabelledScores(scores=scores, truth=truth, positive=positive, negative=negative)


def fit_rule(
    scores: np.ndarray, truth: np.ndarray, *, target: str, target_value: float | None = None
) -> FittedRule:
    """Platt parameters (from 20 of each class), threshold, Se/Sp with bootstrap intervals and ROC."""
    enough = min(int(truth.sum()), int((~truth).sum())) >= PLATT_MIN_PER_CLASS
    slope, intercept = calibration.fit_platt(scores, truth) if enough else (None, None)
    probabilities = _rule_probability(scores, slope, intercept)
    threshold = choose_site_threshold(probabilities, truth, target=target, target_value=target_value)
    called = probabilities >= threshold
    tp, fn = int(np.sum(called & truth)), int(np.sum(~called & truth))
    fp, tn = int(np.sum(called & ~truth)), int(np.sum(~called & ~truth))
    rates = scoring.binary_rates(tp=tp, fn=fn, tn=tn, fp=fp)
    # The sample holds recordings of both classes (_check_counts), so both rates exist.
    assert rates.sensitivity is not None and rates.specificity is not None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    points, auc = roc_curve(probabilities, truth)
    return FittedRule(
        slope=slope,
        intercept=intercept,
        threshold=threshold,
        sensitivity=rates.sensitivity,
        specificity=rates.specificity,
        sensitivity_interval=bootstrap_interval(tp, tp + fn, rng=rng),
        specificity_interval=bootstrap_interval(tn, tn + fp, rng=rng),
        roc_points=points,
        roc_auc=auc,
        counts=((tp, fn), (fp, tn)),
    )


def choose_site_threshold(
    probabilities: np.ndarray, truth: np.ndarray, *, target: str, target_value: float | None = None
) -> float:
    """The threshold for the target: for "sensitivity", the highest whose sample sensitivity
    reaches `target_value`; for "macc", the one maximising MAcc among those whose sensitivity
    reaches `target_value` (when given), midway between neighbouring scores."""
    positives = np.sort(probabilities[truth])[::-1]
    if target == Target.SENSITIVITY:
        if target_value is None:
            raise SiteRefused("invalid", "Give the sensitivity to reach.")
        needed = max(1, math.ceil(target_value * len(positives) - 1e-9))
        return float(positives[needed - 1])
    # Not ml.calibration.choose_threshold: its 0.01 grid over [0.2, 0.8] is for calibrated
    # probabilities, while a shifted site's raw scores may all lie above 0.8, and it has no
    # sensitivity floor. Every distinct score is a candidate here, midway between
    # neighbours: the sample cannot tell the points between them apart.
    distinct = np.unique(probabilities)
    candidates = np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2])
    sensitivity, specificity = scoring.rates_at(probabilities, truth, candidates)
    score = scoring.macc(sensitivity, specificity)
    if target_value is not None:
        score = np.where(sensitivity >= target_value - 1e-12, score, -1.0)
    # argmax takes the first best: the lowest threshold, so the most sensitive of equals.
    return float(candidates[int(np.argmax(score))])


def bootstrap_interval(hits: int, count: int, *, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the proportion hits/count.

    Resampling a class's recordings with replacement and counting the ones called
    right is a binomial draw, so it is drawn as one: 1000 numbers, not 1000 x n.
    """
    draws = rng.binomial(count, hits / count, size=BOOTSTRAP_RESAMPLES) / count
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def roc_curve(probabilities: np.ndarray, truth: np.ndarray) -> tuple[list[list[float | None]], float | None]:
    """ROC points [fpr, tpr, threshold] from the highest threshold down (at most 200), and the AUC."""
    thresholds = np.unique(probabilities)[::-1]
    sensitivity, specificity = scoring.rates_at(probabilities, truth, thresholds)
    fpr = np.concatenate([[0.0], 1 - specificity])
    tpr = np.concatenate([[0.0], sensitivity])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    keep = np.unique(np.linspace(0, len(thresholds), min(ROC_MAX_POINTS, len(thresholds) + 1)).round())
    labelled: list[float | None] = [None, *map(float, thresholds)]
    points = [[float(fpr[i]), float(tpr[i]), labelled[i]] for i in keep.astype(int)]
    return points, auc


def _rule_probability(scores: np.ndarray, slope: float | None, intercept: float | None) -> np.ndarray:
    if slope is None or intercept is None:
        return np.asarray(scores, dtype=np.float64)
    return calibration.Calibration(slope=slope, intercept=intercept).probability(scores)


def _require_calibrator(user: User, organisation: Organisation) -> None:
    if not access.can_calibrate(user, organisation):
        raise SiteRefused(
            "forbidden",
            f"Only researchers and administrators of {organisation.name} can manage its sites.",
            status=403,
        )


def _check_request(
    batch: Batch, site: Site, *, user: User, target: str, min_sensitivity: float | None
) -> None:
    _require_calibrator(user, site.organisation)
    if batch.organisation_id != site.organisation_id:
        raise SiteRefused("other_organisation", "The batch belongs to another organisation than the site.")
    if batch.status not in FITTED_STATUSES:
        raise SiteRefused(
            "not_finished",
            f"The batch is {batch.get_status_display().lower()}: fit on a finished batch.",
            status=409,
        )
    if target not in Target.values:
        raise SiteRefused("invalid", f"target must be one of {', '.join(Target.values)}.")
    if target == Target.SENSITIVITY and min_sensitivity is None:
        raise SiteRefused("invalid", "Give the sensitivity to reach (for example 0.90).")
    if min_sensitivity is not None and not 0 < min_sensitivity <= 1:
        raise SiteRefused("invalid", "The sensitivity must be above 0 and at most 1.")


def _check_counts(batch: Batch, sample: LabelledScores) -> None:
    short = [
        (MIN_PER_CLASS - count, name)
        for count, name in ((sample.n_negative, sample.negative), (sample.n_positive, sample.positive))
        if count < MIN_PER_CLASS
    ]
    if short:
        needs = " and ".join(f"{missing} more {name}" for missing, name in short)
        raise SiteRefused(
            "too_few_labels",
            f"The batch has {sample.n_negative} {sample.negative} and {sample.n_positive} {sample.positive} "
            f"labelled recordings analysed by {batch.model_version.slug}; a site calibration needs at least "
            f"{MIN_PER_CLASS} of each: it needs {needs} labelled recordings.",
        )


def _save(
    batch: Batch,
    site: Site,
    sample: LabelledScores,
    rule: FittedRule,
    *,
    target: str,
    target_value: float | None,
    user: User,
) -> SiteCalibration:
    classes = list(batch.model_version.classes)
    (tp, fn), (fp, tn) = rule.counts
    by_truth = {sample.positive: {sample.positive: tp, sample.negative: fn},
                sample.negative: {sample.positive: fp, sample.negative: tn}}  # fmt: skip
    with transaction.atomic():
        # The site row is locked so two fits cannot take the same version number.
        Site.objects.select_for_update().filter(pk=site.pk).first()
        previous = site.calibrations.filter(model_version=batch.model_version_id)
        number = (previous.aggregate(last=Max("version"))["last"] or 0) + 1
        previous.filter(is_active=True).update(is_active=False)
        return SiteCalibration.objects.create(
            site=site,
            model_version=batch.model_version,
            version=number,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            source_batch=batch,
            n_normal=sample.n_negative,
            n_abnormal=sample.n_positive,
            target=target,
            target_value=target_value,
            slope=rule.slope,
            intercept=rule.intercept,
            threshold=rule.threshold,
            sensitivity=rule.sensitivity,
            specificity=rule.specificity,
            sensitivity_low=rule.sensitivity_interval[0],
            sensitivity_high=rule.sensitivity_interval[1],
            specificity_low=rule.specificity_interval[0],
            specificity_high=rule.specificity_interval[1],
            roc_auc=rule.roc_auc,
            roc_points=rule.roc_points,
            confusion_matrix={
                "classes": classes,
                "rows_truth_columns_predicted": [[by_truth[t][p] for p in classes] for t in classes],
            },
            is_active=True,
        )


# --- applying ------------------------------------------------------------------------------


def site_probability(profile: SiteCalibration, raw: float) -> float:
    """The site's probability of the positive class for one raw score."""
    return float(_rule_probability(np.array([raw]), profile.slope, profile.intercept)[0])


def apply_site_rules(batch: Batch, predictions: Sequence[Prediction]) -> None:
    """Decide each new prediction by its recording's site calibration, where one is active.

    A recording's site is the batch's, or for a re-analysis the site of the
    upload it came in; only a calibration fitted for this batch's model version
    applies. `label`, `probabilities` and `raw_probability` stay the bundle's.
    """
    version = batch.model_version
    positive = positive_class(version)
    if positive is None or not predictions:
        return
    profiles = _profiles_for(batch, [prediction.recording_id for prediction in predictions])
    if not profiles:
        return
    margin = version_calibration(dict(version.manifest or {})).margin
    for prediction in predictions:
        profile = profiles.get(prediction.recording_id)
        if profile is None or prediction.raw_probability is None:
            continue
        decision = site_decision(
            prediction, profile, classes=version.classes, positive=positive, margin=margin
        )
        prediction.site_calibration = profile
        prediction.site_probability = decision.probability
        prediction.decision = decision.outcome
        prediction.decision_reasons = decision.reasons


def site_decision(
    prediction: Prediction, profile: SiteCalibration, *, classes: Sequence[str], positive: str, margin: float
) -> calibration.Decision:
    """The site's decision: its threshold with the bundle's margin, and the same quality checks."""
    assert prediction.raw_probability is not None
    rule = calibration.Calibration(threshold=profile.threshold, margin=margin)
    found = calibration.decide_one(
        site_probability(profile, prediction.raw_probability),
        calibration=rule,
        classes=classes,
        positive_class=positive,
        quality=prediction.quality,
        quality_reasons=prediction.quality_reasons or [],
    )
    # The worker keeps only the bundle's verdict on the distance from the training
    # recordings, not the distance; that verdict is about the recording, so it stands.
    reasons = [str(reason) for reason in prediction.decision_reasons or []]
    unlike = [reason for reason in reasons if reason.startswith(calibration.UNLIKE_TRAINING)]
    if not unlike:
        return found
    return calibration.Decision(calibration.UNCERTAIN, found.probability, [*found.reasons, *unlike])


def _profiles_for(batch: Batch, recording_ids: list[int]) -> dict[int, SiteCalibration]:
    if batch.site_id is not None:
        sites = dict.fromkeys(recording_ids, batch.site_id)
    elif batch.kind == Batch.Kind.REANALYSIS:
        uploads = Recording.objects.filter(pk__in=recording_ids, batch__site__isnull=False)
        sites = dict(uploads.values_list("pk", "batch__site_id"))
    else:
        return {}
    active = SiteCalibration.objects.filter(
        site_id__in=set(sites.values()), model_version_id=batch.model_version_id, is_active=True
    ).select_related("site")
    by_site = {profile.site_id: profile for profile in active}
    return {recording: by_site[site] for recording, site in sites.items() if site in by_site}
