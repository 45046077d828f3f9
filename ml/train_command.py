"""``python -m ml train`` and ``python -m ml crossval``.

``train`` fits one model and writes a bundle; whole source groups named with
``--holdout`` are kept out of training and reported as held-out metrics.
``crossval`` repeats that once per group (leave-one-group-out) and writes a JSON
summary. Their arguments, and the settings made from them, are in
``ml.train_arguments``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml import cards
from ml.datasets import Dataset, load_dataset
from ml.evaluation import evaluate_dataset, format_metrics
from ml.features import FeatureConfig
from ml.scoring import roc_auc, screening_metrics
from ml.train_arguments import features_from, settings_from
from ml.training import (
    DEFAULT_VALIDATION_SHARE,
    TrainSettings,
    ensemble,
    save_training_bundle,
    split_validation,
    train,
)

SCREENING_CLASSES = ("normal", "abnormal")

log = logging.getLogger(__name__)


def load_all(args: argparse.Namespace, config: FeatureConfig) -> Dataset:
    """Decode and merge every ``--data`` folder into one dataset."""
    parts = [
        load_folder(spec, config, min_duration_s=args.min_duration, cache_dir=args.cache)
        for spec in args.data
    ]
    return merge(parts)


def load_folder(spec: str, config: FeatureConfig, *, min_duration_s: float, cache_dir: Path) -> Dataset:
    """A labelled folder given as ``DIR`` or ``DIR:LABEL_MAP``, decoded for ``config``."""
    folder, _, label_map = spec.partition(":")
    return load_dataset(
        folder,
        sample_rate=config.sample_rate,
        label_map=label_map or "identity",
        min_duration_s=min_duration_s,
        band_hz=config.band_hz,
        cache_dir=cache_dir,
    )


def merge(parts: list[Dataset]) -> Dataset:
    """One dataset from several (the fingerprint covers all of them)."""
    if len(parts) == 1:
        return parts[0]
    fingerprint = "+".join(part.fingerprint for part in parts)
    return Dataset(
        root=parts[0].root,
        entries=tuple(entry for part in parts for entry in part.entries),
        samples=tuple(samples for part in parts for samples in part.samples),
        fingerprint=fingerprint,
    )


def class_order(labels: np.ndarray, requested: str | None) -> tuple[str, ...]:
    """Requested order, else normal first then the rest sorted."""
    if requested:
        return tuple(requested.split(","))
    found = sorted(set(labels.tolist()))
    return (
        tuple(["normal"] + [name for name in found if name != "normal"])
        if "normal" in found
        else tuple(found)
    )


def fit_bundle(
    dataset: Dataset,
    *,
    holdout: list[str],
    out_dir: Path,
    classes: tuple[str, ...],
    config: FeatureConfig,
    settings: TrainSettings,
    name: str,
    version: str,
    research_use: bool,
    test_share: float = 0.0,
    crossval: dict[str, Any] | None = None,
    external: dict[str, Dataset] | None = None,
    with_card: bool = True,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on everything but ``holdout`` groups (and a ``test_share``), write the bundle.

    Returns its metrics: validation, ``holdout`` for the recordings kept out,
    ``leave_one_folder_out`` copied from ``crossval`` results (folds of this
    recipe retrained without each folder) and ``external_<name>`` for each
    ``external`` dataset, which is never trained on.
    """
    from ml.inference import Engine

    positive = "abnormal" if "abnormal" in classes and len(classes) == 2 else None
    held = np.isin(dataset.groups, holdout)
    if test_share > 0:
        _, test_mask = split_validation(dataset, share=test_share, seed=settings.seed + 1)
        held |= test_mask
    trainable = dataset.subset(~held)
    train_mask, validation_mask = split_validation(
        trainable, share=DEFAULT_VALIDATION_SHARE, seed=settings.seed
    )
    members = [
        train(
            trainable.subset(train_mask),
            trainable.subset(validation_mask),
            classes=classes,
            positive_class=positive,
            feature_config=config,
            settings=dataclasses.replace(settings, seed=settings.seed + index, members=1),
        )
        for index in range(settings.members)
    ]
    result = members[0]
    if len(members) > 1:
        result = ensemble(
            members, trainable.subset(validation_mask), classes=classes, positive_class=positive,
            feature_config=config, settings=settings,
        )  # fmt: skip
    metrics: dict[str, Any] = {"validation": result.validation, "train_seconds": round(result.seconds, 1)}
    if crossval is not None:
        metrics["leave_one_folder_out"] = {"groups": _held_out_rows(crossval)}
    common = dict(
        out_dir=out_dir,
        name=name,
        version=version,
        classes=classes,
        positive_class=positive,
        feature_config=config,
        settings=settings,
        data_fingerprint=dataset.fingerprint,
        calibration=calibration,
    )
    save_training_bundle(result, card_text="", metrics=metrics, **common)  # type: ignore[arg-type]
    if not with_card:
        return metrics
    if held.any():
        metrics["holdout"] = evaluate_dataset(Engine.load(out_dir), dataset.subset(held))
    for label, part in (external or {}).items():
        metrics[f"external_{label}"] = evaluate_dataset(Engine.load(out_dir), part)
    card = card_text(
        dataset, name=name, version=version, metrics=metrics, holdout=holdout, config=config,
        settings=settings, research_use=research_use, test_share=test_share, external=external,
        calibration=calibration, crossval=crossval,
    )  # fmt: skip
    save_training_bundle(result, card_text=card, metrics=metrics, **common)  # type: ignore[arg-type]
    return metrics


