"""Command-line arguments of ``python -m ml train``, ``crossval`` and ``crossval-table``.

``ml.__main__`` adds them to the command's parser; ``ml.train_command`` runs the
command with the settings built here. ``python -m ml compare`` shares the data,
model and training arguments. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml.features import FEATURE_KINDS, NORM_REFERENCES, FeatureConfig
from ml.labels import LABEL_MAPS
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
    _number(parser, "--units", int, training.units)
    _switch(parser, "--bidirectional")
    _switch(parser, "--attention")
    _number(parser, "--dropout", float, training.dropout)
    _switch(parser, "--standardize-windows", "standardise each window over time inside the model")
    _switch(parser, "--mixstyle", "mix window statistics between training windows")
    _number(parser, "--epochs", int, training.epochs)
    _number(parser, "--patience", int, training.patience)
    _number(parser, "--windows-per-recording", int, training.windows_per_recording)
    _switch(parser, "--no-augment")
    _number(parser, "--noise-probability", float, training.noise_probability, "chance of added noise")
    _number(parser, "--min-snr-db", float, training.min_snr_db, "noisiest added noise (dB SNR)")
    _number(
        parser,
        "--eq-probability",
        float,
        training.eq_probability,
        "chance of a random device frequency response",
    )
    _number(
        parser, "--max-speed-change", float, training.max_speed_change, "largest speed change, as a fraction"
    )
    parser.add_argument(
        "--site-adversarial",
        type=float,
        default=training.site_adversarial,
        metavar="STRENGTH",
        help="train against a source-folder classifier through a gradient reversal of this "
        "strength, so the features carry less of the site and device (0: off)",
    )
    parser.add_argument(
        "--source-heads",
        action="store_true",
        default=training.source_heads,
        help="one classifier head per training source folder, trained on that source's "
        "recordings only; the saved model averages their logits",
    )
    _number(parser, "--seed", int, training.seed)
    _add_feature_arguments(parser, features, training)
    _number(parser, "--min-duration", float, 2.0, "seconds")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="decoded-audio cache folder")
    parser.add_argument("--classes", default=None, help="comma-separated class order (default: from labels)")


def _add_feature_arguments(
    parser: argparse.ArgumentParser, features: FeatureConfig, training: TrainSettings
) -> None:
    """What the model is fed: feature kind and framing, and the scaling and weighting of its inputs."""
    parser.add_argument(
        "--feature-kind",
        choices=FEATURE_KINDS,
        default=features.kind,
        help="logmel or mfcc frames, or cycles: per-beat measures from the heart-cycle segmentation",
    )
    _number(parser, "--beats-per-window", int, features.beats_per_window, "cycles: beats per window")
    _switch(
        parser,
        "--beat-spreads",
        "cycles: also how each gap's energy moves within the beat (ml.cycles.SPREAD_FEATURE_NAMES)",
    )
    _switch(
        parser,
        "--beat-profile",
        "cycles: also each beat's time profile against its S1 (ml.cycles.PROFILE_FEATURE_NAMES)",
    )
    _switch(parser, "--normalize-inputs", "scale features by the training set's mean and variance")
    _number(
        parser,
        "--input-noise",
        float,
        training.input_noise,
        "Gaussian noise on the normalised features in training",
    )
    parser.add_argument(
        "--balance",
        choices=BALANCES,
        default=training.balance,
        help="recording weights: classes balanced within each source, or every source and class alike",
    )
    _switch(parser, "--deltas", "append delta and delta-delta features")
    _number(parser, "--n-fft", int, features.n_fft, "samples per spectrum frame")
    _number(parser, "--hop-length", int, features.hop_length, "samples between frames")
    _number(parser, "--n-mels", int, features.n_mels)
    _number(parser, "--band-high", float, features.band_high_hz, "band-pass top, Hz")
    _switch(parser, "--no-recording-norm", "keep each recording's mean spectrum in the features")
    parser.add_argument(
        "--norm-reference",
        choices=NORM_REFERENCES,
        default=features.norm_reference,
        help="measure each band against its mean over the recording, or against its loud frames (peak)",
    )
    _number(parser, "--window-s", float, features.window_s, "model window, seconds")


def _switch(parser: argparse.ArgumentParser, flag: str, help_text: str | None = None) -> None:
    """An option that is off unless given."""
    parser.add_argument(flag, action="store_true", help=help_text)


def _number(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: type[int] | type[float],
    default: float | None,
    help_text: str | None = None,
) -> None:
    """An option taking one number of this kind."""
    parser.add_argument(flag, type=kind, default=default, help=help_text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml train``."""
    add_common_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument("--holdout", action="append", default=[], help="source group kept out; repeatable")
    _number(parser, "--test-share", float, 0.0, "share kept out as a test set, stratified by group and label")
    parser.add_argument(
        "--external",
        action="append",
        default=[],
        help="labelled folder never trained on, DIR or DIR:LABEL_MAP, scored after training; repeatable",
    )
    _number(parser, "--external-min-duration", float, 1.0, "shortest external recording, seconds")
    parser.add_argument(
        "--crossval",
        type=Path,
        default=None,
        help="JSON written by `python -m ml crossval` with the same settings; its folds go into the card",
    )
    _number(
        parser,
        "--members",
        int,
        1,
        "train this many networks (seeds --seed, --seed+1, ...) and ship their average",
    )
    parser.add_argument("--name", default=None)
    parser.add_argument("--version", default="1.0.0")
    _switch(parser, "--research-use", "mark the card research-use only")


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
        source_heads=args.source_heads,
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
        "--train-without",
        action="append",
        default=[],
        help="source group no fold trains on, still held out and scored in its own fold; repeatable",
    )
    _number(
        parser,
        "--in-source-folds",
        int,
        0,
        "also K folds over patients of every source (patient-grouped in-source scores; 0: off)",
    )
    _switch(
        parser,
        "--clip-scores",
        "also score every held-out recording on one short clip of it (1.5-4 s, as handheld devices record)",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the per-fold results")


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml crossval-table``."""
    from ml.calibration import DEFAULT_MARGIN

    parser.add_argument("results", type=Path, help="JSON written by python -m ml crossval")
    parser.add_argument(
        "--margin",
        type=_margin,
        default=DEFAULT_MARGIN,
        help=f"width of the uncertain band either side of the threshold (default {DEFAULT_MARGIN})",
    )


def _margin(text: str) -> float:
    """A band width on the calibrated probability: at least 0, under 0.5."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"the margin must be at least 0 and under 0.5, not {value}")
    return value
