"""Command-line arguments of ``python -m ml train``, ``crossval`` and ``crossval-table``.

``ml.__main__`` adds them to the command's parser; ``ml.train_command`` runs the
command with the settings built here. ``python -m ml compare`` shares the data,
model and training arguments. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml.datasets import LABEL_MAPS
from ml.features import FEATURE_KINDS, NORM_REFERENCES, FeatureConfig
from ml.training import BALANCES, TrainSettings

DEFAULT_CACHE = Path("artifacts/ml-cache")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, model and training arguments shared by train, crossval and compare.

    Defaults are those of ``TrainSettings`` and ``FeatureConfig``.
    """
    training, features = TrainSettings(), FeatureConfig()
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        help=f"folder with labels.csv, optionally DIR:LABEL_MAP (maps: {', '.join(LABEL_MAPS)}); repeatable",
    )
    parser.add_argument(
        "--arch", default=training.architecture, help="simplernn, lstm, gru, cnn_lstm, cnn_gru"
    )
    parser.add_argument("--units", type=int, default=training.units)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--dropout", type=float, default=training.dropout)
    parser.add_argument(
        "--standardize-windows",
        action="store_true",
        help="standardise each window over time inside the model",
    )
    parser.add_argument(
        "--mixstyle", action="store_true", help="mix window statistics between training windows"
    )
    parser.add_argument("--epochs", type=int, default=training.epochs)
    parser.add_argument("--patience", type=int, default=training.patience)
    parser.add_argument("--windows-per-recording", type=int, default=training.windows_per_recording)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument(
        "--noise-probability", type=float, default=training.noise_probability, help="chance of added noise"
    )
    parser.add_argument(
        "--min-snr-db", type=float, default=training.min_snr_db, help="noisiest added noise (dB SNR)"
    )
    parser.add_argument(
        "--eq-probability",
        type=float,
        default=training.eq_probability,
        help="chance of a random device frequency response",
    )
    parser.add_argument(
        "--max-speed-change",
        type=float,
        default=training.max_speed_change,
        help="largest speed change, as a fraction",
    )
    parser.add_argument(
        "--site-adversarial",
        type=float,
        default=training.site_adversarial,
        metavar="STRENGTH",
        help="train against a source-folder classifier through a gradient reversal of this "
        "strength, so the features carry less of the site and device (0: off)",
    )
    parser.add_argument("--seed", type=int, default=training.seed)
    parser.add_argument(
        "--feature-kind",
        choices=FEATURE_KINDS,
        default=features.kind,
        help="logmel or mfcc frames, or cycles: per-beat measures from the heart-cycle segmentation",
    )
    parser.add_argument(
        "--beats-per-window",
        type=int,
        default=features.beats_per_window,
        help="cycles: beats per window",
    )
    parser.add_argument(
        "--beat-spreads",
        action="store_true",
        help="cycles: also how each gap's energy moves within the beat (ml.cycles.SPREAD_FEATURE_NAMES)",
    )
    parser.add_argument(
        "--beat-profile",
        action="store_true",
        help="cycles: also each beat's time profile against its S1 (ml.cycles.PROFILE_FEATURE_NAMES)",
    )
    parser.add_argument(
        "--normalize-inputs",
        action="store_true",
        help="scale features by the training set's mean and variance",
    )
    parser.add_argument(
        "--input-noise",
        type=float,
        default=training.input_noise,
        help="Gaussian noise on the normalised features in training",
    )
    parser.add_argument(
        "--balance",
        choices=BALANCES,
        default=training.balance,
        help="recording weights: classes balanced within each source, or every source and class alike",
    )
    parser.add_argument("--deltas", action="store_true", help="append delta and delta-delta features")
    parser.add_argument("--n-fft", type=int, default=features.n_fft, help="samples per spectrum frame")
    parser.add_argument("--hop-length", type=int, default=features.hop_length, help="samples between frames")
    parser.add_argument("--n-mels", type=int, default=features.n_mels)
    parser.add_argument("--band-high", type=float, default=features.band_high_hz, help="band-pass top, Hz")
    parser.add_argument(
        "--no-recording-norm", action="store_true", help="keep each recording's mean spectrum in the features"
    )
    parser.add_argument(
        "--norm-reference",
        choices=NORM_REFERENCES,
        default=features.norm_reference,
        help="measure each band against its mean over the recording, or against its loud frames (peak)",
    )
    parser.add_argument("--window-s", type=float, default=features.window_s, help="model window, seconds")
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
    parser.add_argument(
        "--members",
        type=int,
        default=1,
        help="train this many networks (seeds --seed, --seed+1, ...) and ship their average",
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
        normalize_inputs=args.normalize_inputs,
        input_noise=args.input_noise,
        balance=args.balance,
        members=getattr(args, "members", 1),
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
        beats_per_window=args.beats_per_window,
        beats_hop=max(1, args.beats_per_window // 2),
        beat_spreads=args.beat_spreads,
        beat_profile=args.beat_profile,
    )


def add_crossval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml crossval``."""
    add_common_arguments(parser)
    parser.add_argument(
        "--folds",
        default=None,
        help="comma-separated groups to hold out in turn (default: all; none: only --in-source-folds)",
    )
    parser.add_argument(
        "--seeds", default=None, help="comma-separated seeds, one full pass each (default: --seed)"
    )
    parser.add_argument(
        "--in-source-folds",
        type=int,
        default=0,
        help="also K folds over patients of every source (patient-grouped in-source scores; 0: off)",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the per-fold results")


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml crossval-table``."""
    parser.add_argument("results", type=Path, help="JSON written by python -m ml crossval")