def card_text(
    dataset: Dataset,
    *,
    name: str,
    version: str,
    metrics: dict[str, Any],
    holdout: list[str],
    config: FeatureConfig,
    settings: TrainSettings,
    research_use: bool,
    test_share: float = 0.0,
    external: dict[str, Dataset] | None = None,
    calibration: dict[str, Any] | None = None,
    crossval: dict[str, Any] | None = None,
) -> str:
    """The bundle's model card (written by ``ml.cards``) from this run's data, settings and metrics."""
    groups, counts = np.unique(dataset.groups, return_counts=True)
    sources = [str(group) for group in groups]
    return cards.model_card(
        name=name,
        version=version,
        intended_use=cards.intended_use(sources, research_use=research_use),
        data_sources=cards.data_sources(
            dict(zip(sources, counts.tolist(), strict=True)),
            holdout=holdout,
            validation_share=DEFAULT_VALIDATION_SHARE,
            calibrated=bool(calibration),
            test_share=test_share,
            external={label: len(part.entries) for label, part in (external or {}).items()},
        ),
        citations=cards.citations(sources),
        settings={**dataclasses.asdict(settings), "features": config.to_dict()},
        metrics=metrics,
        notes=cards.caveats(metrics),
        sections=_card_sections(config, calibration, crossval),
    )


def _card_sections(
    config: FeatureConfig, calibration: dict[str, Any] | None, crossval: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """Segmentation, leave-one-source-out summary, calibration and what the model is not for."""
    sections = []
    if config.kind == "cycles":
        from ml.segmentation import DEFAULT_SEGMENTER

        scores_file = DEFAULT_SEGMENTER.with_name("scores.json")
        if scores_file.is_file():
            scores = json.loads(scores_file.read_text(encoding="utf-8"))
            sections.append(cards.segmentation_section(DEFAULT_SEGMENTER.parent.name, scores))
    if crossval is not None and "oof" in crossval:
        summary = summarise_runs(calibrated_runs(crossval))
        sections.append(cards.leave_one_source_out_section(summary, seeds=crossval.get("seeds", [])))
    if calibration:
        sections += cards.calibration_sections(calibration)
    return sections


def _held_out_rows(crossval: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per held-out source: the crossval's figures, under the calibrated rule when it kept the
    held-out scores (means over seeds), else at each fold's own threshold."""
    if "oof" not in crossval:
        return dict(crossval["folds"])
    summary = summarise_runs(calibrated_runs(crossval))["folds"]
    counts = {fold: int(np.sum(np.array(crossval["oof"]["groups"]) == fold)) for fold in summary}
    return {
        fold: {"count": counts[fold], **{key: (values[key] or {}).get("mean") for key in SUMMARY_KEYS}}
        for fold, values in summary.items()
    }


def load_crossval(
    path: Path, *, settings: TrainSettings, config: FeatureConfig, holdout: Sequence[str] = ()
) -> dict[str, Any]:
    """Crossval results for this exact recipe; refuses results of other settings, and results
    whose folds never trained on a source this run trains on (``--train-without``)."""
    results: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    # An ensemble's members are this recipe with consecutive seeds: cross-validated one by one.
    recipe = json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(settings, members=1))))
    # settings added since the file was written count at their defaults (the old behaviour)
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainSettings())))
    if {**defaults, **results.get("settings", {})} != recipe:
        raise SystemExit(f"{path}: cross-validated with other training settings than this run")
    if results.get("features", config.to_dict()) != config.to_dict():
        raise SystemExit(f"{path}: cross-validated with other feature settings than this run")
    trained_here = sorted(set(results.get("train_without", [])) - set(holdout))
    if trained_here:
        raise SystemExit(
            f"{path}: cross-validated without training on {', '.join(trained_here)}, which this run "
            "trains on (hold it out with --holdout, or cross-validate without --train-without)"
        )
    return results


