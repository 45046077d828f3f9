"""``python -m ml train`` and ``python -m ml crossval``.

``train`` fits one model and writes a bundle; whole source groups named with
``--holdout`` are kept out of training and reported as held-out metrics.
``crossval`` repeats that once per group (leave-one-group-out) and writes a JSON
summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ml import cards
from ml.datasets import LABEL_MAPS, Dataset, load_dataset
from ml.evaluation import evaluate_dataset, format_metrics
from ml.features import NORM_REFERENCES, FeatureConfig
from ml.training import DEFAULT_VALIDATION_SHARE, TrainSettings, save_training_bundle, split_validation, train

DEFAULT_CACHE = Path("artifacts/ml-cache")
SCREENING_CLASSES = ("normal", "abnormal")

log = logging.getLogger(__name__)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, model and training arguments shared by train, crossval and compare."""
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        help=f"folder with labels.csv, optionally DIR:LABEL_MAP (maps: {', '.join(LABEL_MAPS)}); repeatable",
    )
    parser.add_argument("--arch", default="cnn_gru", help="simplernn, lstm, gru, cnn_lstm, cnn_gru")
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument(
        "--standardize-windows",
        action="store_true",
        help="standardise each window over time inside the model",
    )
    parser.add_argument(
        "--mixstyle", action="store_true", help="mix window statistics between training windows"
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--windows-per-recording", type=int, default=4)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--noise-probability", type=float, default=0.5, help="chance of added noise")
    parser.add_argument("--min-snr-db", type=float, default=5.0, help="noisiest added noise (dB SNR)")
    parser.add_argument(
        "--eq-probability", type=float, default=0.0, help="chance of a random device frequency response"
    )
    parser.add_argument(
        "--max-speed-change", type=float, default=0.1, help="largest speed change, as a fraction"
    )
    parser.add_argument(
        "--site-adversarial",
        type=float,
        default=0.0,
        metavar="STRENGTH",
        help="train against a source-folder classifier through a gradient reversal of this "
        "strength, so the features carry less of the site and device (0: off)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--feature-kind", choices=("logmel", "mfcc"), default="logmel")
    parser.add_argument("--deltas", action="store_true", help="append delta and delta-delta features")
    defaults = FeatureConfig()
    parser.add_argument("--n-fft", type=int, default=defaults.n_fft, help="samples per spectrum frame")
    parser.add_argument("--hop-length", type=int, default=defaults.hop_length, help="samples between frames")
    parser.add_argument("--n-mels", type=int, default=defaults.n_mels)
    parser.add_argument("--band-high", type=float, default=defaults.band_high_hz, help="band-pass top, Hz")
    parser.add_argument(
        "--no-recording-norm", action="store_true", help="keep each recording's mean spectrum in the features"
    )
    parser.add_argument(
        "--norm-reference",
        choices=NORM_REFERENCES,
        default=defaults.norm_reference,
        help="measure each band against its mean over the recording, or against its loud frames (peak)",
    )
    parser.add_argument("--window-s", type=float, default=defaults.window_s, help="model window, seconds")
    parser.add_argument("--min-duration", type=float, default=2.0, help="seconds")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="decoded-audio cache folder")
    parser.add_argument("--classes", default=None, help="comma-separated class order (default: from labels)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml train``."""
    add_common_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument("--holdout", action="append", default=[], help="source group kept out; repeatable")
    parser.add_argument(
        "--test-share",
        type=float,
        default=0.0,
        help="share kept out as a test set, stratified by group and label",
    )
    parser.add_argument(
        "--external",
        action="append",
        default=[],
        help="labelled folder never trained on, DIR or DIR:LABEL_MAP, scored after training; repeatable",
    )
    parser.add_argument(
        "--external-min-duration", type=float, default=1.0, help="shortest external recording, seconds"
    )
    parser.add_argument(
        "--crossval",
        type=Path,
        default=None,
        help="JSON written by `python -m ml crossval` with the same settings; its folds go into the card",
    )
    parser.add_argument("--name", default=None)
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--research-use", action="store_true", help="mark the card research-use only")


def settings_from(args: argparse.Namespace) -> TrainSettings:
    """Training settings from parsed arguments."""
    return TrainSettings(
        architecture=args.arch,
        units=args.units,
        bidirectional=args.bidirectional,
        attention=args.attention,
        dropout=args.dropout,
        standardize_windows=args.standardize_windows,
        mixstyle=args.mixstyle,
        epochs=args.epochs,
        patience=args.patience,
        windows_per_recording=args.windows_per_recording,
        augment=not args.no_augment,
        noise_probability=args.noise_probability,
        min_snr_db=args.min_snr_db,
        eq_probability=args.eq_probability,
        max_speed_change=args.max_speed_change,
        site_adversarial=args.site_adversarial,
        seed=args.seed,
    )


def features_from(args: argparse.Namespace) -> FeatureConfig:
    """Feature configuration from parsed arguments."""
    return FeatureConfig(
        kind=args.feature_kind,
        deltas=args.deltas,
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
        window_s=args.window_s,
        window_hop_s=args.window_s / 2,
        recording_mean_norm=not args.no_recording_norm,
        norm_reference=args.norm_reference,
        band_high_hz=args.band_high,
    )


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
    result = train(
        trainable.subset(train_mask),
        trainable.subset(validation_mask),
        classes=classes,
        positive_class=positive,
        feature_config=config,
        settings=settings,
    )
    metrics: dict[str, Any] = {"validation": result.validation, "train_seconds": round(result.seconds, 1)}
    if crossval is not None:
        metrics["leave_one_folder_out"] = {"groups": crossval["folds"]}
    card_args = _card_args(dataset, holdout, settings, research_use)
    card_args["settings"]["features"] = config.to_dict()
    card_args["data_sources"].append(
        f"{DEFAULT_VALIDATION_SHARE:.0%} of each source group and class kept for validation "
        "(early stopping, decision threshold)"
    )
    if test_share > 0:
        card_args["data_sources"].append(f"{test_share:.0%} of each group and class kept out as a test set")
    for label, part in (external or {}).items():
        card_args["data_sources"].append(
            f"external check only (never trained on): {label}, {len(part.entries)} recordings"
        )
    common = dict(
        out_dir=out_dir,
        name=name,
        version=version,
        classes=classes,
        positive_class=positive,
        feature_config=config,
        settings=settings,
        data_fingerprint=dataset.fingerprint,
    )
    save_training_bundle(result, card_text="", metrics=metrics, **common)  # type: ignore[arg-type]
    if held.any():
        metrics["holdout"] = evaluate_dataset(Engine.load(out_dir), dataset.subset(held))
    for label, part in (external or {}).items():
        metrics[f"external_{label}"] = evaluate_dataset(Engine.load(out_dir), part)
    card_args["notes"] = _card_notes(metrics)
    card = cards.model_card(name=name, version=version, metrics=metrics, **card_args)
    save_training_bundle(result, card_text=card, metrics=metrics, **common)  # type: ignore[arg-type]
    return metrics


def _card_args(
    dataset: Dataset, holdout: list[str], settings: TrainSettings, research_use: bool
) -> dict[str, Any]:
    groups, counts = np.unique(dataset.groups, return_counts=True)
    sources = [
        f"{group}: {count} recordings" + (" (held out, not trained on)" if group in holdout else "")
        for group, count in zip(groups, counts, strict=True)
    ]
    pascal = any(str(group).startswith("set-") for group in groups)
    citations = [cards.PHYSIONET_CITATION] if not pascal or len(groups) > 2 else []
    citations += [cards.PASCAL_CITATION] if pascal else []
    return {
        "intended_use": cards.RESEARCH_USE if research_use or pascal else cards.SCREENING_USE,
        "data_sources": sources,
        "citations": citations,
        "settings": dataclasses.asdict(settings),
        "notes": NOTES,
    }


NOTES = (
    "Trained and validated on public challenge data; sites and devices not "
    "represented there may score lower. Recordings flagged poor or unusable "
    "by the quality check deserve a repeat recording."
)


def _card_notes(metrics: dict[str, Any]) -> str:
    """Caveats, with the range of scores on sites the model (or its recipe) never saw."""
    unseen = [
        values
        for key, report in metrics.items()
        if key == "leave_one_folder_out" or key.startswith("external_")
        for values in report["groups"].values()
    ]
    if not unseen:
        return NOTES
    maccs = [values["macc"] for values in unseen if isinstance(values.get("macc"), float)]
    aucs = [values["roc_auc"] for values in unseen if isinstance(values.get("roc_auc"), float)]
    spread = f"MAcc {min(maccs):.2f}-{max(maccs):.2f}" if maccs else "an unknown MAcc"
    if aucs:
        spread += f" with ROC AUC {min(aucs):.2f}-{max(aucs):.2f}"
    return (
        "Validation recordings come from the same sites as the training recordings, so the "
        "validation row is what to expect on those sites only. The leave_one_folder_out rows "
        "are this recipe retrained with one folder held out, and the external rows are this "
        f"bundle on collections it never saw: on unseen sites and devices it scores {spread}, "
        "and the best decision threshold differs by site. Treat results on recordings from new "
        "devices or sites as unvalidated until checked on labelled local data. " + NOTES
    )


def load_crossval(path: Path, *, settings: TrainSettings, config: FeatureConfig) -> dict[str, Any]:
    """Crossval results for this exact recipe; refuses results of other settings."""
    results: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    recipe = json.loads(json.dumps(dataclasses.asdict(settings)))
    # settings added since the file was written count at their defaults (the old behaviour)
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainSettings())))
    if {**defaults, **results.get("settings", {})} != recipe:
        raise SystemExit(f"{path}: cross-validated with other training settings than this run")
    if results.get("features", config.to_dict()) != config.to_dict():
        raise SystemExit(f"{path}: cross-validated with other feature settings than this run")
    return results


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
        crossval = load_crossval(args.crossval, settings=settings, config=config)
    dataset = load_all(args, config)
    classes = class_order(dataset.labels, args.classes)
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


def add_crossval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml crossval``."""
    add_common_arguments(parser)
    parser.add_argument(
        "--folds", default=None, help="comma-separated groups to hold out in turn (default: all)"
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the per-fold results")


def run_crossval(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml crossval`` (leave one source group out)."""
    from ml.inference import configure_threads

    configure_threads(1)
    config = features_from(args)
    dataset = load_all(args, config)
    classes = class_order(dataset.labels, args.classes)
    folds = args.folds.split(",") if args.folds else sorted(set(dataset.groups.tolist()))
    results: dict[str, Any] = {
        "settings": dataclasses.asdict(settings_from(args)),
        "features": config.to_dict(),
        "folds": {},
    }
    for fold in folds:
        with tempfile.TemporaryDirectory() as scratch:
            metrics = fit_bundle(
                dataset,
                holdout=[fold],
                out_dir=Path(scratch) / fold,
                classes=classes,
                config=config,
                settings=settings_from(args),
                name=f"crossval-{fold}",
                version="0",
                research_use=False,
            )
        results["folds"][fold] = metrics["holdout"]["overall"]
        print(format_metrics(f"held out {fold}", metrics["holdout"]["overall"]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0
