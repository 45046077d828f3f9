"""Evaluate a bundle on a labelled folder: overall and per source group.

``python -m ml evaluate BUNDLE DATA_DIR`` prints accuracy, precision,
sensitivity, specificity, MAcc, F1, ROC AUC, per-class recall and the confusion
matrix, overall and for each source folder, and writes the matrix as a PNG and
everything as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml.datasets import Dataset, load_dataset
from ml.labels import LABEL_MAPS
from ml.scoring import screening_metrics

RECORDINGS_PER_CHUNK = 256
HEADLINE = (
    "count",
    "accuracy",
    "precision",
    "sensitivity",
    "specificity",
    "macc",
    "f1",
    "roc_auc",
    "macro_recall",
)


def recording_probabilities(
    engine: Any, samples: Sequence[np.ndarray], *, calibrated: bool = True
) -> np.ndarray:
    """Recording-level probabilities ``(recordings, classes)`` from an Engine, in chunks
    (through the bundle's calibration unless ``calibrated`` is false)."""
    parts = []
    for start in range(0, len(samples), RECORDINGS_PER_CHUNK):
        parts.append(engine.score(list(samples[start : start + RECORDINGS_PER_CHUNK])))
    found = np.concatenate(parts) if parts else np.zeros((0, len(engine.classes)))
    return engine.calibrate(found) if calibrated else found


def evaluate_dataset(engine: Any, dataset: Dataset) -> dict[str, Any]:
    """Metrics overall and per group (``{"overall": ..., "groups": {name: ...}}``)."""
    classes = list(engine.classes)
    unknown = sorted(set(dataset.labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of this model ({classes}); try --label-map")
    truth = np.array([classes.index(label) for label in dataset.labels])
    probabilities = recording_probabilities(engine, dataset.samples)
    settings = {
        "classes": classes,
        "positive_class": engine.manifest.positive_class,
        "threshold": engine.manifest.decision_threshold,
    }
    groups = dataset.groups
    return {
        "overall": screening_metrics(truth, probabilities, **settings),
        "groups": {
            str(group): screening_metrics(truth[groups == group], probabilities[groups == group], **settings)
            for group in np.unique(groups)
        },
    }


def format_metrics(title: str, metrics: dict[str, Any]) -> str:
    """A readable block: headline measures, per-class recall, confusion matrix."""
    lines = [f"== {title}"]
    lines.append("  " + "  ".join(f"{key}={_fmt(metrics.get(key))}" for key in HEADLINE if key in metrics))
    recalls = metrics.get("per_class_recall", {})
    lines.append("  recall: " + "  ".join(f"{name}={_fmt(value)}" for name, value in recalls.items()))
    classes = metrics["classes"]
    width = max(len(name) for name in classes) + 2
    lines.append("  confusion (rows true, columns predicted):")
    lines.append("  " + " " * width + "".join(f"{name:>{width}}" for name in classes))
    for name, row in zip(classes, metrics["confusion_matrix"], strict=True):
        lines.append("  " + f"{name:>{width}}" + "".join(f"{count:>{width}}" for count in row))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def plot_confusion(metrics: dict[str, Any], path: Path, *, title: str) -> None:
    """Confusion matrix heat map with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(metrics["confusion_matrix"])
    classes = metrics["classes"]
    figure, axis = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.1 * len(classes) + 1.5))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=30)
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=9)
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml evaluate``."""
    parser.add_argument("bundle", type=Path, help="bundle directory")
    parser.add_argument("data", type=Path, help="folder with labels.csv (path,label)")
    parser.add_argument("--label-map", choices=sorted(LABEL_MAPS), default="identity")
    parser.add_argument("--min-duration", type=float, default=None, help="seconds; default: the bundle's")
    parser.add_argument("--out", type=Path, default=None, help="folder for metrics JSON and PNGs")
    parser.add_argument("--cache", type=Path, default=None, help="folder for decoded-audio caches")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml evaluate``."""
    from ml.inference import Engine, configure_threads

    configure_threads(1)
    engine = Engine.load(args.bundle)
    min_duration = engine.manifest.min_duration_s if args.min_duration is None else args.min_duration
    dataset = load_dataset(
        args.data,
        sample_rate=engine.feature_config.sample_rate,
        label_map=args.label_map,
        min_duration_s=min_duration,
        band_hz=engine.feature_config.band_hz,
        cache_dir=args.cache,
    )
    report = evaluate_dataset(engine, dataset)
    print(format_metrics(f"{engine.manifest.name} on {args.data} (all)", report["overall"]))
    for group, metrics in report["groups"].items():
        print(format_metrics(f"{group}", metrics))
    if args.out is not None:
        write_report(report, args.out, title=engine.manifest.name)
    return 0


def write_report(report: dict[str, Any], out_dir: Path, *, title: str) -> None:
    """Write ``metrics.json`` and confusion PNGs (overall and per group) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_confusion(report["overall"], out_dir / "confusion.png", title=f"{title}: all")
    for group, metrics in report["groups"].items():
        plot_confusion(metrics, out_dir / f"confusion-{group}.png", title=f"{title}: {group}")