def calibration_for(crossval: dict[str, Any], dataset: Dataset, config: FeatureConfig) -> dict[str, Any]:
    """The shipped model's calibration: Platt scaling and threshold from the crossval's held-out
    scores, the out-of-distribution check from the training recordings' beat statistics."""
    from ml import calibration

    scores, truth, sources = calibration.held_out_scores(crossval)
    fitted = calibration.fit_calibration(scores, truth, sources, source="leave-one-source-out scores")
    values = fitted.to_dict()
    values["metrics"] = {
        "nested_leave_one_source_out": calibration.nested_source_metrics(scores, truth, sources)
    }
    if config.kind == "cycles":
        from ml import cycles

        statistics = np.stack(
            [
                cycles.recording_statistics(
                    cycles.beat_measures(
                        wave,
                        sample_rate=config.sample_rate,
                        spreads=config.beat_spreads,
                        profile=config.beat_profile,
                    )
                )
                for wave in dataset.samples
            ]
        )
        values["out_of_distribution"] = calibration.OutOfDistribution.fit(statistics).to_dict()
    return values


def load_external(args: argparse.Namespace, config: FeatureConfig) -> dict[str, Dataset]:
    """External datasets by label (the label map's name, else the folder name)."""
    external = {}
    for spec in args.external:
        folder, _, label_map = spec.partition(":")
        label = (label_map or Path(folder).name).replace("-", "_")
        external[label] = load_folder(
            spec, config, min_duration_s=args.external_min_duration, cache_dir=args.cache
        )
    return external


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml train``."""
    from ml.inference import configure_threads

    configure_threads(1)
    config = features_from(args)
    settings = settings_from(args)
    crossval = None
    if args.crossval is not None:
        crossval = load_crossval(args.crossval, settings=settings, config=config, holdout=args.holdout)
    dataset = load_all(args, config)
    classes = class_order(dataset.labels, args.classes)
    calibration = None
    if crossval is not None and "oof" in crossval and "abnormal" in classes and len(classes) == 2:
        calibration = calibration_for(crossval, dataset, config)
    metrics = fit_bundle(
        dataset,
        holdout=args.holdout,
        out_dir=args.out,
        classes=classes,
        config=config,
        settings=settings,
        name=args.name or args.out.name,
        version=args.version,
        research_use=args.research_use,
        test_share=args.test_share,
        crossval=crossval,
        external=load_external(args, config),
        calibration=calibration,
    )
    print(format_metrics("validation", metrics["validation"]))
    if "holdout" in metrics:
        print(format_metrics("held out (all)", metrics["holdout"]["overall"]))
        for group, values in metrics["holdout"]["groups"].items():
            print(format_metrics(f"held out: {group}", values))
    for key, report in metrics.items():
        if key.startswith("external_"):
            print(format_metrics(f"{key} (all)", report["overall"]))
            for group, values in report["groups"].items():
                print(format_metrics(f"{key}: {group}", values))
    print(f"bundle written to {args.out}")
    return 0


def run_crossval(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml crossval`` (leave one source group out).

    The crude floor (``ml.floor``) is scored on the same folds first. Every
    held-out recording's score is kept (``oof``) so that ``python -m ml train
    --crossval`` can calibrate the shipped model on sources it did not train on.
    """
    from ml.inference import configure_threads

    configure_threads(1)
    config = features_from(args)
    dataset = load_all(args, config)
    classes = class_order(dataset.labels, args.classes)
    folds = args.folds.split(",") if args.folds else sorted(set(dataset.groups.tolist()))
    if folds == ["none"]:  # only the patient-grouped in-source folds
        folds = []
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [args.seed]
    unknown = sorted(set(args.train_without) - set(dataset.groups.tolist()))
    if unknown:
        raise SystemExit(f"--train-without names no source group of the data: {', '.join(unknown)}")
    never_trained = np.isin(dataset.groups, args.train_without)
    results: dict[str, Any] = {
        "settings": dataclasses.asdict(settings_from(args)),
        "features": config.to_dict(),
        "seeds": seeds,
        "train_without": sorted(args.train_without),
        "floor": crossval_floor(dataset, folds, seed=seeds[0]),
        "runs": {},
        "oof": {"paths": [e.path for e in dataset.entries], "groups": dataset.groups.tolist(),
                "labels": dataset.labels.tolist(), "scores": {}},
    }  # fmt: skip
    print(
        format_summary("floor (MFCC statistics + gradient boosting)", results["floor"]["folds"]), flush=True
    )
    clips = short_clips(dataset, sample_rate=config.sample_rate) if args.clip_scores else None
    if clips is not None:
        # Everything the clips depend on: runs that agree here cut the same clips.
        results["clips"] = {
            "shortest_s": CLIP_SHORTEST_S, "longest_s": CLIP_LONGEST_S, "seed": CLIP_SEED,
            "sample_rate": config.sample_rate,
        }  # fmt: skip
        results["oof"]["clip_scores"] = {}
    for seed in seeds:
        settings = dataclasses.replace(settings_from(args), seed=seed)
        run = crossval_run(
            dataset, folds, classes=classes, config=config, settings=settings, never_trained=never_trained,
            clips=clips,
        )  # fmt: skip
        results["runs"][str(seed)] = run["folds"]
        results["oof"]["scores"][str(seed)] = run["scores"]
        if clips is not None:
            results["oof"]["clip_scores"][str(seed)] = run["clip_scores"]
        if args.in_source_folds:
            results.setdefault("in_source", {})[str(seed)] = in_source_run(
                dataset, args.in_source_folds, classes=classes, config=config, settings=settings,
                never_trained=never_trained,
            )  # fmt: skip
        print(format_summary(f"seed {seed}", run["folds"]), flush=True)
        results["folds"] = results["runs"][str(seeds[0])]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        if len(folds) > 1:
            results["summary"] = summarise_runs(calibrated_runs(results))
            args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results.get("summary", {}), indent=1))
    return 0


def crossval_run(
    dataset: Dataset,
    folds: list[str],
    *,
    classes: tuple[str, ...],
    config: FeatureConfig,
    settings: TrainSettings,
    never_trained: np.ndarray | None = None,
    clips: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """One leave-one-source-out pass: metrics per held-out fold and every held-out score
    (and, given ``clips``, one per recording, every held-out recording's clip score too).

    ``never_trained`` marks recordings no fold trains on (``--train-without``); they are
    still scored in their own fold.
    """
    scores = [float("nan")] * len(dataset.entries)
    clip_scores = [float("nan")] * len(dataset.entries)
    found: dict[str, Any] = {}
    for fold in folds:
        held = dataset.groups == fold
        fold_scores = _fit_and_score(
            dataset, held, classes=classes, config=config, settings=settings, name=fold,
            never_trained=never_trained,
            clips=None if clips is None else [clips[int(index)] for index in np.flatnonzero(held)],
        )  # fmt: skip
        found[fold] = fold_scores["metrics"]
        for index, value in zip(np.flatnonzero(held), fold_scores["positive"], strict=True):
            scores[index] = value
        if clips is not None:
            for index, value in zip(np.flatnonzero(held), fold_scores["clip_positive"], strict=True):
                clip_scores[index] = value
        print(format_metrics(f"held out {fold} (seed {settings.seed})", found[fold]), flush=True)
    return {"folds": found, "scores": scores, **({"clip_scores": clip_scores} if clips is not None else {})}


# Handheld devices record 1-4 s; a clip of this many seconds stands for one.
CLIP_SHORTEST_S = 1.5
CLIP_LONGEST_S = 4.0
CLIP_SEED = 2011  # any fixed value: the clips must not change between runs


def short_clip(samples: np.ndarray, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A stretch of ``samples`` of a random length between ``CLIP_SHORTEST_S`` and ``CLIP_LONGEST_S``
    at a random start; the whole recording when it is no longer than that."""
    length = int(round(rng.uniform(CLIP_SHORTEST_S, CLIP_LONGEST_S) * sample_rate))
    if len(samples) <= length:
        return samples
    start = int(rng.integers(0, len(samples) - length + 1))
    return samples[start : start + length]


def short_clips(dataset: Dataset, *, sample_rate: int) -> list[np.ndarray]:
    """One ``short_clip`` per recording, the same for every seed and recipe run over the same
    recordings: each clip depends only on the recording's place in the data, so seeds' scores of a
    clip average as the served ensemble's would and two recipes' combine clip by clip."""
    return [
        short_clip(samples, sample_rate=sample_rate, rng=np.random.default_rng([CLIP_SEED, index]))
        for index, samples in enumerate(dataset.samples)
    ]


def in_source_run(
    dataset: Dataset,
    count: int,
    *,
    classes: tuple[str, ...],
    config: FeatureConfig,
    settings: TrainSettings,
    never_trained: np.ndarray | None = None,
) -> dict[str, Any]:
    """Patient-grouped K-fold over all sources: held-out patients of sources the model trained on
    (but for ``never_trained`` recordings, as in ``crossval_run``)."""
    subjects = np.unique(dataset.subjects)
    rng = np.random.default_rng(settings.seed)
    fold_of = dict(zip(rng.permutation(subjects), np.arange(len(subjects)) % count, strict=True))
    assignment = np.array([fold_of[subject] for subject in dataset.subjects])
    positive = np.zeros(len(dataset.entries))
    for fold in range(count):
        held = assignment == fold
        positive[held] = _fit_and_score(
            dataset, held, classes=classes, config=config, settings=settings, name=f"in-source-{fold}",
            never_trained=never_trained,
        )["positive"]  # fmt: skip
    truth = np.array([classes.index(label) for label in dataset.labels])
    probabilities = np.stack([1 - positive, positive], axis=1)
    # The scores too, so that recipes run with the same seed (the same folds) can be combined.
    return {
        **grouped_metrics(truth, probabilities, dataset.groups, classes=classes),
        "scores": positive.tolist(),
        "folds": count,
    }


def _fit_and_score(
    dataset: Dataset,
    held: np.ndarray,
    *,
    classes: tuple[str, ...],
    config: FeatureConfig,
    settings: TrainSettings,
    name: str,
    never_trained: np.ndarray | None = None,
    clips: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Train on every recording that is neither ``held`` nor ``never_trained``, score the ``held`` ones
    (and ``clips``, one per held recording, when given)."""
    from ml.evaluation import recording_probabilities
    from ml.inference import Engine

    trained = ~held if never_trained is None else ~held & ~never_trained
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = Path(scratch) / "bundle"
        fit_bundle(
            dataset.subset(trained), holdout=[], out_dir=out_dir, classes=classes, config=config,
            settings=settings, name=f"crossval-{name}", version="0", research_use=False, with_card=False,
        )  # fmt: skip
        engine = Engine.load(out_dir)
        probabilities = recording_probabilities(engine, list(dataset.subset(held).samples), calibrated=False)
        threshold = engine.manifest.decision_threshold
        clip_probabilities = (
            None if clips is None else recording_probabilities(engine, list(clips), calibrated=False)
        )
    truth = np.array([classes.index(label) for label in dataset.subset(held).labels])
    positive = list(classes).index("abnormal") if "abnormal" in classes else len(classes) - 1
    metrics = screening_metrics(
        truth, probabilities, classes=classes, positive_class=classes[positive], threshold=threshold
    )
    found = {"metrics": metrics, "positive": probabilities[:, positive].tolist()}
    if clip_probabilities is not None:
        found["clip_positive"] = clip_probabilities[:, positive].tolist()
    return found


def grouped_metrics(
    truth: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, *, classes: tuple[str, ...]
) -> dict[str, Any]:
    """Screening metrics at threshold 0.5, over all recordings and per group (source)."""

    def metrics(mask: np.ndarray) -> dict[str, Any]:
        return screening_metrics(
            truth[mask], probabilities[mask], classes=classes, positive_class=classes[-1], threshold=0.5
        )

    return {
        "overall": metrics(np.ones(len(truth), dtype=bool)),
        "groups": {str(g): metrics(groups == g) for g in np.unique(groups)},
    }


def crossval_floor(dataset: Dataset, folds: list[str], *, seed: int) -> dict[str, Any]:
    """The crude floor on the same leave-one-source-out folds (threshold 0.5)."""
    from ml.floor import floor_scores, mfcc_statistics

    features = mfcc_statistics(dataset.samples)
    positive = dataset.labels == "abnormal"
    truth = positive.astype(int)
    found = {}
    for fold in folds:
        held = dataset.groups == fold
        scores = floor_scores(features[~held], positive[~held], features[held], seed=seed)
        found[fold] = screening_metrics(
            truth[held], np.stack([1 - scores, scores], axis=1), classes=SCREENING_CLASSES,
            positive_class="abnormal", threshold=0.5,
        )  # fmt: skip
    return {"folds": found}


# The measures each held-out source is summarised by: the card's per-source columns.
SUMMARY_KEYS = tuple(key for key, _ in cards.SOURCE_COLUMNS)


def calibrated_runs(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per seed and held-out source: ROC AUC of its scores, and Se, Sp, MAcc under the decision
    rule a new site gets (calibration and threshold fitted on the other sources' held-out scores)."""
    from ml import calibration

    oof = results["oof"]
    groups = np.array(oof["groups"])
    truth = np.array(oof["labels"]) == "abnormal"
    runs: dict[str, dict[str, Any]] = {}
    for seed, values in oof["scores"].items():
        scores = np.array(values, dtype=np.float64)
        scored = ~np.isnan(scores)
        nested: dict[str, dict[str, Any]] = dict(
            calibration.nested_source_metrics(scores[scored], truth[scored], groups[scored])
        )
        for fold, metrics in nested.items():
            inside = scored & (groups == fold)
            metrics["roc_auc"] = roc_auc(truth[inside], scores[inside])
        runs[seed] = nested
    return runs


def summarise_runs(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per fold and over folds: mean and spread (min, max) over seeds of the headline measures."""
    folds = sorted(next(iter(runs.values())))
    summary: dict[str, Any] = {"folds": {}}
    for fold in folds:
        summary["folds"][fold] = {
            key: _spread([run[fold].get(key) for run in runs.values()]) for key in SUMMARY_KEYS
        }
    per_seed_mean = [np.mean([run[f]["macc"] for f in folds]) for run in runs.values()]
    per_seed_auc = [np.mean([run[f]["roc_auc"] for f in folds]) for run in runs.values()]
    per_seed_worst = [
        min(min(run[f]["sensitivity"], run[f]["specificity"]) for f in folds) for run in runs.values()
    ]
    summary["mean_macc"] = _spread(per_seed_mean)
    summary["mean_roc_auc"] = _spread(per_seed_auc)
    summary["worst_macc"] = _spread([min(run[f]["macc"] for f in folds) for run in runs.values()])
    summary["lowest_sensitivity_or_specificity"] = _spread(per_seed_worst)
    return summary


def _spread(values: list[Any]) -> dict[str, float] | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    if not numbers:
        return None
    return {"mean": float(np.mean(numbers)), "min": float(np.min(numbers)), "max": float(np.max(numbers))}


def format_summary(title: str, folds: dict[str, Any]) -> str:
    """One line per fold (MAcc / Se / Sp / AUC) and the mean."""
    lines = [f"== {title}"]
    for fold, metrics in folds.items():
        lines.append(
            "  " + fold.ljust(14) + "  ".join(f"{key}={_fmt(metrics.get(key))}" for key in SUMMARY_KEYS)
        )
    maccs = [m["macc"] for m in folds.values() if isinstance(m.get("macc"), float)]
    aucs = [m["roc_auc"] for m in folds.values() if isinstance(m.get("roc_auc"), float)]
    if maccs:
        lines.append(
            f"  mean MAcc {np.mean(maccs):.3f}  mean AUC {np.mean(aucs) if aucs else float('nan'):.3f}"
            f"  worst MAcc {min(maccs):.3f}"
        )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def run_table(args: argparse.Namespace) -> int:
    """Print the leave-one-source-out table of a crossval result as Markdown (docs/models.md),
    and its patient-grouped in-source figures (a ``--folds none`` run has only those)."""
    results = json.loads(args.results.read_text(encoding="utf-8"))
    runs = calibrated_runs(results)
    if any(runs.values()):
        _print_source_tables(results, summarise_runs(runs), margin=getattr(args, "margin", None))
    if "in_source" in results:
        print("\nPatient-grouped in-source (K folds over patients of every source):\n")
        for seed, report in results["in_source"].items():
            print(f"- seed {seed}: {format_in_source(report)}")
    return 0


def _print_uncertain_band(nested: dict[str, dict[str, float]], margin: float) -> None:
    """Per source, what the ``uncertain`` band around the threshold holds back and how the rest
    fare, and whether the batch-shift check warns of the source as one batch."""
    print(
        f"\nThe `uncertain` band (calibrated probability within {margin:.2f} of the "
        "threshold; held-out scores averaged over seeds, rule fitted on the other sources): the share "
        "it holds back and the recordings it decides; then the batch-shift check of the whole source "
        "as one batch (share called abnormal, KS distance to the other sources' held-out scores, "
        "whether the warning fires):\n"
    )
    print(
        "| source | uncertain | Se / Sp of all | MAcc of all | Se / Sp decided | MAcc decided "
        "| called abnormal | KS | warns |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, v in nested.items():
        print(
            f"| {name} | {v['uncertain_share']:.2f} | {v['sensitivity']:.3f} / {v['specificity']:.3f} | "
            f"{v['macc']:.3f} | {v['decided_sensitivity']:.3f} / {v['decided_specificity']:.3f} | "
            f"{v['decided_macc']:.3f} | {v['called_positive_share']:.2f} | {v['shift_distance']:.2f} | "
            f"{_warns(v)} |"
        )
    means = {key: float(np.nanmean([v[key] for v in nested.values()])) for key in ("uncertain_share", "macc")}
    decided = float(np.nanmean([v["decided_macc"] for v in nested.values()]))
    print(
        f"| mean over sources | {means['uncertain_share']:.2f} | | {means['macc']:.3f} | | {decided:.3f} "
        "| | | |"
    )


def _warns(nested: dict[str, float]) -> str:
    """yes / no, or ``-`` for a source too small for the batch-shift check to judge."""
    from ml.calibration import SHIFT_MIN_RECORDINGS

    if nested["count"] < SHIFT_MIN_RECORDINGS:
        return "-"
    return "yes" if nested["shift_warning"] else "no"


def _print_clip_table(results: dict[str, Any]) -> None:
    """Held-out sources scored on one short clip of every recording (``crossval --clip-scores``):
    ranking, and the decisions of the rule fitted on the other sources' whole recordings (what a
    short recording gets today) and of one fitted on their clips."""
    from ml import calibration

    oof = results["oof"]
    whole = calibration.held_out_mean(results)
    clip = np.asarray(np.nanmean(np.array(list(oof["clip_scores"].values()), dtype=np.float64), axis=0))
    keep = ~np.isnan(whole) & ~np.isnan(clip)
    whole, clip = whole[keep], clip[keep]
    truth = (np.array(oof["labels"]) == "abnormal")[keep]
    sources = np.array(oof["groups"])[keep]
    rule_whole = calibration.nested_source_metrics(whole, truth, sources, applied=clip)
    rule_clip = calibration.nested_source_metrics(clip, truth, sources)
    span = results.get("clips", {})
    print(
        f"\nShort clips: one stretch of {span.get('shortest_s', '?')}-{span.get('longest_s', '?')} s of "
        "every held-out recording (the same for every seed; scores averaged over seeds), decided by the rule "
        "fitted on the other sources' whole recordings (as served) or on their clips:\n"
    )
    print(
        "| source | ROC AUC whole / clip | clip, whole-recording rule: Se / Sp / MAcc "
        "| clip, rule fitted on clips: Se / Sp / MAcc |"
    )
    print("|---|---|---|---|")
    aucs: list[tuple[float, float]] = []
    for name in rule_whole:
        inside = sources == name
        pair = (roc_auc(truth[inside], whole[inside]), roc_auc(truth[inside], clip[inside]))
        aucs.append(
            (float("nan") if pair[0] is None else pair[0], float("nan") if pair[1] is None else pair[1])
        )
        a, b = rule_whole[name], rule_clip[name]
        print(
            f"| {name} | {aucs[-1][0]:.3f} / {aucs[-1][1]:.3f} | {a['sensitivity']:.3f} / "
            f"{a['specificity']:.3f} / {a['macc']:.3f} | {b['sensitivity']:.3f} / {b['specificity']:.3f} / "
            f"{b['macc']:.3f} |"
        )
    mean_auc = np.nanmean(np.array(aucs), axis=0)
    print(
        f"| mean over sources | {mean_auc[0]:.3f} / {mean_auc[1]:.3f} "
        f"| {np.nanmean([v['macc'] for v in rule_whole.values()]):.3f} "
        f"| {np.nanmean([v['macc'] for v in rule_clip.values()]):.3f} |"
    )


def format_in_source(report: dict[str, Any]) -> str:
    """The headline figures of one seed's patient-grouped in-source report, as one line."""
    overall = report["overall"]
    return (
        f"MAcc {overall['macc']:.3f}, Se {overall['sensitivity']:.3f}, "
        f"Sp {overall['specificity']:.3f}, AUC {overall['roc_auc']:.3f}"
    )


def _print_source_tables(results: dict[str, Any], summary: dict[str, Any], *, margin: float | None) -> None:
    floor = results.get("floor", {}).get("folds", {})
    folds = sorted(summary["folds"])
    print("| recipe | " + " | ".join(folds) + " | mean MAcc | mean AUC | lowest Se or Sp |")
    print("|---" * (len(folds) + 4) + "|")
    if floor:
        cells = [f"{floor[f]['macc']:.2f} / {floor[f]['roc_auc']:.2f}" for f in folds]
        lowest = min(min(floor[f]["sensitivity"], floor[f]["specificity"]) for f in folds)
        print(
            "| floor: MFCC statistics + gradient boosting, threshold 0.5 | " + " | ".join(cells)
            + f" | {np.mean([floor[f]['macc'] for f in folds]):.3f} | "
            f"{np.mean([floor[f]['roc_auc'] for f in folds]):.3f} | {lowest:.2f} |"
        )  # fmt: skip
    cells = []
    for fold in folds:
        values = summary["folds"][fold]
        cells.append(f"{values['macc']['mean']:.2f} / {values['roc_auc']['mean']:.2f}")
    print(
        f"| this recipe, seeds {', '.join(map(str, results['seeds']))} | " + " | ".join(cells)
        + f" | {cards.mean_range(summary['mean_macc'])} | {cards.mean_range(summary['mean_roc_auc'])} | "
        f"{cards.mean_range(summary['lowest_sensitivity_or_specificity'])} |"
    )  # fmt: skip
    print("\nPer source (mean over seeds, range in brackets):\n")
    print("\n".join(cards.source_table(summary)))
    from ml import calibration

    scores, truth, sources = calibration.held_out_scores(results)
    margin = calibration.DEFAULT_MARGIN if margin is None else margin
    _print_uncertain_band(calibration.nested_source_metrics(scores, truth, sources, margin=margin), margin)
    if "clip_scores" in results["oof"]:
        _print_clip_table(results)
    print("\nA 50-recording labelled sample of the site sets its threshold (20 draws; held-out scores"
          " averaged over seeds; 'before' is the rule fitted on the other sources):\n")  # fmt: skip
    print("| source | MAcc before | MAcc after (worst) | Se before / after | Sp before / after |")
    print("|---|---|---|---|---|")
    for name, v in calibration.site_sample_simulation(scores, truth, sources).items():
        print(
            f"| {name} | {v['uncalibrated_macc']:.3f} | {v['macc']:.3f} ({v['worst_macc']:.3f}) | "
            f"{v['uncalibrated_sensitivity']:.3f} / {v['sensitivity']:.3f} | "
            f"{v['uncalibrated_specificity']:.3f} / {v['specificity']:.3f} |"
        )
